package interp

import (
	"go/ast"
	"go/constant"
	"reflect"
	"slices"
)

// Bounds the checker puts on what the interpreter's compiler would build
// at compile time, which no deadline can stop.
const (
	// maxTypeDepth bounds the nesting of a type expression.
	maxTypeDepth = 100
	// maxConstString bounds the length of a string constant.
	maxConstString = 1 << 20
)

// typeParamNames returns the names a type parameter list declares.
func typeParamNames(fl *ast.FieldList) []string {
	if fl == nil {
		return nil
	}
	var out []string
	for _, f := range fl.List {
		for _, n := range f.Names {
			out = append(out, n.Name)
		}
	}
	return out
}

// receiverTypeParams returns the type parameters a method's receiver
// names: T in func (b *Box[T]) M().
func receiverTypeParams(t ast.Expr) []string {
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	var idx []ast.Expr
	switch t := t.(type) {
	case *ast.IndexExpr:
		idx = []ast.Expr{t.Index}
	case *ast.IndexListExpr:
		idx = t.Indices
	}
	var out []string
	for _, e := range idx {
		if id, ok := e.(*ast.Ident); ok {
			out = append(out, id.Name)
		}
	}
	return out
}

// instance checks an instantiation x[args]. Inside a generic
// declaration, a generic of the REPL may be instantiated only with plain
// names as type arguments: g[[]T] inside g would make the interpreter's
// compiler instantiate g without end, at compile time.
func (c *checker) instance(x ast.Expr, args []ast.Expr) {
	id, ok := x.(*ast.Ident)
	if !ok {
		return
	}
	b, found := c.sc.lookup(id.Name)
	if !found || !b.generic {
		return
	}
	c.instantiated[id] = true
	if c.generic == 0 {
		return
	}
	for _, a := range args {
		if _, plain := a.(*ast.Ident); !plain {
			c.fail("inside a generic declaration, instantiate %s with type names only (not %s): the interpreter would instantiate it without end", id.Name, exprString(a))
		}
	}
}

// genericUse refuses, inside a generic declaration, a REPL generic that
// is not given its type arguments: they would be inferred, and could grow
// at each instantiation.
func (c *checker) genericUse(id *ast.Ident) {
	if c.generic == 0 || c.instantiated[id] {
		return
	}
	if b, found := c.sc.lookup(id.Name); found && b.generic && len(b.params) > 0 && !b.isType {
		c.fail("inside a generic declaration, call %s with explicit type arguments (%s[…]): inferred ones could grow at each instantiation", id.Name, id.Name)
	}
}

// inlineTypes returns the names of the REPL types, and type parameters, a
// value of type t holds without indirection (arrays and struct fields;
// not pointers, slices, maps, channels, functions or interfaces).
func (c *checker) inlineTypes(t ast.Expr) []string {
	switch t := t.(type) {
	case *ast.ParenExpr:
		return c.inlineTypes(t.X)
	case *ast.Ident:
		return []string{t.Name}
	case *ast.ArrayType:
		if t.Len != nil {
			return c.inlineTypes(t.Elt)
		}
	case *ast.StructType:
		var out []string
		for _, f := range t.Fields.List {
			out = append(out, c.inlineTypes(f.Type)...)
		}
		return out
	case *ast.IndexExpr:
		return c.instanceInline(t.X, []ast.Expr{t.Index})
	case *ast.IndexListExpr:
		return c.instanceInline(t.X, t.Indices)
	}
	return nil
}

// instanceInline returns what an instance G[args] holds inline: what G
// holds, with its type parameters replaced by what the arguments hold.
func (c *checker) instanceInline(x ast.Expr, args []ast.Expr) []string {
	id, ok := x.(*ast.Ident)
	if !ok {
		return nil
	}
	b, found := c.sc.lookup(id.Name)
	if !found || !b.generic {
		return []string{id.Name}
	}
	out := []string{id.Name}
	for _, name := range b.inline {
		if i := slices.Index(b.params, name); i >= 0 && i < len(args) {
			out = append(out, c.inlineTypes(args[i])...)
		} else if i < 0 {
			out = append(out, name)
		}
	}
	return out
}

// recursiveType refuses a type that holds itself without indirection
// (type T struct{ a [1]T }): Go rejects it, the interpreter does not, and
// sizing or printing a value of it would never end.
func (c *checker) recursiveType(name string) {
	seen := map[string]bool{}
	var visit func(n string, path []string)
	visit = func(n string, path []string) {
		b, ok := c.sc.lookup(n)
		if !ok || !b.isType || b.typeParam {
			return
		}
		for _, dep := range b.inline {
			if dep == name {
				c.fail("invalid recursive type %s: it holds itself (through %s) without a pointer, slice or map in between", name, joinPath(append(path, n)))
			}
			if !seen[dep] {
				seen[dep] = true
				visit(dep, append(path, n))
			}
		}
	}
	visit(name, nil)
}

func joinPath(p []string) string {
	out := ""
	for i, n := range p {
		if i > 0 {
			out += " → "
		}
		out += n
	}
	return out
}

// unknownConst reports whether e is a constant the checker could not
// evaluate.
func (c *checker) unknownConst(e ast.Expr) bool {
	for {
		p, ok := e.(*ast.ParenExpr)
		if !ok {
			break
		}
		e = p.X
	}
	id, ok := e.(*ast.Ident)
	if !ok {
		return false
	}
	b, found := c.sc.lookup(id.Name)
	return found && b.unknown
}

// isStringType reports whether t's underlying type is string.
func (c *checker) isStringType(t ast.Expr) bool {
	switch t := t.(type) {
	case *ast.ParenExpr:
		return c.isStringType(t.X)
	case *ast.Ident:
		if b, ok := c.sc.lookup(t.Name); ok {
			return b.isType && b.str
		}
		return t.Name == "string"
	case *ast.SelectorExpr:
		if pkg, ok := t.X.(*ast.Ident); ok {
			if _, shadowed := c.sc.lookup(pkg.Name); shadowed || c.ss.pkgSym == nil {
				return false
			}
			if v, ok := c.ss.pkgSym(pkg.Name, t.Sel.Name); ok && v.IsValid() && v.Kind() == reflect.Pointer && v.IsNil() {
				return v.Type().Elem().Kind() == reflect.String
			}
		}
	}
	return false
}

// conversion evaluates the constant conversion to(x): the value is x's,
// except that an integer converted to a string type is that rune's text.
func (c *checker) conversion(to, x ast.Expr) (constant.Value, bool) {
	v, ok := c.constValue(x)
	if !ok {
		return nil, false
	}
	if c.isStringType(to) && v.Kind() == constant.Int {
		return runeString(v), true
	}
	return v, true
}

// runeString is string(rune(v)) for an integer constant.
func runeString(v constant.Value) constant.Value {
	r, ok := constant.Int64Val(v)
	if !ok || r < 0 || r > 0x10FFFF {
		r = 0xFFFD
	}
	return constant.MakeString(string(rune(r)))
}
