package interp

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"strconv"
	"strings"
)

// CheckError is source rejected before it runs. Msg says why.
type CheckError struct{ Msg string }

func (e *CheckError) Error() string { return e.Msg }

// parseFragment parses src the way yaegi does in its REPL: declarations in
// a pseudo file, anything else as the body of a function. It returns
// ErrIncomplete when src is a valid prefix of a longer fragment.
func parseFragment(fset *token.FileSet, src string) (ast.Node, error) {
	var s scanner.Scanner
	s.Init(fset.AddFile("", fset.Base(), len(src)), []byte(src), nil, 0)
	_, first, _ := s.Scan()

	wrapped := src
	inFunc := false
	switch first {
	case token.PACKAGE:
		return nil, &CheckError{Msg: "package clauses are not accepted: type declarations and statements directly"}
	case token.CONST, token.FUNC, token.IMPORT, token.TYPE, token.VAR:
		wrapped = "package main;" + src
	default:
		inFunc = true
		wrapped = "package main; func main() {" + src + "\n}"
	}
	f, err := parser.ParseFile(fset, "", wrapped, parser.DeclarationErrors)
	if err != nil && first == token.FUNC {
		// A function literal call, as yaegi retries: func() { … }()
		if f2, err2 := parser.ParseFile(fset, "", "package main; func main() {"+src+"\n}", parser.DeclarationErrors); err2 == nil {
			return f2.Decls[0].(*ast.FuncDecl).Body, nil
		}
	}
	if err != nil {
		if incomplete(err, src) {
			return nil, ErrIncomplete
		}
		return nil, &EvalError{Msg: cleanParseError(err)}
	}
	if inFunc {
		return f.Decls[0].(*ast.FuncDecl).Body, nil
	}
	return f, nil
}

// incomplete reports whether a parse error only means "keep typing", by
// the rules of yaegi's own REPL.
func incomplete(err error, src string) bool {
	list, ok := err.(scanner.ErrorList)
	if !ok || len(list) == 0 {
		return false
	}
	msg := list[0].Msg
	switch {
	case strings.HasSuffix(msg, "found 'EOF'"):
		return true
	case msg == "raw string literal not terminated":
		return true
	case strings.HasPrefix(msg, "expected operand, found '}'") && !strings.HasSuffix(strings.TrimSpace(src), "}"):
		return true
	}
	return false
}

func cleanParseError(err error) string {
	if list, ok := err.(scanner.ErrorList); ok && len(list) > 0 {
		return "syntax error: " + list[0].Msg
	}
	return err.Error()
}

// check rejects source that must not run: goroutines (a panic on a
// goroutine of evaluated code kills the host), func main and func init
// (yaegi re-runs main at every later eval), and imports outside allowed.
func check(fset *token.FileSet, src string, allowed map[string]bool) (ast.Node, error) {
	node, err := parseFragment(fset, src)
	if err != nil {
		return nil, err
	}
	if f, ok := node.(*ast.File); ok {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && (fd.Name.Name == "main" || fd.Name.Name == "init") {
				return nil, &CheckError{Msg: fmt.Sprintf("declaring func %s is not allowed in the REPL (yaegi would re-run it at every later eval)", fd.Name.Name)}
			}
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return nil, &CheckError{Msg: "malformed import path"}
			}
			switch {
			case strings.HasPrefix(p, ".") || strings.HasPrefix(p, "/"):
				return nil, &CheckError{Msg: fmt.Sprintf("import %q: relative and absolute imports are not allowed", p)}
			case !allowed[p]:
				return nil, &CheckError{Msg: fmt.Sprintf("import %q: not available in this session (type vars to list what is)", p)}
			}
		}
	}
	var bad error
	ast.Inspect(node, func(n ast.Node) bool {
		if bad != nil {
			return false
		}
		switch n := n.(type) {
		case *ast.GoStmt:
			bad = &CheckError{Msg: "go statements are not allowed: a goroutine started from the REPL could crash the service"}
		case *ast.RangeStmt:
			if lit, ok := n.X.(*ast.BasicLit); ok && lit.Kind == token.INT {
				bad = &CheckError{Msg: "range over an integer is Go 1.22+ and the interpreter does not support it: write for i := 0; i < N; i++"}
			}
		}
		return true
	})
	return node, bad
}

// showsResult reports whether the value of a fragment is worth printing:
// the fragment ends in an expression statement that is not a call to one
// of the fmt.Print functions (whose byte count nobody wants to see).
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
