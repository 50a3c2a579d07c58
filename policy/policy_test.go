package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	opsrepl "github.com/opsrepl/opsrepl"
)

const demoBindings = "\ng, viewer, role:viewer\ng, operator, role:operator\ng, admin, role:admin\n"

func shipped(t *testing.T) *Enforcer {
	t.Helper()
	e, err := New(Options{PolicyText: opsrepl.DefaultPolicy + demoBindings})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestShippedPolicy(t *testing.T) {
	e := shipped(t)
	tests := []struct {
		sub, obj, act string
		want          bool
	}{
		{"viewer", "cmd:help", "run", true},
		{"viewer", "cmd:whoami", "run", true},
		{"viewer", "cmd:memstats", "run", true},
		{"viewer", "cmd:goroutines", "run", true},
		{"viewer", "cmd:buildinfo", "run", true},
		{"viewer", "cmd:gc", "run", false},
		{"viewer", "cmd:gcwatch", "run", true},
		{"viewer", "cmd:loglevel", "run", false},
		{"operator", "cmd:loglevel", "run", true},
		{"operator", "cmd:setgc", "run", false},
		{"operator", "cmd:profile", "run", true},
		{"operator", "cmd:trace", "run", true},
		{"viewer", "cmd:profile", "run", false},
		{"operator", "cmd:setmemlimit", "run", false},
		{"admin", "cmd:setgc", "run", true},
		{"viewer", "cmd:heapdump", "run", false},
		{"viewer", "eval", "run", false},
		{"viewer", "pkg:demo", "import", false},
		{"operator", "cmd:memstats", "run", true},
		{"operator", "cmd:gc", "run", true},
		{"operator", "cmd:heapdump", "run", true},
		{"operator", "cmd:heapdump-full", "run", false},
		{"operator", "cmd:reset", "run", false},
		{"operator", "eval", "run", false},
		{"admin", "cmd:heapdump", "run", true},
		{"admin", "cmd:heapdump-full", "run", true},
		{"admin", "eval", "run", true},
		{"admin", "pkg:demo", "import", true},
		{"admin", "eval", "import", false},      // wrong action
		{"admin", "cmd:help", "import", false},  // wrong action
		{"nobody", "cmd:help", "run", false},    // unknown subject: deny by default
		{"", "cmd:help", "run", false},          // empty subject
		{"role:viewer", "cmd:gc", "run", false}, // the role itself has no more than its rules
		{"viewer", "cmd:help2", "run", false},   // no prefix matching
		{"viewer", "cmd:", "run", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tt.sub, tt.obj, tt.act), func(t *testing.T) {
			got, err := e.Authorize(tt.sub, tt.obj, tt.act)
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Authorize(%q, %q, %q): got %v; want %v", tt.sub, tt.obj, tt.act, got, tt.want)
			}
		})
	}
}

func TestDenyOverrides(t *testing.T) {
	e, err := New(Options{PolicyText: opsrepl.DefaultPolicy + demoBindings + "p, admin, eval, run, deny\n"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.Authorize("admin", "eval", "run"); ok {
		t.Fatal("a deny for admin did not override the role's allow")
	}
	if ok, _ := e.Authorize("admin", "cmd:gc", "run"); !ok {
		t.Fatal("a deny on eval also denied cmd:gc")
	}
}

func TestRoles(t *testing.T) {
	got := strings.Join(shipped(t).Roles("admin"), ",")
	if want := "role:admin,role:operator,role:viewer"; got != want {
		t.Fatalf("Roles(admin): got %q; want %q", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
		rules             int
	}{
		{name: "shipped", in: opsrepl.DefaultPolicy, rules: strings.Count(opsrepl.DefaultPolicy, "\np, ") + strings.Count(opsrepl.DefaultPolicy, "\ng, ")},
		{name: "empty", in: "", wantErr: "no rule"},
		{name: "only comments", in: "# nothing\n\n", wantErr: "no rule"},
		{name: "p without effect", in: "p, alice, cmd:gc, run\n", wantErr: "line 1"},
		{name: "bad effect", in: "p, alice, cmd:gc, run, maybe\n", wantErr: "allow or deny"},
		{name: "g with three fields", in: "g, alice, role:admin, extra\n", wantErr: "line 1"},
		{name: "unknown type", in: "x, alice, role:admin\n", wantErr: "p or g"},
		{name: "empty field", in: "p, , cmd:gc, run, allow\n", wantErr: "empty"},
		{name: "self role", in: "g, alice, alice\n", wantErr: "itself"},
		{name: "error on later line", in: "p, a, cmd:gc, run, allow\np, b\n", wantErr: "line 2"},
		{name: "unterminated quote", in: "p, \"a, cmd:gc, run, allow\n", wantErr: "line 1"},
		{name: "misspelt action", in: "p, role:admin, cmd:gc, rnu, allow\n", wantErr: `line 1: the action "rnu"`},
		{name: "misspelt object", in: "p, role:admin, evl, run, allow\n", wantErr: `line 1: the object "evl"`},
		{name: "package with run", in: "p, role:admin, pkg:shop/cache, run, allow\n", wantErr: "never run"},
		{name: "command with import", in: "p, role:admin, cmd:gc, import, allow\n", wantErr: "never import"},
		{name: "wildcard action", in: "p, role:admin, cmd:gc, *, allow\n", wantErr: `the action "*"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse: got %v; want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(rules) != tt.rules {
				t.Fatalf("Parse: got %d rules; want %d", len(rules), tt.rules)
			}
		})
	}
	if _, err := parse(""); !errors.Is(err, errEmpty) {
		t.Fatalf("parse(\"\"): got %v; want errEmpty", err)
	}
}

func TestNewFromFiles(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.csv")
	os.WriteFile(pol, []byte("p, alice, cmd:gc, run, allow\n"), 0o600)
	e, err := New(Options{PolicyPath: pol})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.Authorize("alice", "cmd:gc", "run"); !ok {
		t.Fatal("policy from file not applied")
	}
	if got := strings.Join(e.Objects(), ","); got != "cmd:gc" {
		t.Fatalf("Objects: got %q; want cmd:gc", got)
	}
	os.WriteFile(pol, nil, 0o600)
	if _, err := New(Options{PolicyPath: pol}); err == nil || !strings.Contains(err.Error(), pol) {
		t.Fatalf("New with an empty policy file: got %v; want an error naming the file", err)
	}
	if _, err := New(Options{PolicyPath: filepath.Join(dir, "missing.csv")}); err == nil {
		t.Fatal("New with a missing policy file: got no error")
	}
	badModel := filepath.Join(dir, "model.conf")
	os.WriteFile(badModel, []byte("[request_definition]\nr = sub\n"), 0o600)
	if _, err := New(Options{ModelPath: badModel}); err == nil {
		t.Fatal("New with a broken model: got no error")
	}
}

func ExampleEnforcer_Authorize() {
	enf, err := New(Options{PolicyText: opsrepl.DefaultPolicy + "g, alice, role:operator\n"})
	if err != nil {
		panic(err)
	}
	for _, obj := range []string{"cmd:heapdump", "eval"} {
		ok, _ := enf.Authorize("alice", obj, "run")
		fmt.Println(obj, ok)
	}
	// Output:
	// cmd:heapdump true
	// eval false
}
