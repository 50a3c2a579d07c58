package interp

import (
	"errors"
	"fmt"
	"go/token"
	"path"
	"reflect"
	"sort"
	"strings"
)

// Exports is the set of application symbols an interpreter can reach,
// grouped by import path. Build it with Func (the easy, safe path) and,
// where you must, Value. The zero value is empty and ready to use.
//
// Exports is not safe for concurrent mutation; build it once at start-up.
type Exports struct {
	pkgs map[string]map[string]reflect.Value
	err  error
}

// Func exports the function fn as pkgPath.name, e.g.
// Func("shop/cache", "Len", cache.Len) is called as cache.Len() in the
// REPL. Functions are the recommended way to export: they decide exactly
// what the REPL can see and they can take the locks your data needs.
//
// An invalid export (fn not a function, bad path or name, a duplicate) is
// recorded and reported by Err, and by interp.New and console.New.
func (e *Exports) Func(pkgPath, name string, fn any) *Exports {
	v := reflect.ValueOf(fn)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		e.fail(fmt.Errorf("interp: export %s.%s: want a non-nil function; got %T", pkgPath, name, fn))
		return e
	}
	e.add(pkgPath, name, v)
	return e
}

// Value exports a variable, constant, pointer or object as pkgPath.name.
// This is an explicit opt-in with real hazards, because the REPL then
// touches your data without your locks:
//
//   - writing an exported map while the application (or another session)
//     uses it is a fatal "concurrent map writes" error that kills the
//     process; export a function that takes the lock instead;
//   - printing a struct with %v or %+v shows its unexported fields, secrets
//     included;
//   - every exported method of an exported object, and of everything
//     reachable from it, can be called.
//
// Pass a pointer to export a variable: the REPL then reads its current
// value. (yaegi treats exported variables of basic types as constants, so
// the REPL cannot assign them; export a setter function if it must.)
func (e *Exports) Value(pkgPath, name string, v any) *Exports {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		e.fail(fmt.Errorf("interp: export %s.%s: nil value", pkgPath, name))
		return e
	}
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem() // yaegi reads a variable through an addressable value
	}
	e.add(pkgPath, name, rv)
	return e
}

// Err returns the first invalid export, if any.
func (e *Exports) Err() error {
	if e == nil {
		return nil
	}
	return e.err
}

// Packages returns the exported import paths, sorted.
func (e *Exports) Packages() []string {
	if e == nil {
		return nil
	}
	out := make([]string, 0, len(e.pkgs))
	for p := range e.pkgs {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Names returns the exported names of pkgPath, sorted.
func (e *Exports) Names(pkgPath string) []string {
	if e == nil {
		return nil
	}
	out := make([]string, 0, len(e.pkgs[pkgPath]))
	for n := range e.pkgs[pkgPath] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (e *Exports) add(pkgPath, name string, v reflect.Value) {
	if err := validPackagePath(pkgPath); err != nil {
		e.fail(fmt.Errorf("interp: export %s.%s: %w", pkgPath, name, err))
		return
	}
	if !token.IsIdentifier(name) || !token.IsExported(name) {
		e.fail(fmt.Errorf("interp: export %s.%s: the name must be an exported Go identifier", pkgPath, name))
		return
	}
	if e.pkgs == nil {
		e.pkgs = map[string]map[string]reflect.Value{}
	}
	if e.pkgs[pkgPath] == nil {
		e.pkgs[pkgPath] = map[string]reflect.Value{}
	}
	if _, dup := e.pkgs[pkgPath][name]; dup {
		e.fail(fmt.Errorf("interp: export %s.%s: exported twice", pkgPath, name))
		return
	}
	e.pkgs[pkgPath][name] = v
}

func (e *Exports) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// validPackagePath accepts slash-separated Go identifiers-ish elements and
// refuses anything that would collide with the standard library table.
func validPackagePath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return errors.New("bad import path")
	}
	for _, el := range strings.Split(p, "/") {
		if el == "." || el == ".." {
			return errors.New("bad import path")
		}
		for _, c := range el {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return errors.New("bad import path")
			}
		}
	}
	if !token.IsIdentifier(path.Base(p)) {
		return errors.New("the last element of the import path must be a Go identifier (it becomes the package name)")
	}
	if _, std := stdlibAllow[p]; std {
		return errors.New("collides with an allowlisted standard library package")
	}
	return nil
}
