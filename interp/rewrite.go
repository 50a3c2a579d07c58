package interp

import (
	"go/ast"
	"strings"
)

// The rewriter: guards injected into checked source (call depth,
// allocation sizes), and whether a chunk shows its result.

// Names of the guard functions the rewriter injects. They live in the
// pseudo package guardPkg, which is imported into every interpreter and
// unreachable from typed source (identifiers starting with "__" are
// rejected).
const (
	guardPkg   = "__opsrepl"
	guardEnter = guardPkg + ".Enter"
	guardLeave = guardPkg + ".Leave"
	guardMake  = guardPkg + ".Make"
)

// rewrite injects the runtime guards:
//   - every function body starts with Enter(); defer Leave(), so call
//     depth is bounded (Go's own stack overflow is fatal);
//   - every make(T, n…) passes its sizes through Make, which knows T's
//     element size and refuses allocations over the limit.
//
// It reports whether it changed anything.
func rewrite(node ast.Node) (changed bool) {
	ast.Inspect(node, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if n.Body != nil {
				n.Body.List = append(depthGuard(), n.Body.List...)
				changed = true
			}
		case *ast.FuncLit:
			n.Body.List = append(depthGuard(), n.Body.List...)
			changed = true
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "make" && len(n.Args) >= 2 {
				changed = true
				// make(T, a, b) → make(T, Make((*T)(nil), a), Make((*T)(nil), b))
				for i := 1; i < len(n.Args); i++ {
					probe := &ast.CallExpr{Fun: &ast.ParenExpr{X: &ast.StarExpr{X: n.Args[0]}}, Args: []ast.Expr{ast.NewIdent("nil")}}
					n.Args[i] = &ast.CallExpr{Fun: selector(guardMake), Args: []ast.Expr{probe, n.Args[i]}}
				}
			}
		}
		return true
	})
	return changed
}

func depthGuard() []ast.Stmt {
	return []ast.Stmt{
		&ast.ExprStmt{X: &ast.CallExpr{Fun: selector(guardEnter)}},
		&ast.DeferStmt{Call: &ast.CallExpr{Fun: selector(guardLeave)}},
	}
}

func selector(s string) ast.Expr {
	pkg, name, _ := strings.Cut(s, ".")
	return &ast.SelectorExpr{X: ast.NewIdent(pkg), Sel: ast.NewIdent(name)}
}

// showsResult reports whether the value of a chunk is worth printing: it
// ends in an expression statement that is not a call to one of the
// fmt.Print functions (whose byte count nobody wants to see).
func showsResult(node ast.Node) bool {
	body, ok := node.(*ast.BlockStmt)
	if !ok || len(body.List) == 0 {
		return false // declarations
	}
	es, ok := body.List[len(body.List)-1].(*ast.ExprStmt)
	if !ok {
		return false
	}
	if call, ok := es.X.(*ast.CallExpr); ok {
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "fmt" && strings.HasPrefix(sel.Sel.Name, "Print") {
				return false
			}
		}
	}
	return true
}
