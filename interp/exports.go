package interp

import (
	"encoding"
	"encoding/json"
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
	pkgs map[string]map[string]Symbol
	err  error
}

// Symbol is one export: a function, or the snapshot of a value.
type Symbol struct {
	// Func is the exported function; invalid for a value.
	Func reflect.Value
	// Type is the function's or the value's type.
	Type reflect.Type
	// Snapshot is a value's JSON, taken when Value was called; nil for a
	// function.
	Snapshot []byte
}

// Symbol returns the export pkgPath.name.
func (e *Exports) Symbol(pkgPath, name string) (Symbol, bool) {
	if e == nil {
		return Symbol{}, false
	}
	s, ok := e.pkgs[pkgPath][name]
	return s, ok
}

// value returns what an interpreter gets for s: the function, or a fresh,
// addressable copy of the snapshot.
func (s Symbol) value() (reflect.Value, error) {
	if s.Func.IsValid() {
		return s.Func, nil
	}
	p := reflect.New(s.Type)
	if err := json.Unmarshal(s.Snapshot, p.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return p.Elem(), nil
}

// Func exports the function fn as pkgPath.name, e.g.
// Func("shop/cache", "Len", cache.Len) is called as cache.Len() in the
// REPL. Functions are the recommended way to export: they decide exactly
// what the REPL can see and they can take the locks your data needs.
//
// Arguments and results cross between the interpreter and the
// application as copies (a sandboxed interpreter runs in another
// process): each must be a type that JSON carries both ways, made of
// booleans, numbers (not complex), strings, and arrays, slices, maps
// (string, integer or text-marshalling keys), pointers and structs of
// those; only exported struct fields cross. An argument or result may
// also be an error, which crosses as its message. Functions, channels,
// unsafe pointers and other interfaces cannot cross.
//
// An invalid export (fn not a function, a parameter or result that
// cannot cross, bad path or name, a duplicate) is recorded and reported by
// Err, and by interp.New and console.New, with the export and the
// parameter it is about.
func (e *Exports) Func(pkgPath, name string, fn any) *Exports {
	v := reflect.ValueOf(fn)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		e.fail(fmt.Errorf("interp: export %s.%s: want a non-nil function; got %T", pkgPath, name, fn))
		return e
	}
	t := v.Type()
	for i := 0; i < t.NumIn(); i++ {
		if err := crossable(t.In(i), true); err != nil {
			e.fail(fmt.Errorf("interp: export %s.%s: parameter %d (%s): %w", pkgPath, name, i+1, t.In(i), err))
			return e
		}
	}
	for i := 0; i < t.NumOut(); i++ {
		if err := crossable(t.Out(i), true); err != nil {
			e.fail(fmt.Errorf("interp: export %s.%s: result %d (%s): %w", pkgPath, name, i+1, t.Out(i), err))
			return e
		}
	}
	e.add(pkgPath, name, Symbol{Func: v, Type: t})
	return e
}

// Value exports a copy of v, taken now, as pkgPath.name: configuration,
// limits, build facts, anything that does not change after start-up.
// Pass a pointer and the copy is of what it points to. Each interpreter
// gets its own copy of that snapshot; changing it changes nothing in the
// application, and later changes in the application are not seen. For
// live state export a function that takes your locks.
//
// The copy is made as a function result is (see Func): its type must
// cross, and only exported struct fields are kept. Methods of the value's
// type run on the copy, inside the interpreter.
func (e *Exports) Value(pkgPath, name string, v any) *Exports {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		e.fail(fmt.Errorf("interp: export %s.%s: nil value", pkgPath, name))
		return e
	}
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if err := crossable(rv.Type(), false); err != nil {
		e.fail(fmt.Errorf("interp: export %s.%s (%s): %w", pkgPath, name, rv.Type(), err))
		return e
	}
	snap, err := json.Marshal(rv.Interface())
	if err != nil {
		e.fail(fmt.Errorf("interp: export %s.%s: cannot copy the value: %w", pkgPath, name, err))
		return e
	}
	e.add(pkgPath, name, Symbol{Type: rv.Type(), Snapshot: snap})
	return e
}

var (
	errorType         = reflect.TypeFor[error]()
	textMarshaler     = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler   = reflect.TypeFor[encoding.TextUnmarshaler]()
	jsonMarshaler     = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler   = reflect.TypeFor[json.Unmarshaler]()
	errCannotCross    = errors.New("cannot cross to the interpreter")
	errCannotCrossKey = errors.New("cannot cross to the interpreter as a map key")
)

// crossable reports whether values of t can be copied between the
// application and an interpreter (see Func), and if not, why. top is
// true for a parameter or result, where error is allowed.
func crossable(t reflect.Type, top bool) error {
	return crossCheck(t, top, map[reflect.Type]bool{})
}

func crossCheck(t reflect.Type, top bool, seen map[reflect.Type]bool) error {
	if top && t == errorType {
		return nil
	}
	if seen[t] {
		return nil // a recursive type: checked where it started
	}
	seen[t] = true
	if t.Implements(jsonMarshaler) && reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil // the type carries itself
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return nil
	case reflect.Array, reflect.Slice, reflect.Pointer:
		return crossCheck(t.Elem(), false, seen)
	case reflect.Map:
		k := t.Key()
		switch k.Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			if !k.Implements(textMarshaler) || !reflect.PointerTo(k).Implements(textUnmarshaler) {
				return fmt.Errorf("map key %s: %w (use strings, integers or a TextMarshaler)", k, errCannotCrossKey)
			}
		}
		return crossCheck(t.Elem(), false, seen)
	case reflect.Struct:
		if t.Implements(textMarshaler) && reflect.PointerTo(t).Implements(textUnmarshaler) {
			return nil // time.Time and the like
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue // not copied
			}
			if err := crossCheck(f.Type, false, seen); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		return nil
	case reflect.Interface:
		if t == errorType {
			return fmt.Errorf("an error inside a value %w: only a parameter or result may be an error", errCannotCross)
		}
		return fmt.Errorf("an interface (%s) has no concrete type to copy, so it %w", t, errCannotCross)
	}
	return fmt.Errorf("a %s %w", t.Kind(), errCannotCross)
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

func (e *Exports) add(pkgPath, name string, sym Symbol) {
	if err := validPackagePath(pkgPath); err != nil {
		e.fail(fmt.Errorf("interp: export %s.%s: %w", pkgPath, name, err))
		return
	}
	if !token.IsIdentifier(name) || !token.IsExported(name) {
		e.fail(fmt.Errorf("interp: export %s.%s: the name must be an exported Go identifier", pkgPath, name))
		return
	}
	if e.pkgs == nil {
		e.pkgs = map[string]map[string]Symbol{}
	}
	if e.pkgs[pkgPath] == nil {
		e.pkgs[pkgPath] = map[string]Symbol{}
	}
	if _, dup := e.pkgs[pkgPath][name]; dup {
		e.fail(fmt.Errorf("interp: export %s.%s: exported twice", pkgPath, name))
		return
	}
	e.pkgs[pkgPath][name] = sym
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
