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

// Size limits enforced by the wrapped size-amplifying functions.
const maxStringResult = 16 << 20

// dropped names, per package: callbacks that run user code on a new
// goroutine (a panic there kills the host), and growth without bounds.
var dropped = map[string][]string{
	"time":    {"AfterFunc", "Tick", "NewTicker", "NewTimer", "After"},
	"strings": {"Builder"},
}

// symbolTable returns the yaegi symbol table for one interpreter: the
// allowlisted standard library, curated, plus the given application
// packages. sleepCtx returns the context of the eval in progress, so a
// wrapped time.Sleep honours cancellation.
func symbolTable(exp *Exports, pkgs []string, sleepCtx func() context.Context) (map[string]map[string]reflect.Value, error) {
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
	table["strings/strings"]["Repeat"] = reflect.ValueOf(func(s string, n int) string {
		if n < 0 {
			panic("strings: negative Repeat count")
		}
		if len(s) > 0 && n > maxStringResult/len(s) {
			panic(fmt.Sprintf("strings.Repeat: result of %d × %d bytes is over the %d-byte limit", len(s), n, maxStringResult))
		}
		return strings.Repeat(s, n)
	})
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
