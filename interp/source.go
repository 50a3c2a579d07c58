package interp

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/constant"
	"go/format"
	"go/token"
	"reflect"
	"strings"
)

// Source goes through four stages before yaegi sees it: split (split.go)
// into runs of declarations or statements, each parsed; checked
// (check.go, with the constant evaluator of consteval.go); rewritten
// (rewrite.go) with guards; printed back. prepare runs them for one chunk.

// CheckError is source rejected before it runs. Msg says why.
type CheckError struct{ Msg string }

func (e *CheckError) Error() string { return e.Msg }

func rejectf(format string, args ...any) error {
	return &CheckError{Msg: fmt.Sprintf(format, args...)}
}

// limits are the static bounds the checker enforces.
type limits struct {
	maxUnits uint64 // 16-byte units in one type, literal, or function frame
}

// prepared is a checked and rewritten chunk.
type prepared struct {
	src        string // what yaegi evaluates
	showResult bool   // the chunk ends in an expression worth printing
}

// session is what the checker remembers between evaluations: the
// top-level constants and the sizes of top-level named types, so that
// array sizes built from earlier declarations are bounded too.
type session struct {
	top *scope
	// pkgSym finds a symbol of an allowlisted package by package name.
	pkgSym func(pkg, name string) (reflect.Value, bool)
}

func newSession(pkgSym func(pkg, name string) (reflect.Value, bool)) *session {
	return &session{top: newScope(nil), pkgSym: pkgSym}
}

// pkgTypeUnits returns the size of a package type in 16-byte units.
func (ss *session) pkgTypeUnits(pkg, name string) (uint64, bool) {
	if ss.pkgSym == nil {
		return 0, false
	}
	v, ok := ss.pkgSym(pkg, name)
	if !ok || v.Kind() != reflect.Pointer || !v.IsNil() { // types are (*T)(nil)
		return 0, false
	}
	return max(uint64(v.Type().Elem().Size()+15)/16, 1), true
}

// pkgConst returns the value of a package constant.
func (ss *session) pkgConst(pkg, name string) (constant.Value, bool) {
	if ss.pkgSym == nil {
		return nil, false
	}
	v, ok := ss.pkgSym(pkg, name)
	if !ok || !v.IsValid() || v.CanSet() {
		return nil, false
	}
	if cv, ok := v.Interface().(constant.Value); ok {
		return cv, true
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return constant.MakeInt64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return constant.MakeUint64(v.Uint()), true
	}
	return nil, false
}

// prepare checks one chunk and rewrites it with the runtime guards.
func (ss *session) prepare(c chunk, allowed map[string]bool, lim limits) (prepared, error) {
	fset := token.NewFileSet()
	node, err := parseFragment(fset, c)
	if err != nil {
		return prepared{}, err
	}
	if err := ss.check(node, allowed, lim); err != nil {
		return prepared{}, err
	}
	changed := dropRedundantImports(node)
	changed = rewrite(node) || changed
	// Nothing injected, and no comments (yaegi reads build tags from
	// comments; the printed form has none): evaluate the text as typed.
	if !changed && !strings.Contains(c.src, "//") && !strings.Contains(c.src, "/*") {
		src := c.src
		if !c.decl {
			src = ";" + src // see below
		}
		return prepared{src: src, showResult: showsResult(node)}, nil
	}
	var buf bytes.Buffer
	switch n := node.(type) {
	case *ast.File:
		for _, d := range n.Decls {
			if err := format.Node(&buf, fset, d); err != nil {
				return prepared{}, fmt.Errorf("interp: print: %w", err)
			}
			buf.WriteString("\n")
		}
	case *ast.BlockStmt:
		// yaegi decides by the first token whether source is a declaration:
		// a statement starting with a function literal must not look like one.
		buf.WriteString(";")
		for _, st := range n.List {
			if err := format.Node(&buf, fset, st); err != nil {
				return prepared{}, fmt.Errorf("interp: print: %w", err)
			}
			buf.WriteString("\n")
		}
	}
	return prepared{src: buf.String(), showResult: showsResult(node)}, nil
}

// dropRedundantImports removes unnamed imports: every allowed package is
// already imported under its own name in each interpreter, and yaegi
// refuses to import a package twice. Imports persist across evals.
func dropRedundantImports(node ast.Node) (changed bool) {
	f, ok := node.(*ast.File)
	if !ok {
		return false
	}
	decls := f.Decls[:0]
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.IMPORT {
			decls = append(decls, d)
			continue
		}
		specs := gd.Specs[:0]
		for _, sp := range gd.Specs {
			if is := sp.(*ast.ImportSpec); is.Name != nil {
				specs = append(specs, sp)
			} else {
				changed = true
			}
		}
		if gd.Specs = specs; len(specs) > 0 {
			decls = append(decls, gd)
		}
	}
	f.Decls = decls
	return changed
}
