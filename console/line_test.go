package console

import (
	"strings"
	"testing"
)

var splitTests = []struct {
	in   string
	want []string
	err  string
}{
	{in: "", want: nil},
	{in: "   ", want: nil},
	{in: "--gc", want: []string{"--gc"}},
	{in: "a  b\tc", want: []string{"a", "b", "c"}},
	{in: `--filter "net/http.*Serve"`, want: []string{"--filter", "net/http.*Serve"}},
	{in: `'single $x "q"'`, want: []string{`single $x "q"`}},
	{in: `a\ b`, want: []string{"a b"}},
	{in: `""`, want: []string{""}},
	{in: `x"y z"w`, want: []string{"xy zw"}},
	{in: `"a\"b"`, want: []string{`a"b`}},
	{in: "ünïcödé 日本", want: []string{"ünïcödé", "日本"}},
	{in: `"unterminated`, err: "unterminated quote"},
	{in: `'unterminated`, err: "unterminated quote"},
	{in: `trailing\`, err: "trailing backslash"},
	{in: "$(rm -rf /)", want: []string{"$(rm", "-rf", "/)"}},
	{in: "a;b|c&&d", want: []string{"a;b|c&&d"}},
}

func TestSplitArgs(t *testing.T) {
	for _, tt := range splitTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := splitArgs(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("splitArgs(%q): got %q, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") || len(got) != len(tt.want) {
				t.Fatalf("splitArgs(%q): got %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFirstWord(t *testing.T) {
	tests := []struct{ in, word, rest string }{
		{"heapdump --gc", "heapdump", "--gc"},
		{"  memstats  ", "memstats", ""},
		{"eval\tgc := 1", "eval", "gc := 1"},
		{"1+2", "1+2", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		w, r := firstWord(tt.in)
		if w != tt.word || r != tt.rest {
			t.Errorf("firstWord(%q): got %q, %q; want %q, %q", tt.in, w, r, tt.word, tt.rest)
		}
	}
}

// FuzzSplitArgs: never panics, and a line of plain words splits into them.
func FuzzSplitArgs(f *testing.F) {
	for _, tt := range splitTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := splitArgs(s)
		if err != nil {
			return
		}
		if !strings.ContainsAny(s, `'"\`) {
			if got, want := strings.Join(args, " "), strings.Join(strings.Fields(s), " "); got != want {
				t.Fatalf("splitArgs(%q) = %q; want the fields %q", s, got, want)
			}
		}
	})
}
