package interp

import (
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// Complete returns the identifiers that complete word: package names and
// the session's globals for a bare prefix ("str"), a package's members
// after a dot ("strings.To", "demo.Ca").
func (in *Interpreter) Complete(word string) []string {
	return complete(in.table, in.globals(), word)
}

// Completions is Complete for a session that has no interpreter yet: the
// packages an interpreter built with exp and pkgs would have, and their
// members, without building one.
func Completions(exp *Exports, pkgs []string, word string) []string {
	table, err := symbolTable(exp, pkgs, &switchWriter{ctx: ended}, 1)
	if err != nil {
		return nil
	}
	return complete(table, nil, word)
}

func complete(table map[string]map[string]reflect.Value, globals map[string]reflect.Value, word string) []string {
	var out []string
	if pkg, prefix, ok := strings.Cut(word, "."); ok {
		if strings.Contains(prefix, ".") {
			return nil
		}
		for key, syms := range table {
			if key == "." || lastElem(key) != pkg {
				continue
			}
			for name := range syms {
				if strings.HasPrefix(name, prefix) && !strings.HasPrefix(name, "_") {
					out = append(out, pkg+"."+name)
				}
			}
		}
	} else {
		seen := map[string]bool{}
		add := func(name string) {
			if strings.HasPrefix(name, word) && !strings.HasPrefix(name, "__") && !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
		for key := range table {
			if key != "." {
				add(lastElem(key))
			}
		}
		for name := range globals {
			add(name)
		}
	}
	sort.Strings(out)
	return out
}

func (in *Interpreter) globals() map[string]reflect.Value {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.broken {
		return nil
	}
	return in.yi.Globals()
}

// Vars writes what this interpreter can reach: the exported application
// packages with their members, the standard library packages, and the
// session's own globals.
func (in *Interpreter) Vars(w io.Writer) {
	fmt.Fprintln(w, "Application packages in this session:")
	if len(in.opts.Packages) == 0 {
		fmt.Fprintln(w, "  (none: the application exports none, or the policy grants you none)")
	}
	for _, p := range in.opts.Packages {
		fmt.Fprintf(w, "  %s (as %s)\n", p, lastElem(p))
		names := in.opts.Exports.Names(p)
		for _, n := range names {
			fmt.Fprintf(w, "    %-20s %s\n", n, in.opts.Exports.pkgs[p][n].Type)
		}
	}
	std := make([]string, 0, len(stdlibAllow))
	for p := range stdlibAllow {
		std = append(std, p)
	}
	sort.Strings(std)
	fmt.Fprintf(w, "Standard library (curated): %s\n", strings.Join(std, " "))
	g := in.globals()
	names := make([]string, 0, len(g))
	for n := range g {
		if !strings.HasPrefix(n, "__") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	fmt.Fprintln(w, "Your globals:")
	if len(names) == 0 {
		fmt.Fprintln(w, "  (none yet)")
	}
	for _, n := range names {
		t := "?"
		if v := g[n]; v.IsValid() {
			t = v.Type().String()
		}
		fmt.Fprintf(w, "  %-20s %s\n", n, t)
	}
}
