package interp

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/opsrepl/opsrepl/interp/internal/stdsyms"
)

// stdlibAllow lists the standard library packages an interpreter gets, by
// import path. It is an allowlist: nothing else from stdsyms.Table() is
// copied, so packages such as os, net, reflect, runtime, unsafe and syscall
// are unreachable. Per-package curation happens in curate.
var stdlibAllow = map[string]bool{
	"errors":       true,
	"fmt":          true,
	"math":         true,
	"sort":         true,
	"strconv":      true,
	"strings":      true,
	"time":         true,
	"unicode":      true,
	"unicode/utf8": true,
}

// dropped names, per package: callbacks that run user code on a new
// goroutine (a panic there kills the host), and growth without bounds.
var dropped = map[string][]string{
	"time": {"AfterFunc", "Tick", "NewTicker", "NewTimer", "After", "LoadLocation"},
	"strings": {"Builder", "NewReplacer",
		// Iterators: the interpreter cannot range over a function.
		"FieldsFuncSeq", "FieldsSeq", "Lines", "SplitAfterSeq", "SplitSeq"},
	"strconv": {"AppendQuote", "AppendQuoteToASCII", "AppendQuoteToGraphic"}, // Quote's, unbounded
}

// symbolTable returns the yaegi symbol table for one interpreter: the
// allowlisted standard library, curated, plus the given application
// packages. sleepCtx returns the context of the eval in progress, so a
// wrapped time.Sleep honours cancellation.
func symbolTable(exp *Exports, pkgs []string, out *switchWriter, maxBytes uint64) (map[string]map[string]reflect.Value, error) {
	sleepCtx := out.context
	table := map[string]map[string]reflect.Value{}
	for key, syms := range stdsyms.Table() {
		importPath := key[:max(strings.LastIndexByte(key, '/'), 0)]
		if !stdlibAllow[importPath] || key == "fmt/fmt" { // fmt: see fmtSymbols
			continue
		}
		m := make(map[string]reflect.Value, len(syms))
		for name, v := range syms {
			// Package variables (time.Local, unicode.Categories,
			// strconv.ErrRange…) are the host's own state: assigning one
			// changes the application, and writing a map one while the
			// application reads it is a fatal error. Even a copy of a
			// pointer, slice or map aliases it. So none is exported.
			if v.CanSet() {
				continue
			}
			m[name] = v
		}
		for _, name := range dropped[importPath] {
			delete(m, name)
		}
		keepClassified(importPath, m)
		table[key] = m
	}
	if stdsyms.Table()["fmt/fmt"] == nil {
		return nil, fmt.Errorf("interp: the yaegi standard library table has no fmt")
	}
	trees := new(errTrees)
	fmtSyms, mapTypes := fmtSymbols(out, trees, maxBytes)
	keepClassified("fmt", fmtSyms)
	table[fmtKey] = fmtSyms
	table["."] = map[string]reflect.Value{"MapTypes": reflect.ValueOf(mapTypes)}
	wrapSort(table["sort/sort"], sleepCtx)
	wrapQuote(table["strconv/strconv"], maxBytes)
	table["time/time"]["Sleep"] = reflect.ValueOf(func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-sleepCtx().Done():
		}
	})
	wrapAmplifiers(table["strings/strings"], maxBytes)
	wrapToValidUTF8(table["strings/strings"], maxBytes)
	wrapFloats(table["strconv/strconv"])
	wrapErrors(table["errors/errors"], trees, maxBytes)
	for _, p := range pkgs {
		syms, ok := exp.pkgs[p]
		if !ok {
			return nil, fmt.Errorf("interp: package %q is not exported", p)
		}
		m := make(map[string]reflect.Value, len(syms))
		for n, sym := range syms {
			v, err := sym.value()
			if err != nil {
				return nil, fmt.Errorf("interp: export %s.%s: %w", p, n, err)
			}
			m[n] = v
		}
		table[p+"/"+lastElem(p)] = m
	}
	return table, nil
}

// keepClassified drops the functions of package importPath that have no
// safety class: an unreviewed native never reaches evaluated code.
func keepClassified(importPath string, m map[string]reflect.Value) {
	for name, v := range m {
		if v.Kind() == reflect.Func && nativeSafety[importPath+"."+name] == 0 {
			delete(m, name)
		}
	}
}

func lastElem(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// stopped is the panic value of a native loop cut short because its eval
// ended.
type stopped struct{}

func (stopped) Error() string { return "the evaluation was stopped" }

// ctxSort makes a native sort loop notice that its eval has ended: once
// yaegi stops an eval, interpreted Less and Swap return at once, and a
// sort over a huge Len would otherwise spin on a leaked goroutine.
type ctxSort struct {
	sort.Interface
	ctx context.Context
}

func (c ctxSort) Less(i, j int) bool {
	if c.ctx.Err() != nil {
		panic(stopped{})
	}
	return c.Interface.Less(i, j)
}

func (c ctxSort) Swap(i, j int) {
	if c.ctx.Err() != nil {
		panic(stopped{})
	}
	c.Interface.Swap(i, j)
}

func wrapSort(m map[string]reflect.Value, ctx func() context.Context) {
	less := func(f func(i, j int) bool) func(i, j int) bool {
		c := ctx()
		return func(i, j int) bool {
			if c.Err() != nil {
				panic(stopped{})
			}
			return f(i, j)
		}
	}
	m["Sort"] = reflect.ValueOf(func(data sort.Interface) { sort.Sort(ctxSort{data, ctx()}) })
	m["Stable"] = reflect.ValueOf(func(data sort.Interface) { sort.Stable(ctxSort{data, ctx()}) })
	m["IsSorted"] = reflect.ValueOf(func(data sort.Interface) bool { return sort.IsSorted(ctxSort{data, ctx()}) })
	m["Slice"] = reflect.ValueOf(func(x any, f func(i, j int) bool) { sort.Slice(x, less(f)) })
	m["SliceStable"] = reflect.ValueOf(func(x any, f func(i, j int) bool) { sort.SliceStable(x, less(f)) })
	m["SliceIsSorted"] = reflect.ValueOf(func(x any, f func(i, j int) bool) bool { return sort.SliceIsSorted(x, less(f)) })
}

// wrapQuote bounds strconv's quoting functions (up to 10 bytes out per
// byte in).
func wrapQuote(m map[string]reflect.Value, maxBytes uint64) {
	for _, name := range []string{"Quote", "QuoteToASCII", "QuoteToGraphic"} {
		fn := m[name].Interface().(func(string) string)
		m[name] = reflect.ValueOf(func(s string) string {
			if 10*float64(len(s)) > float64(maxBytes) {
				panic(fmt.Sprintf("strconv.%s: the result could be %d bytes; the limit is %d", name, 10*len(s), maxBytes))
			}
			return fn(s)
		})
	}
}

// wrapAmplifiers replaces the strings functions whose result can be far
// larger than their input with versions that refuse a result over
// maxBytes before allocating it: one call must not be able to ask the
// runtime for more memory than the machine has (a fatal error).
func wrapAmplifiers(m map[string]reflect.Value, maxBytes uint64) {
	check := func(fn string, n float64) {
		if n > float64(maxBytes) {
			panic(fmt.Sprintf("strings.%s: the result would be about %.0f bytes; the limit is %d", fn, n, maxBytes))
		}
	}
	m["Repeat"] = reflect.ValueOf(func(s string, count int) string {
		if count < 0 {
			panic("strings: negative Repeat count")
		}
		check("Repeat", float64(len(s))*float64(count))
		return strings.Repeat(s, count)
	})
	replaced := func(fn, s, old, new string, n int) {
		if len(new) <= len(old) {
			return
		}
		m := strings.Count(s, old)
		if n >= 0 && n < m {
			m = n
		}
		check(fn, float64(len(s))+float64(m)*float64(len(new)-len(old)))
	}
	m["Replace"] = reflect.ValueOf(func(s, old, new string, n int) string {
		replaced("Replace", s, old, new, n)
		return strings.Replace(s, old, new, n)
	})
	m["ReplaceAll"] = reflect.ValueOf(func(s, old, new string) string {
		replaced("ReplaceAll", s, old, new, -1)
		return strings.ReplaceAll(s, old, new)
	})
	// Splitting makes one 16-byte string header per piece.
	pieces := func(s, sep string, n int) float64 {
		k := strings.Count(s, sep) + 1 // sep "": runes + 1
		if n > 0 && n < k {
			k = n
		}
		return 16 * float64(k)
	}
	for _, name := range []string{"Split", "SplitAfter"} {
		fn := m[name].Interface().(func(string, string) []string)
		m[name] = reflect.ValueOf(func(s, sep string) []string {
			check(name, pieces(s, sep, -1))
			return fn(s, sep)
		})
	}
	for _, name := range []string{"SplitN", "SplitAfterN"} {
		fn := m[name].Interface().(func(string, string, int) []string)
		m[name] = reflect.ValueOf(func(s, sep string, n int) []string {
			check(name, pieces(s, sep, n))
			return fn(s, sep, n)
		})
	}
	m["Fields"] = reflect.ValueOf(func(s string) []string {
		check("Fields", 16*float64(len(s)/2+1))
		return strings.Fields(s)
	})
	m["FieldsFunc"] = reflect.ValueOf(func(s string, f func(rune) bool) []string {
		check("FieldsFunc", 16*float64(len(s)/2+1))
		return strings.FieldsFunc(s, f)
	})
	m["Join"] = reflect.ValueOf(func(elems []string, sep string) string {
		n := float64(len(sep)) * float64(max(len(elems)-1, 0))
		for _, e := range elems {
			n += float64(len(e))
		}
		check("Join", n)
		return strings.Join(elems, sep)
	})
}
