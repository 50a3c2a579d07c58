package interp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func newTest(t *testing.T, opts Options) *Interpreter {
	t.Helper()
	if opts.Exports == nil {
		opts.Exports = new(Exports).Func("shop/cache", "Len", func() int { return 7 })
		opts.Packages = []string{"shop/cache"}
	}
	in, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestEval(t *testing.T) {
	// No row expects the time limit: it only bounds a hang, and stays far
	// from what a row takes on a loaded machine under the race detector.
	in := newTest(t, Options{Timeout: time.Minute})
	tests := []struct {
		src, want, out string
		err            string // substring of the error; "" means none
	}{
		{src: "1+2", want: "3"},
		{src: "fi := 0; for i := 0; ; i++ { if i > 3 { break }; fi = i }; fi", want: "3"},
		{src: "fn := 0; for ; fn < 3; fn++ {}; fn", want: "3"},
		{src: "if v := 2; v > 1 { fmt.Print(v) }; 7", want: "7", out: "2"},
		{src: "switch w := 3; w { case 3: fmt.Print(\"three\") }", out: "three"},
		{src: `"a" + "b"`, want: `"ab"`},
		{src: "x := 40", want: ""},
		{src: "x + 2", want: "42"},
		{src: "func double(n int) int { return 2 * n }", want: ""},
		{src: "double(x)", want: "80"},
		{src: `fmt.Println("out")`, out: "out\n"},
		{src: `fmt.Printf("%d-%s", 1, "a")`, out: "1-a"},
		{src: `strings.ToUpper("q")`, want: `"Q"`},
		{src: `cache.Len()`, want: "7"},
		{src: `import "shop/cache"`, want: ""},
		{src: `import "strconv"`, want: ""},
		{src: `strconv.Itoa(5)`, want: `"5"`},
		{src: "for {", err: "incomplete"},
		{src: "x := `raw", err: "incomplete"},
		{src: "1 +) 2", err: "syntax error"},
		{src: "undefinedName", err: "undefined: undefinedName"},
		{src: "package main", err: "package clauses"},
		{src: `import "os"`, err: "not available"},
		{src: `import "os/exec"`, err: "not available"},
		{src: `import "net"`, err: "not available"},
		{src: `import "reflect"`, err: "not available"},
		{src: `import "unsafe"`, err: "not available"},
		{src: `import "runtime"`, err: "not available"},
		{src: `import "syscall"`, err: "not available"},
		{src: `import "github.com/traefik/yaegi/stdlib"`, err: "not available"},
		{src: `import "./local"`, err: "relative"},
		{src: `import "/etc"`, err: "relative and absolute"},
		{src: `go func() {}()`, err: "go statements"},
		{src: `func f() { go func() {}() }`, err: "go statements"},
		{src: `func main() { panic(1) }`, err: "func main"},
		{src: `func init() {}`, err: "func init"},
		{src: `panic("boom")`, err: "panic: boom"},
		{src: `m := map[string]int(nil); m["a"] = 1`, err: "panic"},
		{src: `strings.Repeat("ab", 1<<40)`, err: "limit"},
		{src: `time.AfterFunc(time.Second, func() { panic(1) })`, err: "no symbol AfterFunc"},
		{src: `time.Tick(time.Second)`, err: "no symbol Tick"},
		{src: `var b strings.Builder`, err: "undefined"},
		{src: `os.Exit(1)`, err: "undefined"},
		{src: "for i := range 3 { _ = i }", err: "range over an integer"},
		{src: "min(1, 2)", err: "undefined: min"},
		{src: "", want: ""},
		{src: "// yaegi:tags foo\n1", want: "1"},
		{src: "//go:build ignore\n2", want: "2"},
		{src: "/* c */ 3", want: "3"},
		// Mixed submissions are split and run in order.
		{src: `import "strconv"; strconv.Quote("q")`, want: `"\"q\""`},
		{src: "func triple(n int) int { return 3 * n }; triple(5)", want: "15"},
		{src: "type pt struct{ X, Y int }; p := pt{1, 2}; p.X + p.Y", want: "3"},
		{src: "func(n int) int { return n + 1 }(1)", want: "2"},
		{src: "func(n int) (r int) { r = n * 2; return }(4)", want: "8"},
		{src: "const K = 3; var arr [K]int; len(arr)", want: "3"},
		// Guards.
		{src: "__opsrepl.Enter()", err: "reserved"},
		{src: "var __x = 1", err: "reserved"},
		{src: "func down(n int) int { return down(n+1) + 1 }; down(0)", err: "call depth limit (1000)"},
		{src: "func ok(n int) int { if n == 0 { return 0 }; return ok(n-1) + 1 }; ok(900)", want: "900"},
		{src: "make([]byte, 1<<40)", err: "would allocate"},
		{src: "make([]int64, 1<<26)", err: "would allocate"},
		{src: "make([]byte, 10, 1<<40)", err: "would allocate"},
		{src: "make(map[int]int, 1<<40)", err: "would allocate"},
		{src: "make(chan [1024]byte, 1<<20)", err: "would allocate"},
		{src: "n := int64(1) << 40; make([]byte, n)", err: "would allocate"},
		{src: "len(make([]byte, 1000))", want: "1000"},
		{src: "var big [1 << 40]byte", err: "more than"},
		{src: "var grid [1 << 20][1 << 20]byte", err: "more than"},
		{src: "type blk [1 << 20]byte; var many [1 << 10]blk", err: "more than"},
		{src: "type rec struct { a, b [1 << 24]int }", err: "more than"},
		{src: "p := new([1 << 40]byte)", err: "more than"},
		{src: `var v [len("abc")]int; len(v)`, want: "3"},
		{src: "n := 3; var w [n]int", err: "constant expression"},
		{src: "x := []int{1 << 40: 1}", err: "more than"},
		{src: "x := [...]int{1 << 40: 1}", err: "more than"},
		{src: "i := 5; x := []int{i: 1}", err: "constant expression"},
		{src: `strings.ReplaceAll(strings.Repeat("a", 1<<20), "a", strings.Repeat("b", 1<<20))`, err: "limit"},
		{src: `strings.Replace(strings.Repeat("a", 1<<20), "a", strings.Repeat("b", 1<<10), -1)`, err: "limit"},
		{src: `strings.Replace("aaa", "a", "bb", 2)`, want: `"bbbba"`},
		{src: `strings.Join([]string{"a", "b"}, ",")`, want: `"a,b"`},
		{src: `strings.NewReplacer("a", "b")`, err: "no symbol NewReplacer"},
		// Results and panics that run interpreted methods are formatted
		// inside the eval.
		{src: `type myErr struct{}; func (myErr) Error() string { return "custom" }; func mk() error { return myErr{} }; mk()`, want: "custom"},
		{src: `type loud struct{}; func (loud) Error() string { panic("inner") }; func mk2() error { return loud{} }; mk2()`, want: "%!v(PANIC=Error method: inner)"},
		{src: `panic(mk())`, err: "panic: custom"},
		{src: `panic(fmt.Errorf("wrapped %d", 7))`, err: "panic: wrapped 7"},
		{src: "min(1, 2)", err: "no min, max or clear"},
		{src: "time.Local = nil", err: "Local"},
		{src: `unicode.Categories["Lu"] = nil`, err: "Categories"},
		{src: `strings.Split("a,b", ",")`, want: "[a b]"},
		{src: `len(strings.Split(strings.Repeat("ab", 1<<24), ""))`, err: "limit"},
		// Classes of input the interpreter's compiler or a native would
		// blow up on: closed by the checker or by a wrapper.
		{src: "type T struct { a [1]T }\nvar rt T\nfmt.Sprint(rt)", err: "invalid recursive type"},
		{src: "type U [2]U", err: "invalid recursive type"},
		{src: "type MA struct{ b MB }\ntype MB struct{ a [2]MA }", err: "invalid recursive type"},
		{src: "type W[T any] struct{ v T }\ntype R struct{ w W[R] }", err: "invalid recursive type"},
		{src: "type Node struct{ next *Node; kids []Node; m map[string]Node }", want: ""},
		{src: "type LS[T any] struct{ items []T }\ntype Tree struct{ kids LS[Tree] }", want: ""},
		{src: "func g[T any](n int) int { if n == 0 { return 0 }; return g[[]T](n - 1) }", err: "type names only"},
		{src: "func h[T any](x T, n int) int { if n == 0 { return 0 }; return h([]T{x}, n-1) }", err: "explicit type arguments"},
		{src: "type L2[T any] struct{ next *L2[[]T] }", err: "type names only"},
		{src: "func (b *Box[T]) Deeper() { var x Box[map[string]T]; _ = x }\ntype Box[T any] struct{ v T }", err: "type names only"},
		{src: "func ident[T any](x T) T { return x }\nident[int](3)", want: "3"},
		{src: "func ident2[T any](x T) T { return ident[T](x) }\nident2[int](4)", want: "4"},
		{src: constChain(`"abcdefgh"`, "s", 20), err: "string of"},
		{src: "type S string\n" + constChain("S(65)", "c", 22), err: "string of"},
		{src: "const ok1 = \"ab\" + \"cd\"\nok1 + ok1", want: `"abcdabcd"`},
		{src: "var deep " + strings.Repeat("[]", 500) + "int", err: "nests more than"},
		{src: "var fdeep " + strings.Repeat("func(", 300) + strings.Repeat(")", 300), err: "nests more than"},
		{src: "type P " + strings.Repeat("*", 1000) + "int", err: "nests more than"},
		{src: "type SD " + strings.Repeat("struct{ a ", 300) + "int" + strings.Repeat("}", 300), err: "nests more than"},
		{src: `len(strconv.FormatFloat(1, 'f', 1<<40, 64))`, err: "precision"},
		{src: `len(strconv.AppendFloat(nil, 1, 'e', 1<<35, 64))`, err: "precision"},
		{src: `len(strconv.FormatComplex(1, 'f', 1<<40, 128))`, err: "precision"},
		{src: `strconv.FormatFloat(1.5, 'f', 2, 64)`, want: `"1.50"`},
		{src: `len(strings.ToValidUTF8(strings.Repeat("\xff", 1<<20), strings.Repeat("x", 1<<10)))`, err: "limit"},
		{src: `strings.ToValidUTF8("a\xffb", "?")`, want: `"a?b"`},
		{src: "var je error = errors.New(\"x\")\nfor i := 0; i < 20000; i++ { je = errors.Join(je) }", err: "tree of more than"},
		{src: "jd := errors.New(\"x\")\nfor i := 0; i < 64; i++ { jd = errors.Join(jd, jd) }", err: "tree of more than"},
		{src: "fe := errors.New(\"\")\nfor i := 0; i < 64; i++ { fe = fmt.Errorf(\"%w%w\", fe, fe) }\nerrors.Is(fe, nil)", err: "tree of more than"},
		{src: "big := errors.New(strings.Repeat(\"x\", 1<<22))\nerrors.Join(big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big)", err: "message would be"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			var out bytes.Buffer
			got, err := in.Eval(context.Background(), tt.src, &out)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Eval(%q): got %q, %v; want an error containing %q", tt.src, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Eval(%q): %v", tt.src, err)
			}
			if got != tt.want || out.String() != tt.out {
				t.Fatalf("Eval(%q): got %q, output %q; want %q, output %q", tt.src, got, out.String(), tt.want, tt.out)
			}
		})
	}
}

// errStopped in a want column accepts the timeout or the heap limit,
// whichever stops the eval first.
var errStopped = errors.New("stopped by the timeout or the heap limit")

func TestStopResets(t *testing.T) {
	tests := []struct {
		name string
		src  string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"timeout", "for {}", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, context.DeadlineExceeded},
		{"sleep honours the deadline", "time.Sleep(time.Hour)", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, context.DeadlineExceeded},
		{"blocked channel", "c := make(chan int); <-c", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, context.DeadlineExceeded},
		{"recover loop", "for { func() { defer func() { recover() }(); panic(1) }() }", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, errStopped},
		{"cancel", "for {}", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
		{"output limit", `for { fmt.Println("flood") }`, func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, ErrOutputLimit},
		{"heap growth", `var keep []string; for { keep = append(keep, strings.Repeat("x", 1<<20)) }`, func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, errStopped}, // the time limit may come first on a busy machine
		{"string doubling", `s := "x"; for { s += s }`, func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, errStopped},                                               // a long native concatenation may outlast the time limit
		{"Error method that never returns", `type spin struct{}; func (spin) Error() string { for {} }; func mk() error { return spin{} }; mk()`, func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newTest(t, Options{Timeout: time.Second, MaxOutput: 100, MaxHeapGrowth: 64 << 20})
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			var out bytes.Buffer
			_, err := in.Eval(ctx, tt.src, &out)
			if !errors.Is(err, tt.want) && !(tt.want == errStopped && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrMemoryLimit))) {
				t.Fatalf("Eval(%q): got %v; want %v", tt.src, err, tt.want)
			}
			if d := time.Since(start); d > 30*time.Second { // a stop that never comes, not a slow machine
				t.Fatalf("Eval(%q) took %v to stop", tt.src, d)
			}
			if out.Len() > 100 {
				t.Fatalf("output: %d bytes past a 100-byte cap", out.Len())
			}
			if _, err := in.Eval(context.Background(), "1+2", &out); !errors.Is(err, ErrReset) {
				t.Fatalf("Eval after a stop: got %v; want ErrReset", err)
			}
		})
	}
}

func TestExportsErrors(t *testing.T) {
	tests := []struct {
		name string
		exp  *Exports
	}{
		{"not a function", new(Exports).Func("a", "F", 42)},
		{"nil function", new(Exports).Func("a", "F", (func())(nil))},
		{"unexported name", new(Exports).Func("a", "f", func() {})},
		{"bad name", new(Exports).Func("a", "F-G", func() {})},
		{"duplicate", new(Exports).Func("a", "F", func() {}).Func("a", "F", func() {})},
		{"empty path", new(Exports).Func("", "F", func() {})},
		{"dot-dot path", new(Exports).Func("../x", "F", func() {})},
		{"shadows stdlib", new(Exports).Func("fmt", "Evil", func() {})},
		{"path not an identifier", new(Exports).Func("a/b-c", "F", func() {})},
		{"nil value", new(Exports).Value("a", "V", nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.exp.Err() == nil {
				t.Fatal("Err: got nil; want an error")
			}
			if _, err := New(Options{Exports: tt.exp}); err == nil {
				t.Fatal("New: got no error")
			}
		})
	}
}

func TestPackagesFilter(t *testing.T) {
	exp := new(Exports).
		Func("shop/cache", "Len", func() int { return 1 }).
		Func("shop/billing", "Total", func() int { return 2 })
	in := newTest(t, Options{Exports: exp, Packages: []string{"shop/cache"}})
	if _, err := in.Eval(context.Background(), "cache.Len()", &bytes.Buffer{}); err != nil {
		t.Fatalf("allowed package: %v", err)
	}
	for _, src := range []string{"billing.Total()", `import "shop/billing"`} {
		if _, err := in.Eval(context.Background(), src, &bytes.Buffer{}); err == nil {
			t.Fatalf("%s: reached a package that was not included", src)
		}
	}
	if _, err := New(Options{Exports: exp, Packages: []string{"shop/nope"}}); err == nil {
		t.Fatal("New with an unexported package: got no error")
	}
}

// TestValueExport: a value is exported as a snapshot taken when Value is
// called; each interpreter has its own copy.
func TestValueExport(t *testing.T) {
	limit := 10
	exp := new(Exports).Value("cfg", "Limit", &limit)
	limit = 30
	in := newTest(t, Options{Exports: exp, Packages: []string{"cfg"}})
	if got, err := in.Eval(context.Background(), "cfg.Limit", &bytes.Buffer{}); err != nil || got != "10" {
		t.Fatalf("cfg.Limit: got %q, %v; want the snapshot, 10", got, err)
	}
	if _, err := in.Eval(context.Background(), "cfg.Limit = 99", &bytes.Buffer{}); err != nil {
		t.Logf("assigning the copy: %v", err) // yaegi may treat it as a constant
	}
	if limit != 30 {
		t.Fatalf("the application's variable changed to %d", limit)
	}
	other := newTest(t, Options{Exports: exp, Packages: []string{"cfg"}})
	if got, err := other.Eval(context.Background(), "cfg.Limit", &bytes.Buffer{}); err != nil || got != "10" {
		t.Fatalf("cfg.Limit in another interpreter: got %q, %v; want 10", got, err)
	}
}

// TestHeapBudgetAcrossEvals: with MaxHeap, what earlier evals keep
// counts, and a make past it is an error that keeps the state.
func TestHeapBudgetAcrossEvals(t *testing.T) {
	runtime.GC() // the budget starts from this test's live heap, not others' garbage
	in := newTest(t, Options{MaxHeap: heapObjects() + 64<<20})
	var out bytes.Buffer
	if _, err := in.Eval(context.Background(), "var keep [][]byte", &out); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < 40 && err == nil; i++ {
		_, err = in.Eval(context.Background(), "keep = append(keep, make([]byte, 8<<20)); len(keep)", &out)
	}
	var ee *EvalError
	if !errors.As(err, &ee) || !strings.Contains(ee.Msg, "heap limit") {
		t.Fatalf("40 evals keeping 8 MiB each under a 64 MiB budget: got %v; want a heap limit error", err)
	}
	if got, err := in.Eval(context.Background(), "len(keep) > 0", &out); err != nil || got != "true" {
		t.Fatalf("state after the budget error: got %q, %v; want it kept", got, err)
	}
}

// TestDeferredNativeAfterStop: a native deferred by stopped code sees a
// context that stays done, so it does not outlive the eval.
func TestDeferredNativeAfterStop(t *testing.T) {
	in := newTest(t, Options{Timeout: 200 * time.Millisecond})
	before := runtime.NumGoroutine()
	_, err := in.Eval(context.Background(), "func f() { defer time.Sleep(1 << 62); for {} }; f()", &bytes.Buffer{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want the time limit", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d, before %d: the deferred sleep still runs", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func Example() {
	exp := new(Exports).Func("shop/cache", "Len", func() int { return 21 })
	in, err := New(Options{Exports: exp, Packages: []string{"shop/cache"}})
	if err != nil {
		panic(err)
	}
	v, err := in.Eval(context.Background(), `cache.Len() * 2`, os.Stdout)
	fmt.Println(v, err)
	_, err = in.Eval(context.Background(), `import "os"`, os.Stdout)
	fmt.Println(err)
	// Output:
	// 42 <nil>
	// import "os": not available in this session (type vars to list what is)
}

// constChain declares name0 = first, then each constant as the previous
// one twice: n doublings.
func constChain(first, name string, n int) string {
	src := fmt.Sprintf("const %s0 = %s", name, first)
	for i := 1; i <= n; i++ {
		src += fmt.Sprintf("\nconst %s%d = %s%d + %s%d", name, i, name, i-1, name, i-1)
	}
	return src
}

// TestGarbageIsNotGrowth: an eval that makes garbage but keeps nothing is
// not stopped for memory, even when the collector's goal, set by a large
// heap before it, lets that garbage pile up past MaxHeapGrowth.
func TestGarbageIsNotGrowth(t *testing.T) {
	in := newTest(t, Options{Timeout: 30 * time.Second, MaxHeapGrowth: 64 << 20})
	ballast := make([]byte, 256<<20)
	ballast[len(ballast)-1] = 1
	runtime.GC() // the goal is now about twice the ballast
	runtime.KeepAlive(ballast)
	ballast = nil
	var out bytes.Buffer
	// Each concatenation makes 4 KiB of garbage (600 MiB in all) that no
	// guard of make or of a native sees.
	v, err := in.Eval(context.Background(), `s := strings.Repeat("x", 4095); n := 0; for i := 0; i < 150000; i++ { t := s + "y"; n += len(t) }; n`, &out)
	if err != nil {
		t.Fatalf("an eval that keeps nothing: %v", err)
	}
	if v != fmt.Sprint(150000*4096) {
		t.Fatalf("got %q", v)
	}
}
