package interp

// The splitter: source cut at top-level statement boundaries into runs
// of declarations or statements, and parsed.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"strings"
)

// chunk is a run of top-level declarations or of statements: yaegi
// evaluates one kind at a time.
type chunk struct {
	src  string
	decl bool
}

// split cuts src at top-level statement boundaries into chunks of
// consecutive declarations or statements. It returns ErrIncomplete when
// brackets are still open at the end.
func split(src string) ([]chunk, error) {
	fset := token.NewFileSet()
	var s scanner.Scanner
	var scanErr error
	s.Init(fset.AddFile("", fset.Base(), len(src)), []byte(src), func(pos token.Position, msg string) {
		if scanErr == nil {
			scanErr = fmt.Errorf("%s", msg)
			if msg == "raw string literal not terminated" || msg == "comment not terminated" {
				scanErr = ErrIncomplete
			}
		}
	}, 0)
	type tok struct {
		pos int
		tok token.Token
	}
	var toks []tok
	for {
		p, t, _ := s.Scan()
		if t == token.EOF {
			break
		}
		toks = append(toks, tok{fset.Position(p).Offset, t})
	}
	if scanErr != nil {
		if scanErr == ErrIncomplete {
			return nil, ErrIncomplete
		}
		return nil, &EvalError{Msg: "syntax error: " + scanErr.Error()}
	}
	var (
		chunks []chunk
		depth  int
		start  = -1 // offset where the current statement starts
		isDecl bool
	)
	flush := func(end int) {
		if start < 0 {
			return
		}
		text := strings.TrimSpace(src[start:end])
		start = -1
		if text == "" {
			return
		}
		if n := len(chunks); n > 0 && chunks[n-1].decl == isDecl {
			chunks[n-1].src += "\n" + text
			return
		}
		chunks = append(chunks, chunk{src: text, decl: isDecl})
	}
	header := false // in the header of a for, if, switch or select: its semicolons are its own
	for i, t := range toks {
		switch t.tok {
		case token.FOR, token.IF, token.SWITCH, token.SELECT:
			if depth == 0 {
				header = true
			}
		case token.LBRACE:
			if depth == 0 {
				header = false
			}
		}
		switch t.tok {
		case token.LPAREN, token.LBRACK, token.LBRACE:
			depth++
		case token.RPAREN, token.RBRACK, token.RBRACE:
			depth--
		}
		if start < 0 && t.tok != token.SEMICOLON {
			if t.tok == token.PACKAGE {
				return nil, rejectf("package clauses are not accepted: type declarations and statements directly")
			}
			start = t.pos
			kinds := make([]token.Token, 0, 16)
			for _, u := range toks[i:] {
				kinds = append(kinds, u.tok)
				if len(kinds) == cap(kinds) || u.tok == token.LBRACE {
					break
				}
			}
			isDecl = declStarts(kinds)
		}
		if depth == 0 && !header && t.tok == token.SEMICOLON {
			flush(t.pos)
		}
	}
	if depth > 0 {
		return nil, ErrIncomplete
	}
	flush(len(src))
	return chunks, nil
}

// declStarts reports whether the statement whose tokens begin at 0 is a
// top-level declaration (import, type, const, var, func NAME, or a method)
// rather than a statement (including a function literal call).
func declStarts(toks []token.Token) bool {
	switch toks[0] {
	case token.IMPORT, token.TYPE, token.CONST, token.VAR:
		return true
	case token.FUNC:
		if len(toks) > 1 && toks[1] == token.IDENT {
			return true
		}
		if len(toks) > 1 && toks[1] == token.LPAREN { // a receiver, or a literal's parameters?
			depth := 0
			for k := 1; k < len(toks); k++ {
				switch toks[k] {
				case token.LPAREN:
					depth++
				case token.RPAREN:
					depth--
					if depth == 0 { // a method: func (r T) Name(
						return k+2 < len(toks) && toks[k+1] == token.IDENT && toks[k+2] == token.LPAREN
					}
				}
			}
		}
	}
	return false
}

// parseFragment parses one chunk the way yaegi does in its REPL:
// declarations in a pseudo file, statements as the body of a function.
func parseFragment(fset *token.FileSet, c chunk) (ast.Node, error) {
	wrapped := "package main; func main() {" + c.src + "\n}"
	if c.decl {
		wrapped = "package main;" + c.src
	}
	f, err := parser.ParseFile(fset, "", wrapped, parser.DeclarationErrors)
	if err != nil {
		if incomplete(err, c.src) {
			return nil, ErrIncomplete
		}
		return nil, &EvalError{Msg: cleanParseError(err)}
	}
	if c.decl {
		return f, nil
	}
	return f.Decls[0].(*ast.FuncDecl).Body, nil
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
