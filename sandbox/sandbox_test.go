package sandbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/interp"
)

func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

type item struct {
	Name  string
	Count int
	note  string
}

func testExports() *interp.Exports {
	return new(interp.Exports).
		Func("shop/cache", "Len", func() int { return 42 }).
		Func("shop/cache", "Keys", func(n int) []string { return []string{"a", "b", "c"}[:n] }).
		Func("shop/cache", "Get", func(k string) (item, error) {
			if k == "" {
				return item{}, errors.New("no key")
			}
			return item{Name: k, Count: len(k), note: "secret"}, nil
		}).
		Func("shop/cache", "Sum", func(xs ...int) int {
			s := 0
			for _, x := range xs {
				s += x
			}
			return s
		}).
		Func("shop/cache", "Panic", func() int { panic("boom") }).
		Func("shop/cache", "Slow", func() int { time.Sleep(time.Hour); return 1 }).
		Func("shop/billing", "Total", func() int { return 7 }).
		Value("shop/cache", "Limit", 10)
}

func newPool(t *testing.T, mod func(*Options)) *Pool {
	t.Helper()
	opts := Options{Exports: testExports(), Interp: interp.Options{Timeout: 3 * time.Second}, CallTimeout: 300 * time.Millisecond}
	if mod != nil {
		mod(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func start(t *testing.T, p *Pool, spec Spec) *Interpreter {
	t.Helper()
	in, err := p.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func TestEvalAndCalls(t *testing.T) {
	p := newPool(t, nil)
	in := start(t, p, Spec{Packages: []string{"shop/cache"}})
	tests := []struct {
		src, want, err string
	}{
		{"1+2", "3", ""},
		{"cache.Len()", "42", ""},
		{"cache.Keys(2)", "[a b]", ""},
		{`it, err := cache.Get("abc"); fmt.Sprint(it.Name, it.Count, err)`, `"abc3 <nil>"`, ""},
		{`_, err := cache.Get(""); err.Error()`, `"no key"`, ""},
		{"cache.Sum(1, 2, 3)", "6", ""},
		{"cache.Limit", "10", ""},
		{"cache.Panic()", "", "panicked: boom"},
		{"cache.Slow()", "", "did not return within"},
		{"billing.Total()", "", "undefined"},
		{`fmt.Println("hi"); 5`, "5", ""},
		{"x := 4", "", ""},
		{"x * 2", "8", ""},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		got, err := in.Eval(context.Background(), tt.src, &out)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: got %q, %v; want error %q", tt.src, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.src, got, err, tt.want)
		}
	}
}

func TestChildDies(t *testing.T) {
	p := newPool(t, func(o *Options) { o.MaxMemory = 256 << 20 })
	tests := []struct {
		name, src string
		cause     Cause
	}{
		{"native allocation", `import "strconv"; len(strconv.FormatFloat(1, 'f', 1<<40, 64))`, CauseMemory},
		{"infinite loop", `for {}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := start(t, p, Spec{})
			_, err := in.Eval(context.Background(), tt.src, &bytes.Buffer{})
			t.Logf("%s: %v", tt.src, err)
			var ee *ExitError
			if tt.cause != "" && (!errors.As(err, &ee) || ee.Cause != tt.cause) {
				t.Fatalf("got %v; want cause %s", err, tt.cause)
			}
		})
	}
}
