package interp

import (
	"bytes"
	"go/ast"
	"go/constant"
	"go/format"
	"go/token"
)

// The constant evaluator: the checker's view of constant expressions,
// so that sizes built from constants are bounded before they exist.

// constValue evaluates a constant expression made of literals, operators,
// iota, len of constant strings, conversions, constants in scope and the
// constants of the allowlisted packages. It fails the check when the
// value would pass maxConstBits.
func (c *checker) constValue(e ast.Expr) (constant.Value, bool) {
	v, ok := c.eval(e)
	if ok && v.Kind() == constant.Int && constant.BitLen(v) > maxConstBits {
		c.fail("constant %s is larger than %d bits", exprString(e), maxConstBits)
	}
	return v, ok
}

func (c *checker) eval(e ast.Expr) (constant.Value, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		v := constant.MakeFromLiteral(e.Value, e.Kind, 0)
		return v, v.Kind() != constant.Unknown
	case *ast.ParenExpr:
		return c.constValue(e.X)
	case *ast.Ident:
		if e.Name == "iota" && c.iota != nil {
			if b, ok := c.sc.lookup("iota"); !ok || b.val == nil {
				return c.iota, true
			}
		}
		if b, ok := c.sc.lookup(e.Name); ok && b.val != nil {
			return b.val, true
		} else if !ok && (e.Name == "true" || e.Name == "false") {
			return constant.MakeBool(e.Name == "true"), true
		}
		return nil, false
	case *ast.SelectorExpr:
		if pkg, ok := e.X.(*ast.Ident); ok {
			if _, shadowed := c.sc.lookup(pkg.Name); !shadowed {
				return c.ss.pkgConst(pkg.Name, e.Sel.Name)
			}
		}
		return nil, false
	case *ast.CallExpr:
		if id, ok := e.Fun.(*ast.Ident); ok && len(e.Args) == 1 {
			if id.Name == "len" {
				if v, ok := c.constValue(e.Args[0]); ok && v.Kind() == constant.String {
					return constant.MakeInt64(int64(len(constant.StringVal(v)))), true
				}
				return nil, false
			}
			if b, shadowed := c.sc.lookup(id.Name); (!shadowed && basicTypes[id.Name]) || (shadowed && b.isType && !b.typeParam) {
				return c.conversion(e.Fun, e.Args[0])
			}
		}
		if sel, ok := e.Fun.(*ast.SelectorExpr); ok && len(e.Args) == 1 {
			if pkg, ok := sel.X.(*ast.Ident); ok {
				if _, shadowed := c.sc.lookup(pkg.Name); !shadowed {
					if _, isType := c.ss.pkgTypeUnits(pkg.Name, sel.Sel.Name); isType {
						return c.conversion(e.Fun, e.Args[0])
					}
				}
			}
		}
		return nil, false
	case *ast.UnaryExpr:
		x, ok := c.constValue(e.X)
		if !ok || (e.Op != token.ADD && e.Op != token.SUB && e.Op != token.XOR && e.Op != token.NOT) {
			return nil, false
		}
		defer func() { recover() }() // mismatched kinds: not constant for us
		return constant.UnaryOp(e.Op, x, 0), true
	case *ast.BinaryExpr:
		x, ok1 := c.constValue(e.X)
		y, ok2 := c.constValue(e.Y)
		if e.Op == token.ADD && (c.unknownConst(e.X) || c.unknownConst(e.Y)) {
			// Concatenations of constants the checker cannot evaluate
			// could double a string at each declaration.
			c.fail("constant expression %s: the REPL cannot check the size of a constant it does not know the value of; use a variable", exprString(e))
		}
		if !ok1 || !ok2 {
			return nil, false
		}
		return c.binary(e, x, y)
	}
	return nil, false
}

func (c *checker) binary(e *ast.BinaryExpr, x, y constant.Value) (v constant.Value, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, isCheck := r.(*CheckError); isCheck {
				panic(r)
			}
			v, ok = nil, false // mismatched kinds: not constant for us
		}
	}()
	bits := func(v constant.Value) int {
		if v.Kind() == constant.Int {
			return constant.BitLen(v)
		}
		return 0
	}
	switch e.Op {
	case token.SHL, token.SHR:
		s, exact := constant.Uint64Val(constant.ToInt(y))
		if !exact || (e.Op == token.SHL && uint64(bits(x))+s > maxConstBits) {
			c.fail("constant %s is larger than %d bits", exprString(e), maxConstBits)
		}
		return constant.Shift(constant.ToInt(x), e.Op, uint(s)), true
	case token.MUL:
		if bits(x)+bits(y) > maxConstBits {
			c.fail("constant %s is larger than %d bits", exprString(e), maxConstBits)
		}
		return constant.BinaryOp(x, e.Op, y), true
	case token.ADD:
		if x.Kind() == constant.String && y.Kind() == constant.String {
			if n := len(constant.StringVal(x)) + len(constant.StringVal(y)); n > maxConstString {
				c.fail("constant %s would be a string of %d bytes; the REPL allows %d", exprString(e), n, maxConstString)
			}
		}
		return constant.BinaryOp(x, e.Op, y), true
	case token.SUB, token.AND, token.OR, token.XOR, token.AND_NOT:
		return constant.BinaryOp(x, e.Op, y), true
	case token.QUO, token.REM:
		if constant.Sign(y) == 0 {
			return nil, false
		}
		if e.Op == token.QUO && x.Kind() == constant.Int && y.Kind() == constant.Int {
			return constant.BinaryOp(x, token.QUO_ASSIGN, y), true
		}
		return constant.BinaryOp(x, e.Op, y), true
	case token.EQL, token.NEQ, token.LSS, token.LEQ, token.GTR, token.GEQ:
		return constant.MakeBool(constant.Compare(x, e.Op, y)), true
	case token.LAND, token.LOR:
		return constant.BinaryOp(x, e.Op, y), true
	}
	return nil, false
}

var basicTypes = map[string]bool{
	"int": true, "int8": true, "int16": true, "int32": true, "int64": true,
	"uint": true, "uint8": true, "uint16": true, "uint32": true, "uint64": true, "uintptr": true,
	"byte": true, "rune": true, "float32": true, "float64": true, "string": true,
}

func exprString(e ast.Expr) string {
	var b bytes.Buffer
	format.Node(&b, token.NewFileSet(), e)
	s := b.String()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}
