package interp

import (
	"go/ast"
	"go/constant"
	"go/token"
	"math"
	"strconv"
	"strings"
)

// The checker: a walk of the parsed source that refuses what could hurt
// the host before anything runs (names, packages, sizes, depth).

// scope maps the names a block declares to what the checker knows of
// them: a constant's value, a type's size, or nothing (a variable, a
// parameter, a function), which hides any outer constant or type.
type scope struct {
	outer *scope
	names map[string]binding
}

type binding struct {
	val       constant.Value // constants
	units     uint64         // types: 16-byte units a value holds inline
	isType    bool
	typeParam bool
	// unknown: a constant whose value the checker cannot evaluate.
	unknown bool
	// generic: a generic function or type declared in the REPL; params
	// are its type parameters.
	generic bool
	params  []string
	// inline: for a type, the REPL types (and, for a generic, type
	// parameters) a value of it holds without indirection.
	inline []string
	// str: a type whose underlying type is string.
	str bool
}

func newScope(outer *scope) *scope { return &scope{outer: outer, names: map[string]binding{}} }

func (sc *scope) lookup(name string) (binding, bool) {
	for s := sc; s != nil; s = s.outer {
		if b, ok := s.names[name]; ok {
			return b, true
		}
	}
	return binding{}, false
}

// checker walks one chunk with a scope stack.
type checker struct {
	ss      *session
	allowed map[string]bool
	lim     limits
	sc      *scope
	frame   []uint64 // static allocation of each enclosing function
	iota    constant.Value
	nesting int // statement depth
	// generic counts the generic declarations the checker is inside.
	generic int
	// instantiated holds the identifiers of REPL generics that appear
	// with explicit type arguments (checked where they appear).
	instantiated map[*ast.Ident]bool
	// tdepth is the nesting of the type expression being checked.
	tdepth int
}

// check rejects source that must not run, with a reason:
//   - go statements (a panic on a goroutine of evaluated code kills the host);
//   - func main and func init (yaegi re-runs main at every later eval);
//   - imports outside allowed, relative or absolute imports;
//   - identifiers starting with "__" (the guards' namespace);
//   - assignments through a pointer (*p = v): pointers returned by the
//     standard library can reach the application's own state;
//   - types, literals and function frames over lim.maxUnits, array
//     lengths that are not constant expressions it can evaluate, arrays of
//     type parameters;
//   - constant arithmetic beyond maxConstBits (the interpreter's compiler
//     would build the number, however large);
//   - source nested deeper than maxTreeDepth;
//   - range over an integer literal (the interpreter cannot compile it).
func (ss *session) check(node ast.Node, allowed map[string]bool, lim limits) error {
	c := &checker{ss: ss, allowed: allowed, lim: lim, sc: ss.top, frame: []uint64{0}, instantiated: map[*ast.Ident]bool{}}
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				if ce, ok := r.(*CheckError); ok {
					err = ce
					return
				}
				panic(r)
			}
		}()
		switch n := node.(type) {
		case *ast.File:
			c.file(n)
		case *ast.BlockStmt:
			c.stmts(n.List) // the REPL's top level: declarations persist
		}
	}()
	return err
}

func (c *checker) fail(format string, args ...any) {
	panic(rejectf(format, args...))
}

func (c *checker) file(f *ast.File) {
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && (fd.Name.Name == "main" || fd.Name.Name == "init") {
			c.fail("declaring func %s is not allowed in the REPL (the interpreter would re-run it at every later eval)", fd.Name.Name)
		}
	}
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			c.fail("malformed import path")
		}
		switch {
		case strings.HasPrefix(p, ".") || strings.HasPrefix(p, "/"):
			c.fail("import %q: relative and absolute imports are not allowed", p)
		case !c.allowed[p]:
			c.fail("import %q: not available in this session (type vars to list what is)", p)
		}
		if imp.Name != nil {
			c.ident(imp.Name)
		}
	}
	// Declarations may refer to each other in any order: what the checker
	// must know of a name before its declaration is whether it is a
	// generic, and whether it is a type.
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				if ts, ok := spec.(*ast.TypeSpec); ok {
					params := typeParamNames(ts.TypeParams)
					c.sc.names[ts.Name.Name] = binding{isType: true, units: 1, generic: len(params) > 0, params: params}
				}
			}
		case *ast.FuncDecl:
			if params := typeParamNames(d.Type.TypeParams); d.Recv == nil && len(params) > 0 {
				c.sc.names[d.Name.Name] = binding{generic: true, params: params}
			}
		}
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			if d.Tok != token.IMPORT {
				c.genDecl(d)
			}
		case *ast.FuncDecl:
			c.ident(d.Name)
			if d.Recv == nil {
				params := typeParamNames(d.Type.TypeParams)
				c.sc.names[d.Name.Name] = binding{generic: len(params) > 0, params: params}
			}
			c.function(d.Recv, d.Type, d.Body)
		}
	}
	c.checkFrame()
}

// function checks a function body in a new scope and frame.
func (c *checker) function(recv *ast.FieldList, ft *ast.FuncType, body *ast.BlockStmt) {
	outer := c.sc
	c.sc = newScope(outer)
	c.frame = append(c.frame, 0)
	defer func() { c.sc = outer; c.frame = c.frame[:len(c.frame)-1] }()
	params := typeParamNames(ft.TypeParams)
	if recv != nil && len(recv.List) == 1 {
		params = append(params, receiverTypeParams(recv.List[0].Type)...)
	}
	if len(params) > 0 {
		c.generic++
		defer func() { c.generic-- }()
	}
	for _, n := range params {
		c.sc.names[n] = binding{isType: true, typeParam: true, units: 1}
	}
	if ft.TypeParams != nil {
		for _, f := range ft.TypeParams.List {
			for _, n := range f.Names {
				c.ident(n)
			}
			c.typeUnits(f.Type)
		}
	}
	for _, fl := range []*ast.FieldList{recv, ft.Params, ft.Results} {
		if fl == nil {
			continue
		}
		for _, f := range fl.List {
			c.typeUnits(f.Type)
			for _, n := range f.Names {
				c.ident(n)
				c.sc.names[n.Name] = binding{}
			}
		}
	}
	if body != nil {
		c.stmts(body.List)
	}
	c.checkFrame()
}

func (c *checker) checkFrame() {
	if n := c.frame[len(c.frame)-1]; n > c.lim.maxUnits {
		c.fail("the variables of one function here would take more than %d bytes: too large for the REPL", c.lim.maxUnits*16)
	}
}

func (c *checker) addFrame(n uint64) {
	i := len(c.frame) - 1
	c.frame[i] = c.addLimit(c.frame[i], n)
	c.checkFrame()
}

func (c *checker) block(list []ast.Stmt) { c.scoped(func() { c.stmts(list) }) }

func (c *checker) stmts(list []ast.Stmt) {
	for _, st := range list {
		c.stmt(st)
	}
}

func (c *checker) stmt(st ast.Stmt) {
	if c.nesting++; c.nesting > maxTreeDepth/4 {
		c.fail("the source nests more than %d levels deep", maxTreeDepth/4)
	}
	defer func() { c.nesting-- }()
	switch s := st.(type) {
	case nil:
	case *ast.DeclStmt:
		c.genDecl(s.Decl.(*ast.GenDecl))
	case *ast.GoStmt:
		c.fail("go statements are not allowed: a goroutine started from the REPL could crash the service")
	case *ast.AssignStmt:
		for _, e := range s.Rhs {
			c.expr(e)
		}
		for _, e := range s.Lhs {
			c.target(e, s.Tok == token.DEFINE)
		}
	case *ast.IncDecStmt:
		c.assignTarget(s.X)
		c.expr(s.X)
	case *ast.ExprStmt:
		c.expr(s.X)
	case *ast.SendStmt:
		c.expr(s.Chan)
		c.expr(s.Value)
	case *ast.DeferStmt:
		c.expr(s.Call)
	case *ast.ReturnStmt:
		for _, e := range s.Results {
			c.expr(e)
		}
	case *ast.BranchStmt:
	case *ast.EmptyStmt:
	case *ast.LabeledStmt:
		c.stmt(s.Stmt)
	case *ast.BlockStmt:
		c.block(s.List)
	case *ast.IfStmt:
		c.scoped(func() {
			c.stmt(s.Init)
			c.expr(s.Cond)
			c.block(s.Body.List)
			c.stmt(s.Else)
		})
	case *ast.ForStmt:
		c.scoped(func() {
			c.stmt(s.Init)
			c.optExpr(s.Cond)
			c.stmt(s.Post)
			c.block(s.Body.List)
		})
	case *ast.RangeStmt:
		if lit, ok := s.X.(*ast.BasicLit); ok && lit.Kind == token.INT {
			c.fail("range over an integer is Go 1.22+ and the interpreter does not support it: write for i := 0; i < N; i++")
		}
		c.expr(s.X)
		c.scoped(func() {
			for _, e := range []ast.Expr{s.Key, s.Value} {
				if e != nil {
					c.target(e, s.Tok == token.DEFINE)
				}
			}
			c.block(s.Body.List)
		})
	case *ast.SwitchStmt:
		c.scoped(func() {
			c.stmt(s.Init)
			c.optExpr(s.Tag)
			c.clauses(s.Body)
		})
	case *ast.TypeSwitchStmt:
		c.scoped(func() {
			c.stmt(s.Init)
			c.stmt(s.Assign)
			c.clauses(s.Body)
		})
	case *ast.SelectStmt:
		c.clauses(s.Body)
	default:
		c.fail("unsupported statement %T", st)
	}
}

func (c *checker) clauses(body *ast.BlockStmt) {
	for _, cl := range body.List {
		c.scoped(func() {
			switch cl := cl.(type) {
			case *ast.CaseClause:
				for _, e := range cl.List {
					c.expr(e)
				}
				c.stmts(cl.Body)
			case *ast.CommClause:
				c.stmt(cl.Comm)
				c.stmts(cl.Body)
			}
		})
	}
}

// scoped runs f in a new innermost scope.
func (c *checker) scoped(f func()) {
	outer := c.sc
	c.sc = newScope(outer)
	defer func() { c.sc = outer }()
	f()
}

func (c *checker) optExpr(e ast.Expr) {
	if e != nil {
		c.expr(e)
	}
}

// target checks an assignment target; with define (:=) an identifier
// becomes a new variable of the current scope, hiding outer constants.
func (c *checker) target(e ast.Expr, define bool) {
	c.assignTarget(e)
	if id, ok := e.(*ast.Ident); ok && define {
		c.ident(id)
		c.sc.names[id.Name] = binding{}
		return
	}
	c.expr(e)
}

// assignTarget refuses assignments through a pointer.
func (c *checker) assignTarget(e ast.Expr) {
	for {
		p, ok := e.(*ast.ParenExpr)
		if !ok {
			break
		}
		e = p.X
	}
	if _, ok := e.(*ast.StarExpr); ok {
		c.fail("assigning through a pointer (*p = …) is not allowed in the REPL: pointers from the standard library can reach the application's own state")
	}
}

func (c *checker) genDecl(gd *ast.GenDecl) {
	switch gd.Tok {
	case token.CONST:
		var last []ast.Expr // a spec without values repeats the previous ones
		for i, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			vals := vs.Values
			if len(vals) == 0 {
				vals = last
			}
			last = vals
			c.iota = constant.MakeInt64(int64(i))
			for j, name := range vs.Names {
				c.ident(name)
				b := binding{}
				if j < len(vals) {
					c.expr(vals[j])
					if v, ok := c.constValue(vals[j]); ok {
						b.val = v
						if vs.Type != nil && c.isStringType(vs.Type) && v.Kind() == constant.Int {
							b.val = runeString(v)
						}
					} else {
						b.unknown = true
					}
				}
				c.sc.names[name.Name] = b
			}
			c.iota = nil
		}
	case token.VAR:
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for _, e := range vs.Values {
				c.expr(e)
			}
			if vs.Type != nil {
				c.addFrame(c.mulLimit(uint64(len(vs.Names)), c.typeUnits(vs.Type)))
			}
			for _, name := range vs.Names {
				c.ident(name)
				c.sc.names[name.Name] = binding{}
			}
		}
	case token.TYPE:
		for _, spec := range gd.Specs {
			ts := spec.(*ast.TypeSpec)
			c.ident(ts.Name)
			outer := c.sc
			params := typeParamNames(ts.TypeParams)
			decl := binding{isType: true, units: 1, generic: len(params) > 0, params: params}
			if len(params) > 0 {
				c.sc = newScope(outer)
				for _, n := range params {
					c.sc.names[n] = binding{isType: true, typeParam: true, units: 1}
				}
				c.generic++
			}
			outer.names[ts.Name.Name] = decl // recursive types
			decl.units = c.typeUnits(ts.Type)
			decl.inline = c.inlineTypes(ts.Type)
			decl.str = c.isStringType(ts.Type)
			if len(params) > 0 {
				c.generic--
			}
			c.sc = outer
			c.sc.names[ts.Name.Name] = decl
			c.recursiveType(ts.Name.Name)
		}
	}
}

func (c *checker) ident(id *ast.Ident) {
	if strings.HasPrefix(id.Name, "__") {
		c.fail("identifiers starting with __ are reserved: %s", id.Name)
	}
}

// expr checks an expression tree.
func (c *checker) expr(e ast.Expr) {
	c.depthWalk(e)
	ast.Inspect(e, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.Ident:
			c.ident(n)
			c.genericUse(n)
		case *ast.FuncLit:
			c.function(nil, n.Type, n.Body)
			return false
		case *ast.CompositeLit:
			c.literal(n)
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "new" && len(n.Args) == 1 {
				c.addFrame(c.typeUnits(n.Args[0]))
			}
		case *ast.IndexExpr:
			c.instance(n.X, []ast.Expr{n.Index})
			c.typeUnits(n)
		case *ast.IndexListExpr:
			c.instance(n.X, n.Indices)
			c.typeUnits(n)
		case *ast.ArrayType, *ast.StructType, *ast.MapType, *ast.ChanType, *ast.FuncType, *ast.InterfaceType:
			c.typeUnits(n.(ast.Expr))
		case *ast.BinaryExpr:
			c.constValue(n) // bounds constant arithmetic
		}
		return true
	})
}

// depthWalk refuses trees nested deeper than maxTreeDepth: the
// interpreter's compiler recurses on them, on a stack whose overflow is
// fatal.
func (c *checker) depthWalk(e ast.Node) {
	depth := 0
	ast.Inspect(e, func(n ast.Node) bool {
		if n == nil {
			depth--
			return false
		}
		if depth++; depth > maxTreeDepth {
			c.fail("the source nests more than %d levels deep", maxTreeDepth)
		}
		return true
	})
}

// maxTreeDepth bounds the depth of an expression's syntax tree.
const maxTreeDepth = 2000

// maxConstBits bounds the size of constant values (Go's own compiler
// stops at 512 bits of precision).
const maxConstBits = 1024

// typeUnits returns how many 16-byte units a value of type t holds inline
// (arrays multiply, structs add, generic instances multiply by their type
// arguments), and rejects types over the limit.
func (c *checker) typeUnits(t ast.Expr) uint64 {
	if c.tdepth++; c.tdepth > maxTypeDepth {
		c.fail("a type here nests more than %d levels deep", maxTypeDepth)
	}
	defer func() { c.tdepth-- }()
	switch t := t.(type) {
	case nil:
		return 1
	case *ast.ParenExpr:
		return c.typeUnits(t.X)
	case *ast.Ident:
		if b, ok := c.sc.lookup(t.Name); ok && b.isType {
			return b.units
		}
		return 1
	case *ast.SelectorExpr:
		if pkg, ok := t.X.(*ast.Ident); ok {
			if _, shadowed := c.sc.lookup(pkg.Name); !shadowed {
				if n, ok := c.ss.pkgTypeUnits(pkg.Name, t.Sel.Name); ok {
					return n
				}
			}
		}
		return 1
	case *ast.StarExpr:
		c.typeUnits(t.X)
		return 1
	case *ast.ArrayType:
		if id, ok := t.Elt.(*ast.Ident); ok && t.Len != nil {
			if b, ok := c.sc.lookup(id.Name); ok && b.typeParam {
				c.fail("arrays of a type parameter are not supported in the REPL")
			}
		}
		elem := c.typeUnits(t.Elt)
		if t.Len == nil { // a slice: a header
			return 2
		}
		if _, ok := t.Len.(*ast.Ellipsis); ok {
			return elem // [...]T{…}: checked with its literal
		}
		v, ok := c.constValue(t.Len)
		if !ok {
			c.fail("array length %s: in the REPL an array length must be a constant expression of literals and constants", exprString(t.Len))
		}
		n, exact := constant.Uint64Val(constant.ToInt(v))
		if !exact {
			c.fail("array length %s is not a valid length", exprString(t.Len))
		}
		return c.mulLimit(n, elem)
	case *ast.StructType:
		var total uint64
		for _, f := range t.Fields.List {
			n := c.typeUnits(f.Type)
			names := uint64(max(len(f.Names), 1))
			total = c.addLimit(total, c.mulLimit(n, names))
		}
		return max(total, 1)
	case *ast.IndexExpr:
		c.instance(t.X, []ast.Expr{t.Index})
		return c.mulLimit(c.typeUnits(t.X), c.typeUnits(t.Index))
	case *ast.IndexListExpr:
		c.instance(t.X, t.Indices)
		n := c.typeUnits(t.X)
		for _, ix := range t.Indices {
			n = c.mulLimit(n, c.typeUnits(ix))
		}
		return n
	case *ast.FuncType:
		for _, fl := range []*ast.FieldList{t.Params, t.Results} {
			if fl != nil {
				for _, f := range fl.List {
					c.typeUnits(f.Type)
				}
			}
		}
		return 2
	case *ast.InterfaceType:
		for _, f := range t.Methods.List {
			c.typeUnits(f.Type)
		}
		return 2
	case *ast.Ellipsis:
		c.typeUnits(t.Elt)
		return 2
	case *ast.MapType:
		c.typeUnits(t.Key)
		c.typeUnits(t.Value)
		return 1
	case *ast.ChanType:
		c.typeUnits(t.Value)
		return 1
	}
	return 2 // interfaces, funcs
}

// literal bounds composite literals: their element count (or highest
// index, for keyed ones) times their element size.
func (c *checker) literal(cl *ast.CompositeLit) {
	var elem uint64
	switch t := cl.Type.(type) {
	case *ast.ArrayType:
		elem = c.typeUnits(t.Elt)
	case *ast.MapType:
		elem = c.addLimit(c.typeUnits(t.Key), c.typeUnits(t.Value))
	default:
		if cl.Type != nil {
			c.addFrame(c.typeUnits(cl.Type))
		}
		return
	}
	var length, next uint64
	for _, e := range cl.Elts {
		if kv, ok := e.(*ast.KeyValueExpr); ok {
			if _, isMap := cl.Type.(*ast.MapType); !isMap {
				v, ok := c.constValue(kv.Key)
				if !ok {
					c.fail("index %s: in the REPL a literal's index must be a constant expression", exprString(kv.Key))
				}
				idx, exact := constant.Uint64Val(constant.ToInt(v))
				if !exact {
					c.fail("index %s is not a valid index", exprString(kv.Key))
				}
				next = idx
			}
		}
		if next == math.MaxUint64 {
			c.fail("literal index out of range")
		}
		next++
		length = max(length, next)
	}
	c.addFrame(c.mulLimit(length, elem))
}

func (c *checker) mulLimit(a, b uint64) uint64 {
	if a != 0 && b > c.lim.maxUnits/a {
		c.fail("this would take more than %d bytes: too large for the REPL", c.lim.maxUnits*16)
	}
	return a * b
}

func (c *checker) addLimit(a, b uint64) uint64 {
	if b > c.lim.maxUnits || a > c.lim.maxUnits-b {
		c.fail("this would take more than %d bytes: too large for the REPL", c.lim.maxUnits*16)
	}
	return a + b
}
