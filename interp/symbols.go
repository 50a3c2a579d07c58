package interp

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/traefik/yaegi/stdlib"
)

// stdlibAllow lists the standard library packages an interpreter gets, by
// import path. It is an allowlist: nothing else from stdlib.Symbols is
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
	"time":    {"AfterFunc", "Tick", "NewTicker", "NewTimer", "After", "LoadLocation"},
	"strings": {"Builder", "NewReplacer"},
}

// symbolTable returns the yaegi symbol table for one interpreter: the
// allowlisted standard library, curated, plus the given application
// packages. sleepCtx returns the context of the eval in progress, so a
// wrapped time.Sleep honours cancellation.
func symbolTable(exp *Exports, pkgs []string, sleepCtx func() context.Context, maxBytes uint64) (map[string]map[string]reflect.Value, error) {
	table := map[string]map[string]reflect.Value{}
	for key, syms := range stdlib.Symbols {
		if key == "." { // interface wrapper types, not a package
			table[key] = syms
			continue
		}
		importPath := key[:max(strings.LastIndexByte(key, '/'), 0)]
		if !stdlibAllow[importPath] {
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
		table[key] = m
	}
	if _, ok := table["fmt/fmt"]; !ok {
		return nil, fmt.Errorf("interp: the yaegi standard library table has no fmt")
	}
	table["time/time"]["Sleep"] = reflect.ValueOf(func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-sleepCtx().Done():
		}
	})
	wrapAmplifiers(table["strings/strings"], maxBytes)
	for _, p := range pkgs {
		syms, ok := exp.pkgs[p]
		if !ok {
			return nil, fmt.Errorf("interp: package %q is not exported", p)
		}
		m := make(map[string]reflect.Value, len(syms))
		for n, v := range syms {
			m[n] = v
		}
		table[p+"/"+lastElem(p)] = m
	}
	return table, nil
}

func lastElem(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

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
	// Splitting on "" makes one string header (16 bytes) per rune.
	for _, name := range []string{"Split", "SplitAfter"} {
		fn := m[name].Interface().(func(string, string) []string)
		m[name] = reflect.ValueOf(func(s, sep string) []string {
			if sep == "" {
				check(name, 16*float64(len(s)))
			}
			return fn(s, sep)
		})
	}
	m["Join"] = reflect.ValueOf(func(elems []string, sep string) string {
		n := float64(len(sep)) * float64(max(len(elems)-1, 0))
		for _, e := range elems {
			n += float64(len(e))
		}
		check("Join", n)
		return strings.Join(elems, sep)
	})
}
