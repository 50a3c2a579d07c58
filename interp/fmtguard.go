package interp

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/opsrepl/opsrepl/interp/internal/stdsyms"
)

// The fmt package is the one allowlisted package that calls back into
// interpreted code with its own internal state, recurses natively over
// values, and can build output far larger than its input. So it is not
// taken from yaegi's table as is:
//
//   - interpreted values are presented to fmt as Stringers (and errors),
//     never as Formatters or Scanners: a Format method could keep the
//     fmt.State it is handed, which is a pooled printer that fmt (and yaegi
//     itself, building source text) reuses afterwards;
//   - Fprint* format into a fresh string first, so an interpreted Writer
//     never holds a pooled buffer; Fscan* and the stdin Scan* are gone;
//   - every function sizes its arguments first (cycles, nesting depth,
//     estimated output, widths in the format) and refuses, with a panic
//     the eval reports, what would overflow the stack or the heap.
//
// fmtKey names package fmt without being the exact key "fmt/fmt", which
// would make yaegi replace Print* by its own unguarded versions and
// preload its generic slices, maps and cmp sources (unguarded make).
const fmtKey = "fmt/./fmt"

var fmtDropped = []string{
	"Formatter", "_Formatter", "State", "_State", "Scanner", "_Scanner", "ScanState", "_ScanState",
	"FormatString", "Fscan", "Fscanf", "Fscanln", "Scan", "Scanf", "Scanln",
}

// fmtSymbols returns package fmt for one interpreter, printing to stdout,
// and the MapTypes entries that make yaegi wrap interpreted arguments of
// its functions as fmt.Stringer.
func fmtSymbols(stdout io.Writer, trees *errTrees, maxBytes uint64) (map[string]reflect.Value, map[reflect.Value][]reflect.Type) {
	m := map[string]reflect.Value{}
	for name, v := range stdsyms.Table()["fmt/fmt"] {
		m[name] = v
	}
	for _, name := range fmtDropped {
		delete(m, name)
	}
	limit := float64(maxBytes)
	check := func(format string, a []any) {
		sizeArgs(format, a, limit)
	}
	fns := map[string]any{
		"Print":    func(a ...any) (int, error) { check("", a); return fmt.Fprint(stdout, a...) },
		"Println":  func(a ...any) (int, error) { check("", a); return fmt.Fprintln(stdout, a...) },
		"Printf":   func(f string, a ...any) (int, error) { check(f, a); return fmt.Fprintf(stdout, f, a...) },
		"Sprint":   func(a ...any) string { check("", a); return fmt.Sprint(a...) },
		"Sprintln": func(a ...any) string { check("", a); return fmt.Sprintln(a...) },
		"Sprintf":  func(f string, a ...any) string { check(f, a); return fmt.Sprintf(f, a...) },
		"Errorf": func(f string, a ...any) error {
			check(f, a)
			s := trees.check("fmt.Errorf", wrappedErrors(a), maxBytes)
			e := fmt.Errorf(f, a...)
			s.bytes = float64(len(e.Error()))
			trees.built(e, s)
			return e
		},
		"Append":   func(b []byte, a ...any) []byte { check("", a); return fmt.Append(b, a...) },
		"Appendln": func(b []byte, a ...any) []byte { check("", a); return fmt.Appendln(b, a...) },
		"Appendf":  func(b []byte, f string, a ...any) []byte { check(f, a); return fmt.Appendf(b, f, a...) },
		"Fprint": func(w io.Writer, a ...any) (int, error) {
			check("", a)
			return io.WriteString(w, fmt.Sprint(a...))
		},
		"Fprintln": func(w io.Writer, a ...any) (int, error) {
			check("", a)
			return io.WriteString(w, fmt.Sprintln(a...))
		},
		"Fprintf": func(w io.Writer, f string, a ...any) (int, error) {
			check(f, a)
			return io.WriteString(w, fmt.Sprintf(f, a...))
		},
	}
	stringer := []reflect.Type{reflect.TypeFor[fmt.Stringer]()}
	mt := map[reflect.Value][]reflect.Type{}
	for name, fn := range fns {
		v := reflect.ValueOf(fn)
		m[name] = v
		mt[v] = stringer
	}
	return m, mt
}

// fmtPanic is the panic value when printing would go wrong.
type fmtPanic struct{ msg string }

func (p fmtPanic) Error() string { return p.msg }

// sizeArgs estimates what fmt would produce for format and a, and panics
// with a fmtPanic when a value contains itself, nests too deep, or the
// output would pass limit bytes.
func sizeArgs(format string, a []any, limit float64) {
	z := &sizer{limit: limit, memo: map[visitKey]float64{}, active: map[visitKey]bool{}}
	total := float64(len(format)) + formatWidths(format)
	for _, x := range a {
		total += z.size(reflect.ValueOf(x), 0) + 1
		z.check(total)
	}
	z.check(total)
}

// formatWidths adds up the widths and precisions a format asks for: fmt
// pads to at most a million characters per verb, but a format can hold
// many verbs.
func formatWidths(format string) float64 {
	var total float64
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		for i < len(format) && strings.IndexByte("+-# 0", format[i]) >= 0 {
			i++
		}
		for part := 0; part < 2 && i < len(format); part++ { // width, then precision
			if format[i] == '*' {
				total += 1e6
				i++
			} else {
				n := 0.0
				for i < len(format) && format[i] >= '0' && format[i] <= '9' {
					n = min(n*10+float64(format[i]-'0'), 1e6)
					i++
				}
				total += n
			}
			if part == 0 && i < len(format) && format[i] == '.' {
				i++
				continue
			}
			break
		}
	}
	return total
}

type visitKey struct {
	ptr uintptr
	typ reflect.Type
	n   int
}

type sizer struct {
	limit  float64
	memo   map[visitKey]float64
	active map[visitKey]bool
}

const maxPrintDepth = 2000

func (z *sizer) check(n float64) {
	if n > z.limit {
		panic(fmtPanic{fmt.Sprintf("printing this would produce about %.0f bytes; the limit is %.0f", n, z.limit)})
	}
}

// size estimates the printed size of v, visiting each shared slice, map
// or pointer once (so a structure built by doubling is sized quickly) and
// refusing structures that contain themselves (fmt would recurse forever).
func (z *sizer) size(v reflect.Value, depth int) float64 {
	if depth > maxPrintDepth {
		panic(fmtPanic{fmt.Sprintf("this value nests more than %d levels deep: too deep to print", maxPrintDepth)})
	}
	if !v.IsValid() {
		return 5
	}
	if n, ok := fixedSize(v.Type()); ok {
		return n
	}
	switch v.Kind() {
	case reflect.String:
		return float64(v.Len()) + 2
	case reflect.Interface:
		return z.size(v.Elem(), depth+1)
	case reflect.Pointer:
		if v.IsNil() || depth > 0 { // fmt prints nested pointers as addresses
			return 20
		}
		return z.visit(visitKey{v.Pointer(), v.Type(), 0}, func() float64 { return 1 + z.size(v.Elem(), depth+1) })
	case reflect.Slice:
		if v.IsNil() {
			return 2
		}
		return z.visit(visitKey{v.Pointer(), v.Type(), v.Len()}, func() float64 { return z.elems(v, depth) })
	case reflect.Array:
		return z.elems(v, depth)
	case reflect.Map:
		if v.IsNil() {
			return 5
		}
		return z.visit(visitKey{v.Pointer(), v.Type(), 0}, func() float64 {
			total := 5.0
			it := v.MapRange()
			for it.Next() {
				total += z.size(it.Key(), depth+1) + z.size(it.Value(), depth+1) + 2
				z.check(total)
			}
			return total
		})
	case reflect.Struct:
		total := 2.0
		for i := 0; i < v.NumField(); i++ {
			total += z.size(v.Field(i), depth+1) + float64(len(v.Type().Field(i).Name)) + 2
			z.check(total)
		}
		return total
	}
	return 24
}

func (z *sizer) elems(v reflect.Value, depth int) float64 {
	n := v.Len()
	if each, ok := fixedSize(v.Type().Elem()); ok {
		total := 2 + float64(n)*(each+1)
		z.check(total)
		return total
	}
	total := 2.0
	for i := 0; i < n; i++ {
		total += z.size(v.Index(i), depth+1) + 1
		z.check(total)
	}
	return total
}

func (z *sizer) visit(k visitKey, f func() float64) float64 {
	if z.active[k] {
		panic(fmtPanic{"this value contains itself: printing it would never end"})
	}
	if n, ok := z.memo[k]; ok {
		return n
	}
	z.active[k] = true
	n := f()
	delete(z.active, k)
	z.memo[k] = n
	return n
}

// fixedSize returns the printed size bound of types whose values all
// print within a fixed size, so large arrays of them need no visit.
func fixedSize(t reflect.Type) (float64, bool) {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return 48, true
	case reflect.Struct:
		total := 2.0
		for i := 0; i < t.NumField(); i++ {
			n, ok := fixedSize(t.Field(i).Type)
			if !ok {
				return 0, false
			}
			total += n + float64(len(t.Field(i).Name)) + 2
		}
		return total, true
	case reflect.Array:
		n, ok := fixedSize(t.Elem())
		return 2 + float64(t.Len())*(n+1), ok
	}
	return 0, false
}

// truncateString renders s quoted, or its first bytes and its length when
// it is longer than limit.
func truncateString(s string, limit int) string {
	if len(s) <= limit {
		return fmt.Sprintf("%q", s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes in all)", s[:cut], len(s))
}
