package interp

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/opsrepl/opsrepl/interp/internal/stdsyms"
)

// TestEveryNativeClassified: every function of the allowlisted packages
// in yaegi's table, and every method of their types, has a safety class;
// and every class names something that exists. A new yaegi version that
// adds a function fails here until it is reviewed.
func TestEveryNativeClassified(t *testing.T) {
	seen := map[string]bool{}
	var missing []string
	for key, syms := range stdsyms.Table() {
		i := strings.LastIndexByte(key, '/')
		if i < 0 || !stdlibAllow[key[:i]] {
			continue
		}
		pkg := key[:i]
		for name, v := range syms {
			if v.CanSet() || droppedName(pkg+"."+name) || strings.HasPrefix(name, "_") {
				continue // package variables and dropped names never reach the table
			}
			switch {
			case v.Kind() == reflect.Func:
				seen[pkg+"."+name] = true
			case v.Kind() == reflect.Pointer && v.IsNil(): // a type
				pt := v.Type()
				for j := 0; j < pt.NumMethod(); j++ {
					seen[pkg+"."+name+"."+pt.Method(j).Name] = true
				}
			}
		}
	}
	for name := range seen {
		if nativeSafety[name] == 0 && !droppedName(name) {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("natives without a safety class (add them to nativeSafety, or drop them): %s", strings.Join(missing, " "))
	}
	var stale []string
	for name := range nativeSafety {
		if !seen[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("classified names that the table does not have: %s", strings.Join(stale, " "))
	}
}

// droppedName reports whether a name is dropped from the table (see
// dropped and fmtDropped).
func droppedName(name string) bool {
	i := strings.IndexByte(name[strings.LastIndexByte(name, '/')+1:], '.') + strings.LastIndexByte(name, '/') + 1
	pkg, fn := name[:i], name[i+1:]
	for _, d := range dropped[pkg] {
		if d == fn {
			return true
		}
	}
	if pkg == "fmt" {
		for _, d := range fmtDropped {
			if d == fn {
				return true
			}
		}
	}
	return false
}

// TestUnclassifiedNativeLeftOut: a function without a class does not
// reach the interpreter.
func TestUnclassifiedNativeLeftOut(t *testing.T) {
	m := map[string]reflect.Value{"Known": reflect.ValueOf(strings.ToUpper), "Unknown": reflect.ValueOf(strings.ToLower)}
	nativeSafety["strings.Known"] = pure
	defer delete(nativeSafety, "strings.Known")
	keepClassified("strings", m)
	if _, ok := m["Unknown"]; ok {
		t.Fatal("an unclassified function stayed in the table")
	}
	if _, ok := m["Known"]; !ok {
		t.Fatal("a classified function was dropped")
	}
}

// TestSymbolTableIsTheAllowlist: the generated table holds exactly the
// allowlisted packages (regenerate it with go generate ./interp/... when
// the allowlist changes).
func TestSymbolTableIsTheAllowlist(t *testing.T) {
	got := map[string]bool{}
	for key := range stdsyms.Table() {
		got[key[:strings.LastIndexByte(key, '/')]] = true
	}
	for p := range stdlibAllow {
		if !got[p] {
			t.Errorf("package %s is allowed but not in the table", p)
		}
	}
	for p := range got {
		if !stdlibAllow[p] {
			t.Errorf("package %s is in the table but not allowed", p)
		}
	}
}
