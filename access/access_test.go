package access_test

import (
	"strings"
	"testing"

	"github.com/opsrepl/opsrepl/access"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		object, action string
		err            string // "" when the pair is valid
	}{
		{"cmd:gc", "run", ""},
		{"cmd:*", "run", ""},
		{"cmd:memstats", "require-reason", ""},
		{"eval", "run", ""},
		{"eval", "require-reason", ""},
		{"pkg:shop/cache", "import", ""},
		{"pkg:*", "import", ""},
		{"*", "run", ""},
		{"*", "import", ""},
		{"pkg:shop/*", "import", ""},
		{"cmd:*-full", "run", "may only end in *"},
		{"cmd:g?", "run", "may only end in *"},
		{"cmd:{gc,trace}", "run", "may only end in *"},
		{"cmd:[gt]c", "run", "may only end in *"},
		{"*:gc", "run", "may only end in *"},
		{"evl", "run", "none the console asks about"},
		{"Eval", "run", "none the console asks about"},
		{"cmd", "run", "none the console asks about"},
		{"cmd:", "run", "names nothing"},
		{"pkg:", "import", "names nothing"},
		{"", "run", "names nothing"},
		{"cmd:gc", "rnu", "the action \"rnu\""},
		{"cmd:gc", "RUN", "the action \"RUN\""},
		{"cmd:gc", "*", "the action \"*\""},
		{"cmd:gc", "import", "never import"},
		{"eval", "import", "never import"},
		{"pkg:shop/cache", "run", "never run"},
		{"pkg:shop/cache", "require-reason", "never require-reason"},
	}
	for _, tt := range tests {
		err := access.Check(tt.object, tt.action)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Check(%q, %q) = %v; want %q", tt.object, tt.action, err, tt.err)
		}
	}
}

func TestActionOf(t *testing.T) {
	for obj, want := range map[string]string{"cmd:gc": "run", "eval": "run", "pkg:x/y": "import"} {
		if got := access.ActionOf(obj); got != want {
			t.Errorf("ActionOf(%q) = %q; want %q", obj, got, want)
		}
	}
}
