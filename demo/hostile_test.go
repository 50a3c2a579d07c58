package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/sandbox"
)

// hostile is one snippet an admin might type to break out or bring the
// service down. MARK, ADDR and SECRET in src are replaced by a file path
// that must not appear, an address that must not be dialled, and the
// name of an environment variable whose value must not leak.
type hostile struct {
	name string
	src  string
	// code is the final event's code ("" means the request succeeds) and
	// msg a substring of its message or value. Where two guards race to
	// stop the same snippet (the timeout and the heap watchdog), both
	// list alternatives separated by "|", paired in order.
	code wire.Code
	msg  string
}

var hostileCases = []hostile{
	// Command execution, files, environment, network.
	{"exec a command", `import "os/exec"; exec.Command("touch", "MARK").Run()`, wire.CodeEval, "not available"},
	{"write a file", `import "os"; os.WriteFile("MARK", []byte("x"), 0o644)`, wire.CodeEval, "not available"},
	{"read /proc/self/environ", `import "os"; b, _ := os.ReadFile("/proc/self/environ"); string(b)`, wire.CodeEval, "not available"},
	{"ioutil read", `import "io/ioutil"; ioutil.ReadFile("/etc/passwd")`, wire.CodeEval, "not available"},
	{"os.Getenv without import", `os.Getenv("SECRET")`, wire.CodeEval, "undefined: os"},
	{"syscall env", `import "syscall"; syscall.Getenv("SECRET")`, wire.CodeEval, "not available"},
	{"net dial", `import "net"; net.Dial("tcp", "ADDR")`, wire.CodeEval, "not available"},
	{"http get", `import "net/http"; http.Get("http://ADDR/")`, wire.CodeEval, "not available"},
	// Reaching past the allowlist.
	{"unsafe", `import "unsafe"; unsafe.Pointer(nil)`, wire.CodeEval, "not available"},
	{"reflect", `import "reflect"; reflect.ValueOf(1)`, wire.CodeEval, "not available"},
	{"stdlib table reaching itself", `import "github.com/traefik/yaegi/stdlib"; stdlib.Symbols`, wire.CodeEval, "not available"},
	{"stdlib table by key name", `import "github.com/traefik/yaegi/stdlib/stdlib"`, wire.CodeEval, "not available"},
	{"interpreter itself", `import "github.com/traefik/yaegi/interp"`, wire.CodeEval, "not available"},
	{"guard package", `__opsrepl.Leave()`, wire.CodeEval, "reserved"},
	{"relative import from disk", `import "./evil"`, wire.CodeEval, "relative"},
	{"absolute import from disk", `import "/etc"`, wire.CodeEval, "relative and absolute"},
	{"module import from GOPATH", `import "github.com/evil/pkg"`, wire.CodeEval, "not available"},
	// Ending the process.
	{"os.Exit", `import "os"; os.Exit(3)`, wire.CodeEval, "not available"},
	{"runtime.Goexit", `import "runtime"; runtime.Goexit()`, wire.CodeEval, "not available"},
	{"log.Fatal", `import "log"; log.Fatal("bye")`, wire.CodeEval, "not available"},
	{"plain panic", `panic("boom")`, wire.CodeEval, "panic: boom"},
	{"func main that panics", `func main() { panic("x") }`, wire.CodeEval, "func main"},
	{"division by zero", `z := 0; 1 / z`, wire.CodeEval, "panic"},
	// Goroutines.
	{"goroutine panic", `go func() { panic("x") }()`, wire.CodeEval, "go statements"},
	{"goroutine panic without go", `time.AfterFunc(0, func() { panic("x") })`, wire.CodeEval, "AfterFunc"},
	{"ticker goroutine", `time.NewTicker(time.Millisecond)`, wire.CodeEval, "NewTicker"},
	{"goroutine bomb", `for { go func() { select {} }() }`, wire.CodeEval, "go statements"},
	// Memory.
	{"huge make", `make([]byte, 1<<40)`, wire.CodeEval, "would allocate"},
	{"huge make from a variable", `n := 1 << 34; b := make([]int64, n); len(b)`, wire.CodeEval, "would allocate"},
	{"huge map hint", `make(map[string]int, 1<<40)`, wire.CodeEval, "would allocate"},
	{"huge array type", `var a [1 << 40]byte; len(a)`, wire.CodeEval, "more than"},
	{"huge nested array", `type row [1 << 20]int64; var grid [1 << 20]row`, wire.CodeEval, "more than"},
	{"huge literal index", `x := []byte{1 << 40: 1}; len(x)`, wire.CodeEval, "more than"},
	{"Repeat", `strings.Repeat("x", 1<<40)`, wire.CodeEval, "limit"},
	{"ReplaceAll amplification", `strings.ReplaceAll(strings.Repeat("a", 1<<20), "a", strings.Repeat("b", 1<<20))`, wire.CodeEval, "limit"},
	{"Builder.Grow", `var sb strings.Builder; sb.Grow(1 << 40)`, wire.CodeEval, "Builder"},
	// A long native concatenation may outlast the time limit, or, in a
	// child under the race detector, pass the child's memory cap first.
	{"string doubling", `s := "x"; for { s += s }`, "limit|timeout|limit", "heap|time limit|memory cap"},
	{"append loop", `var keep [][]byte; for { keep = append(keep, make([]byte, 1<<20)) }`, "eval|limit", "heap limit|heap"},
	{"fmt width", `len(fmt.Sprintf("%*d", 1<<30, 1))`, "", ""},
	// Time.
	{"infinite loop", `for {}`, wire.CodeTimeout, "time limit"},
	{"blocking native call", `time.Sleep(time.Hour)`, wire.CodeTimeout, "time limit"},
	{"blocked receive", `c := make(chan int); <-c`, wire.CodeTimeout, "time limit"},
	{"empty select", `select {}`, wire.CodeTimeout, "time limit"},
	{"recover loop", `for { func() { defer func() { recover() }(); panic("again") }() }`, "timeout|limit", "time limit|heap"},
	// Stack.
	{"deep recursion", `func down(n int) int { return down(n+1) + 1 }; down(0)`, wire.CodeEval, "call depth"},
	{"recursion through a native callback", `func srt(n int) { xs := []int{2, 1}; sort.Slice(xs, func(i, j int) bool { srt(n + 1); return xs[i] < xs[j] }) }; srt(0)`, "eval|timeout", "call depth|time limit"}, // on a loaded machine the time limit may come first
	{"recover swallowing the depth limit", `func deep(n int) (r int) { defer func() { recover() }(); return deep(n+1) }; deep(0)`, "eval|timeout", "call depth|time limit"},
	{"deeply nested expression", strings.Repeat("(", 20000) + "1" + strings.Repeat(")", 20000), wire.CodeEval, "nests more than"},
	{"long operator chain", "0" + strings.Repeat("+1", 50000), wire.CodeEval, "nests more than"},
	{"deeply nested blocks", strings.Repeat("{", 5000) + strings.Repeat("}", 5000), wire.CodeEval, "depth"},
	// Output.
	{"output flood", `for { fmt.Println("flood flood flood") }`, wire.CodeLimit, "output"},
	{"println to the real stderr", `println("REALSTDERR")`, "", ""},
	{"print to the real stdout", `fmt.Fprintln(os.Stdout, "REALSTDOUT")`, wire.CodeEval, "undefined: os"},
	// Runtime tuning and signals.
	{"GC percent", `import "runtime/debug"; debug.SetGCPercent(1)`, wire.CodeEval, "not available"},
	{"GOMAXPROCS", `import "runtime"; runtime.GOMAXPROCS(1)`, wire.CodeEval, "not available"},
	{"max threads", `import "runtime/debug"; debug.SetMaxThreads(1)`, wire.CodeEval, "not available"},
	{"signal handling", `import "os/signal"; signal.Ignore()`, wire.CodeEval, "not available"},
	// Formatting that runs interpreted methods.
	{"Error method that never returns", `type spin struct{}; func (spin) Error() string { for {} }; func mk() error { return spin{} }; mk()`, wire.CodeTimeout, "time limit"},
	{"panic value whose Error never returns", `type spin2 struct{}; func (spin2) Error() string { for {} }; func mk2() error { return spin2{} }; panic(mk2())`, wire.CodeTimeout, "time limit"},
	// The host's own package state.
	{"reassign time.Local", `time.Local = nil`, wire.CodeEval, "Local"},
	{"mutate a unicode table", `unicode.Upper.R16 = nil`, wire.CodeEval, "Upper"},
	{"write a std map the host reads", `unicode.Categories["Lu"] = nil`, wire.CodeEval, "Categories"},
	{"reassign a sentinel error", `strconv.ErrRange = nil`, wire.CodeEval, "ErrRange"},
	{"read time zone files", `time.LoadLocation("../../../../etc/passwd")`, wire.CodeEval, "LoadLocation"},
	{"split amplification", `len(strings.Split(strings.Repeat("ab", 1<<24), ""))`, wire.CodeEval, "limit"},
	// fmt's pooled state and native recursion.
	{"keep fmt.State past its call", "type W struct{}\nvar saved fmt.State\nfunc (W) Format(f fmt.State, c rune) { saved = f }\n_ = fmt.Sprint(W{})\nsaved.Write([]byte(\"package main; func main() { go func() { panic(1) }() }; func h() { /*\"))", wire.CodeEval, "State"},
	{"a Format method with State spelled out", "type st interface { Write(b []byte) (n int, err error); Width() (wid int, ok bool); Precision() (prec int, ok bool); Flag(c int) bool }\ntype W2 struct{}\nvar kept st\nfunc (W2) Format(f st, c rune) { kept = f }\n_ = fmt.Sprint(W2{})\nkept == nil", "", "true"},
	{"keep fmt's write buffer", "type W3 struct{}\nvar buf []byte\nfunc (W3) Write(b []byte) (int, error) { buf = b; return len(b), nil }\nfmt.Fprint(W3{}, \"x\")\nbuf = buf[:cap(buf)]\nfor i := range buf { buf[i] = 'Z' }", "|eval", "|"},
	{"print a slice that contains itself", `a := []any{0}; a[0] = a; len(fmt.Sprint(a))`, wire.CodeEval, "contains itself"},
	{"print a map that contains itself", `m := map[string]any{}; m["m"] = m; fmt.Println(m)`, wire.CodeEval, "contains itself"},
	{"result that contains itself", `b := []any{0}; b[0] = b; b`, wire.CodeEval, "contains itself"},
	{"doubling structure printed", `var d any = "xxxxxxxxxxxxxxxx"; for i := 0; i < 40; i++ { d = []any{d, d} }; len(fmt.Sprint(d))`, wire.CodeEval, "limit"},
	{"many big strings printed", `s := strings.Repeat("x", 32<<20); len(fmt.Sprint(s, s, s, s, s, s, s, s, s, s))`, wire.CodeEval, "limit"},
	{"format widths", `len(fmt.Sprintf(strings.Repeat("%1000000d", 1000), make([]any, 1000)...))`, wire.CodeEval, "limit"},
	{"huge result value", `strings.Repeat("\x00", 4<<20)`, "", "bytes in all"},
	// Scope and generics against the size checks.
	{"constant shadowed in a function", "const N = 1 << 40\nfunc shadow() { const N = 1; _ = N }\nvar big [N]byte", wire.CodeEval, "too large"},
	{"type shadowed in a function", "type A [1 << 20]int64\nfunc() { type A struct{} }()\nvar g [1 << 20]A", wire.CodeEval, "too large"},
	{"variable shadowing a constant", "const M = 4\nfunc() { M := 1 << 40; var x [M]byte; _ = x }()", wire.CodeEval, "constant expression"},
	{"generic array type", "type Big[T any] [1 << 20]T\nvar x Big[[1 << 20]int64]", wire.CodeEval, "type parameter"},
	{"generic instance of a big type", "type Wrap[T any] struct{ v T }\nvar w [1 << 20]Wrap[[1 << 20]int64]", wire.CodeEval, "too large"},
	{"huge constant", `const c = 1 << (1 << 40); c > 0`, wire.CodeEval, "bits"},
	{"constant squaring", "const c1 = 1 << 900\nconst c2 = c1 * c1", wire.CodeEval, "bits"},
	{"iota shift", "const (\n\tk0 = 1 << (iota * 5000)\n\tk1\n)", wire.CodeEval, "bits"},
	{"map literal of big arrays", "m := map[int][1 << 23]int64{" + strings.Repeat("{}, ", 0) + "1: {}, 2: {}, 3: {}, 4: {}, 5: {}, 6: {}, 7: {}, 8: {}}\nlen(m)", wire.CodeEval, "too large"},
	{"many big variables in one frame", "func f() { var a, b, c, d [1 << 23]int64; _, _, _, _ = a, b, c, d }\nf()", wire.CodeEval, "too large"},
	{"preloaded generic slices", `var gb []byte; gb = slices.Grow[[]byte, byte](gb, 1<<40); cap(gb)`, wire.CodeEval, "slices"},
	// Host state through pointers.
	{"overwrite time.Local through a pointer", `l := time.Now().Location(); *l = *time.FixedZone("HACKED", -11*3600)`, wire.CodeEval, "through a pointer"},
	{"overwrite UTC through a pointer", `*time.Time{}.Location() = *time.FixedZone("PWNED", 7*3600)`, wire.CodeEval, "through a pointer"},
	{"overwrite a cached zone", `*time.FixedZone("", 3600) = *time.FixedZone("EVIL", 5*3600)`, wire.CodeEval, "through a pointer"},
	// Native loops that outlive their eval.
	{"sort over a huge Len", "type S struct{ d string }\nfunc (S) Len() int { return 1 << 62 }\nfunc (S) Less(i, j int) bool { return false }\nfunc (S) Swap(i, j int) {}\ns := S{strings.Repeat(\"x\", 1<<20)}\nsort.Sort(s)", "timeout|eval", "time limit|stopped"},
	{"split into many pieces", `s := strings.Repeat("a", 40<<20); len(strings.Split(s, "a"))`, wire.CodeEval, "limit"},
	{"fields of a big string", `s := strings.Repeat("a ", 64<<20); len(strings.Fields(s))`, "eval|limit", "limit|heap"},
	// Exported state: the demo exports functions that copy under a lock.
	{"racing writes to exported state", `m := demo.Requests(); for i := 0; i < 100000; i++ { m["x"] = int64(i) }; len(demo.Requests()) >= 0`, "", "true"},
	{"printing exported values", `fmt.Sprintf("%+v", demo.Requests()) != ""`, "", "true"},
	{"calling exported functions with hostile arguments", `len(demo.CacheKeys(-1)) >= 0`, "", "true"},
	{"calling an export in a tight loop", `for { demo.CacheLen() }`, wire.CodeTimeout, "time limit"},
	// Classes that once took the service down from inside the interpreter,
	// closed by the checker or by wrappers (so also in process).
	{"native allocation sized by an argument", `len(strconv.FormatFloat(1, 'f', 1<<40, 64))`, wire.CodeEval, "precision"},
	{"float append sized by an argument", `len(strconv.AppendFloat(nil, 1, 'g', 1<<36, 64))`, wire.CodeEval, "precision"},
	{"replacement amplifier", `len(strings.ToValidUTF8(strings.Repeat("\xff", 1<<20), strings.Repeat("x", 1<<12)))`, wire.CodeEval, "limit"},
	{"deep error chain walked natively", `var e error = errors.New("x"); for i := 0; i < 6000000; i++ { e = errors.Join(e) }; len(e.Error())`, wire.CodeEval, "tree"},
	{"shared error tree", `e := errors.New(""); for i := 0; i < 100; i++ { e = fmt.Errorf("%w%w", e, e) }; errors.Is(e, nil)`, wire.CodeEval, "tree"},
	{"invalid recursive type printed", "type T struct { a [1]T }\nvar x T\nfmt.Sprint(x)", wire.CodeEval, "recursive"},
	{"mutually recursive types", "type A struct{ b B }\ntype B struct{ a [3]A }\nvar y A\nfmt.Sprint(y)", wire.CodeEval, "recursive"},
	{"generic self-instantiation", "func g[T any](n int) int { if n == 0 { return 0 }; return g[[]T](n - 1) }\ng[int](40)", wire.CodeEval, "type names only"},
	{"generic instantiation by inference", "func h[T any](x T, n int) int { if n == 0 { return 0 }; return h([]T{x}, n-1) }\nh(1, 40)", wire.CodeEval, "explicit type arguments"},
	{"string constant doubling", constChain(`"0123456789abcdef"`, 32), wire.CodeEval, "string of"},
	{"types nested deep", "var x " + strings.Repeat("[]", 20000) + "int", wire.CodeEval, "nest"},
	{"deferred native after the stop", "func f() { defer time.Sleep(1 << 62); for {} }\nf()", wire.CodeTimeout, "time limit"},
}

// constChain declares c0 = first, then each constant as the previous one
// twice: n doublings.
func constChain(first string, n int) string {
	src := "const c0 = " + first
	for i := 1; i <= n; i++ {
		src += fmt.Sprintf("\nconst c%d = c%d + c%d", i, i-1, i-1)
	}
	return src
}

// runSnippet runs src in session c: the parts of src between NUL bytes
// are sent one after another, up to the first that does not succeed. It
// returns that part's final event and all output.
func runSnippet(t *testing.T, c *client.Conn, src string) (wire.Event, string) {
	t.Helper()
	var final wire.Event
	var all strings.Builder
	for _, part := range strings.Split(src, "\x00") {
		ev, out := childRun(t, c, part)
		final = ev
		all.WriteString(out)
		if ev.Type != wire.EventResult {
			break
		}
	}
	return final, all.String()
}

const childEnv = "OPSREPL_HOSTILE_CASE"

// TestMain: the demo evaluates Go in children of this test binary.
//
// Most hostile cases wait in another process until their time limit
// stops them, so more of them run at once than the machine has CPUs:
// -test.parallel defaults to 8 here unless it is given.
func TestMain(m *testing.M) {
	sandbox.Main()
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		flag.Set("test.parallel", "8")
	}
	os.Exit(m.Run())
}

// hostileEnv is what a hostile snippet may look for: a file path that
// must not appear, an address that must not be dialled, a secret in the
// service's environment that must not leak.
type hostileEnv struct {
	dir     string
	addr    string
	secret  string
	dialled *atomic.Int32
}

func newHostileEnv(t *testing.T) *hostileEnv {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	e := &hostileEnv{dir: t.TempDir(), addr: ln.Addr().String(), dialled: new(atomic.Int32)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.dialled.Add(1)
			c.Close()
		}
	}()
	secret := make([]byte, 16)
	rand.Read(secret)
	e.secret = "s3cret-" + hex.EncodeToString(secret)
	t.Cleanup(func() {
		if n := e.dialled.Load(); n != 0 {
			t.Errorf("hostile snippets made %d connections", n)
		}
	})
	return e
}

// source is hc's snippet with its placeholders filled in; mark is the
// file it must not create.
func (e *hostileEnv) source(hc hostile, mark string) string {
	return strings.NewReplacer("MARK", mark, "ADDR", e.addr, "SECRET", "OPSREPL_SECRET").Replace(hc.src)
}

// check asserts a snippet's final event, and that it leaked nothing.
func (e *hostileEnv) check(t *testing.T, hc hostile, final wire.Event, all string, mark string) {
	t.Helper()
	text := final.Message + final.Value
	codes, msgs := strings.Split(string(hc.code), "|"), strings.Split(hc.msg, "|")
	ok := false
	for i := range codes {
		ok = ok || (string(final.Code) == codes[i] && strings.Contains(text, msgs[i]))
	}
	if !ok {
		t.Errorf("final event: got %s %q %q; want code %q with %q", final.Type, final.Code, text, hc.code, hc.msg)
	}
	if strings.Contains(all, e.secret) {
		t.Error("the secret leaked into the session")
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("the snippet wrote a file")
	}
}

// TestHostile runs every hostile snippet through the demo's admin
// session, with evaluation in child processes (the default) and in the
// service's own process (the unsafe opt-in).
func TestHostile(t *testing.T) {
	if len(hostileCases) < 35 {
		t.Fatalf("only %d hostile cases", len(hostileCases))
	}
	t.Run("sandboxed", func(t *testing.T) { t.Parallel(); testHostileSandboxed(t) })
	t.Run("in-process", func(t *testing.T) { t.Parallel(); testHostileInProcess(t) })
}

// testHostileInProcess runs each snippet in a service process of its own
// (a regression that kills the process fails the case, not the test
// binary), evaluating in process. For each it asserts: the process
// survived, the error is the expected one, no file was written, no
// connection was made, no secret leaked, no interpreted code still runs,
// and 1+2 works afterwards in the same session and in a fresh one.
// (childOnlyCases, which only a process boundary stops, are left out.)
func testHostileInProcess(t *testing.T) {
	e := newHostileEnv(t)
	for i, hc := range hostileCases {
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHostileChild$")
			cmd.Env = append(os.Environ(),
				childEnv+"="+strconv.Itoa(i),
				"OPSREPL_HOSTILE_DIR="+dir,
				"OPSREPL_HOSTILE_ADDR="+e.addr,
				"OPSREPL_SECRET="+e.secret)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the service process died: %v\n%s", err, tail(out))
			}
			if strings.Contains(string(out), "fatal error") || strings.Contains(string(out), e.secret) ||
				strings.Contains(string(out), "REALSTDOUT") || strings.Contains(string(out), "REALSTDERR") {
				t.Fatalf("the child's own output shows a fatal error, a leak or real stdio:\n%s", tail(out))
			}
			b, err := os.ReadFile(filepath.Join(dir, "result.json"))
			if err != nil {
				t.Fatalf("no result: %v\n%s", err, tail(out))
			}
			var r childResult
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			e.check(t, hc, r.Final, string(b), filepath.Join(dir, "MARK"))
			if r.Lingering != 0 {
				t.Fatalf("%d goroutines still run interpreted code after the request ended", r.Lingering)
			}
			if r.SameSession != "3" || r.FreshSession != "3" {
				t.Fatalf("1+2 afterwards: same session %q, fresh session %q; want 3 and 3", r.SameSession, r.FreshSession)
			}
		})
	}
}

type childResult struct {
	Final        wire.Event
	Output       string
	SameSession  string
	FreshSession string
	Lingering    int // interpreter goroutines still running after the request
}

// TestHostileChild is the service side of TestHostile; it does nothing
// unless started by it.
func TestHostileChild(t *testing.T) {
	idx := os.Getenv(childEnv)
	if idx == "" {
		t.Skip("run by TestHostile")
	}
	i, _ := strconv.Atoi(idx)
	dir := os.Getenv("OPSREPL_HOSTILE_DIR")
	hc := hostileCases[i]
	src := strings.NewReplacer("MARK", filepath.Join(dir, "MARK"), "ADDR", os.Getenv("OPSREPL_HOSTILE_ADDR"), "SECRET", "OPSREPL_SECRET").Replace(hc.src)

	d, err := Start(context.Background(), Options{Dir: filepath.Join(dir, "state"), InProcessEval: true,
		Interp: interp.Options{Timeout: hostileTimeout, MaxHeapGrowth: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var r childResult
	c := childDial(t, d)
	defer c.Close()
	r.Final, r.Output = runSnippet(t, c, src)
	r.Lingering = lingering(20 * time.Second) // unwinding deep stacks takes a while under -race
	r.SameSession, _ = childRunValue(t, c, "1+2")
	c2 := childDial(t, d)
	defer c2.Close()
	r.FreshSession, _ = childRunValue(t, c2, "1+2")
	b, _ := json.Marshal(r)
	if err := os.WriteFile(filepath.Join(dir, "result.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// lingering waits up to d for goroutines running interpreted code to end,
// and returns how many are left.
func lingering(d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		count := 0
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "github.com/traefik/yaegi/interp") {
				count++
			}
		}
		if count == 0 || time.Now().After(deadline) {
			return count
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// childDial opens an admin session on d's console.
func childDial(t *testing.T, d *Demo) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d.ConsoleURL, client.Options{Token: d.Tokens["admin"]})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// childRun runs line in session c and returns its final event and the
// output it printed. A request that ends in an error event (or
// incomplete) is a final event like any other; only a lost connection or
// no final event within 30 s fails the test.
func childRun(t *testing.T, c *client.Conn, line string) (wire.Event, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	final, err := c.Run(ctx, line, client.Handler{Event: func(ev wire.Event) error {
		if ev.Type == wire.EventOutput {
			out.WriteString(ev.Data)
		}
		return nil
	}})
	var werr *wire.Error
	if err != nil && !errors.As(err, &werr) && !errors.Is(err, client.ErrIncomplete) {
		t.Fatalf("run %.80q: %v", line, err)
	}
	return final, out.String()
}

func childRunValue(t *testing.T, c *client.Conn, line string) (string, error) {
	t.Helper()
	ev, _ := childRun(t, c, line)
	if ev.Type != wire.EventResult {
		return "", fmt.Errorf("%s: %s", ev.Code, ev.Message)
	}
	return ev.Value, nil
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// hostileTimeout is the snippets' time limit.
const hostileTimeout = raceScale * 2500 * time.Millisecond
