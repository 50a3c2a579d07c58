package sandbox

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/interp"
)

func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

// badErr's Error method panics on a nil receiver.
type badErr struct{ msg string }

func (e *badErr) Error() string { return e.msg }

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
		Func("shop/cache", "TypedNil", func() error { var e *badErr; return e }).
		Func("shop/cache", "Echo", func(s string) int { return len(s) }).
		Func("shop/cache", "Avg", func() float64 { return math.NaN() }).
		Func("shop/cache", "Bin", func() string { return "\xff\xfe" }).
		Func("shop/billing", "Total", func() int { return 7 }).
		Value("shop/cache", "Limit", 10)
}

func newPool(t *testing.T, mod func(*Options)) *Pool {
	t.Helper()
	opts := Options{Exports: testExports(), Interp: interp.Options{Timeout: 20 * time.Second}, CallTimeout: 300 * time.Millisecond}
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
	in, err := p.Start(context.Background(), spec)
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
		{"billing.Total()", "", "undefined"},
		{"cache.TypedNil()", "", "panicked"},
		{`cache.Echo(strings.Repeat("x", 1<<20))`, "", "at most"},
		{`cache.Echo("\xff")`, "", "not valid UTF-8"},
		{"cache.Avg()", "", "NaN"},
		{"cache.Bin()", "", "not valid UTF-8"},
		{`panic(strings.Repeat("\x01", 2<<20))`, "", "bytes in all"},
		{`cache.Echo("héllo")`, "6", ""},
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

// TestChildDies: whatever ends a child, the host says why, and the next
// interpreter works.
func TestChildDies(t *testing.T) {
	tests := []struct {
		name  string
		opts  func(*Options)
		src   string
		ctx   func() (context.Context, context.CancelFunc)
		cause Cause
		is    error
	}{
		{name: "memory cap", opts: func(o *Options) { o.MaxMemory = 256 << 20; o.Interp.Timeout = 30 * time.Second },
			src: `len(strings.Repeat("x", 250<<20))`, cause: CauseMemory},
		{name: "stack overflow", opts: func(o *Options) { o.Interp.MaxDepth = 1 << 30; o.Interp.Timeout = 30 * time.Second },
			src: `func down(n int) int { return down(n+1) + 1 }; down(0)`, cause: CauseCrash},
		{name: "cancel", src: `for {}`, cause: CauseCanceled, is: context.Canceled,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx, cancel
			}},
		{name: "exported call past its deadline", src: `cache.Slow()`, cause: CauseCallTimeout},
		{name: "wall limit", opts: func(o *Options) { o.Interp.Timeout = 500 * time.Millisecond; o.CallTimeout = time.Minute },
			src: `cache.Slow()`, cause: CauseWall, is: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cause == CauseCrash && raceEnabled {
				t.Skip("a 64 MiB stack takes minutes to overflow under the race detector")
			}
			p := newPool(t, tt.opts)
			in := start(t, p, Spec{Packages: []string{"shop/cache"}})
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			_, err := in.Eval(ctx, tt.src, &bytes.Buffer{})
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Cause != tt.cause {
				t.Fatalf("got %v; want the child ended by %s", err, tt.cause)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("got %v; want it to wrap %v", err, tt.is)
			}
			if tt.cause == CauseCrash && !strings.Contains(ee.Detail, "stack") {
				t.Fatalf("crash detail %q; want the runtime's reason", ee.Detail)
			}
			if _, err := in.Eval(context.Background(), "1+2", &bytes.Buffer{}); !errors.Is(err, interp.ErrReset) {
				t.Fatalf("the dead interpreter: got %v; want ErrReset", err)
			}
			next := start(t, p, Spec{})
			if v, err := next.Eval(context.Background(), "1+2", &bytes.Buffer{}); v != "3" || err != nil {
				t.Fatalf("a new interpreter: got %q, %v", v, err)
			}
		})
	}
}

// TestStoppedEvalEndsChild: an eval the child stops itself (its time
// limit) ends the child too, since its interpreter may resume stopped
// code; a compile that runs on cannot outlive it.
func TestStoppedEvalEndsChild(t *testing.T) {
	p := newPool(t, func(o *Options) { o.Interp.Timeout = 300 * time.Millisecond })
	in := start(t, p, Spec{})
	pid := in.PID()
	_, err := in.Eval(context.Background(), "for {}", &bytes.Buffer{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want the time limit", err)
	}
	if _, alive := residentBytes(pid); alive {
		t.Fatalf("child %d still runs after a stopped eval", pid)
	}
}

// TestCallChecks: the host checks every exported call against the
// session's grant as it is now, and the package list it was built with.
func TestCallChecks(t *testing.T) {
	p := newPool(t, nil)
	var allowed atomic.Bool
	allowed.Store(true)
	in := start(t, p, Spec{Packages: []string{"shop/cache"}, Allow: func(string) bool { return allowed.Load() }})
	if v, err := in.Eval(context.Background(), "cache.Len()", &bytes.Buffer{}); v != "42" || err != nil {
		t.Fatalf("allowed: got %q, %v", v, err)
	}
	allowed.Store(false)
	if _, err := in.Eval(context.Background(), "cache.Len()", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "not permitted") {
		t.Fatalf("revoked: got %v; want not permitted", err)
	}
}

// TestChildHygiene: a child's environment is scrubbed, it holds no
// descriptor but its channel and standard I/O, it runs under its data and
// CPU limits, and (on Linux) under a seccomp filter.
func TestChildHygiene(t *testing.T) {
	extra, err := os.Open("/dev/null") // close-on-exec is Go's default; make one that is not
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	syscall.Syscall(syscall.SYS_FCNTL, extra.Fd(), syscall.F_SETFD, 0)
	p := newPool(t, func(o *Options) { o.MaxMemory = 300 << 20; o.MaxCPU = 90 * time.Second })
	in := start(t, p, Spec{})
	pid := strconv.Itoa(in.PID())
	env, _ := os.ReadFile("/proc/" + pid + "/environ")
	if got := strings.Split(strings.TrimRight(string(env), "\x00"), "\x00"); !slices.Equal(got, childEnv) {
		t.Errorf("environment: got %q; want %q", got, childEnv)
	}
	fds, _ := os.ReadDir("/proc/" + pid + "/fd")
	for _, fd := range fds {
		link, _ := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		n, _ := strconv.Atoi(fd.Name())
		if n > channelFD && !strings.HasPrefix(link, "anon_inode:") {
			t.Errorf("the child holds descriptor %d → %s", n, link)
		}
	}
	status, _ := os.ReadFile("/proc/" + pid + "/status")
	if !strings.Contains(string(status), "Seccomp:\t2") {
		t.Errorf("no seccomp filter in the child:\n%s", status)
	}
	limits, _ := os.ReadFile("/proc/" + pid + "/limits")
	for _, want := range []string{"Max cpu time              90", "Max file size             0"} {
		if !strings.Contains(string(limits), want) {
			t.Errorf("limits: no %q in\n%s", want, limits)
		}
	}
	if !raceEnabled && !strings.Contains(string(limits), "Max data size             314572800") {
		t.Errorf("limits: no data limit of 300 MiB in\n%s", limits)
	}
}

// TestIdleRelease: a session's child ends after IdleTimeout without a
// request, and the interpreter says why.
func TestIdleRelease(t *testing.T) {
	p := newPool(t, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	in := start(t, p, Spec{})
	pid := in.PID()
	deadline := time.Now().Add(10 * time.Second)
	for in.Released() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the idle child was not released")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(in.Released(), "without a request") {
		t.Fatalf("Released: %q", in.Released())
	}
	for {
		if _, alive := residentBytes(pid); !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle child %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpares: a pool keeps its spare ready, and Close ends every child
// and is idempotent.
func TestSpares(t *testing.T) {
	p := newPool(t, nil)
	p.Warm()
	waitStats(t, p, func(s Stats) bool { return s.Ready == 1 && s.Starting == 0 })
	in := start(t, p, Spec{})
	waitStats(t, p, func(s Stats) bool { return s.Ready == 1 && s.Live == 2 })
	pid := in.PID()
	p.Close()
	p.Close()
	if st := p.Stats(); st.Live != 0 || st.Ready != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	if _, alive := residentBytes(pid); alive {
		t.Fatalf("child %d runs after Close", pid)
	}
	if _, err := p.Start(context.Background(), Spec{}); err == nil {
		t.Fatal("Start after Close: no error")
	}
}

func waitStats(t *testing.T, p *Pool, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok(p.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats: %+v", p.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMaxChildren: at MaxChildren running children, a new interpreter
// takes the child of the one that has gone longest without a request,
// which says why; only children in the middle of a request are never
// taken (then Start says busy).
func TestMaxChildren(t *testing.T) {
	p := newPool(t, func(o *Options) { o.MaxChildren = 2; o.Interp.Timeout = 5 * time.Second })
	a := start(t, p, Spec{})
	b := start(t, p, Spec{})
	a.Eval(context.Background(), "1", &bytes.Buffer{})
	time.Sleep(10 * time.Millisecond) // b: used earlier than a
	c := start(t, p, Spec{})
	if why := b.Released(); !strings.Contains(why, "make room") {
		t.Fatalf("b: Released %q; want it taken to make room", why)
	}
	if a.Released() != "" || c.Released() != "" {
		t.Fatalf("a %q, c %q: want both usable", a.Released(), c.Released())
	}
	// Both children busy: no room.
	for _, in := range []*Interpreter{a, c} {
		go in.Eval(context.Background(), "time.Sleep(4 * time.Second)", &bytes.Buffer{})
	}
	for _, in := range []*Interpreter{a, c} {
		waitFor(t, "an eval under way", func() bool {
			if in.mu.TryLock() {
				in.mu.Unlock()
				return false
			}
			return true
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := p.Start(ctx, Spec{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("with every child busy: got %v; want ErrBusy", err)
	}
}

// TestRuntimeType: an export whose type was made at run time cannot cross
// to a child; starting an interpreter with it says which export it is.
func TestRuntimeType(t *testing.T) {
	// A signature no code of the binary has: reflect makes its type.
	exp := new(interp.Exports).Func("dyn/app", "Dyn", reflect.MakeFunc(
		reflect.FuncOf([]reflect.Type{reflect.TypeFor[[3]int8]()}, []reflect.Type{reflect.TypeFor[[7]uint16]()}, false),
		func(args []reflect.Value) []reflect.Value { return []reflect.Value{reflect.ValueOf([7]uint16{})} }).Interface())
	if err := exp.Err(); err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Exports: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Start(context.Background(), Spec{Packages: []string{"dyn/app"}})
	if err == nil || !strings.Contains(err.Error(), "dyn/app.Dyn") || !strings.Contains(err.Error(), "run time") {
		t.Fatalf("got %v; want an error naming the export and saying its type was made at run time", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStoppedResultNotLost: a child that stops an eval sends its last
// output and its result, then exits; the host reads them all, however
// slowly it passes the output on, and reports the limit, not a crash.
func TestStoppedResultNotLost(t *testing.T) {
	p := newPool(t, func(o *Options) { o.Interp.MaxOutput = 4 << 10 })
	for i := 0; i < 10; i++ {
		in := start(t, p, Spec{})
		_, err := in.Eval(context.Background(), `for { fmt.Print(strings.Repeat("x", 1000)) }`, slowWriter{})
		if !errors.Is(err, interp.ErrOutputLimit) {
			t.Fatalf("run %d: got %v; want the output limit", i, err)
		}
	}
}

type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) { time.Sleep(2 * time.Millisecond); return len(p), nil }

// TestCallShare: a loop of calls to an export that takes 5 ms makes about
// CallShare × the time / 5 ms calls, so the host spends about CallShare of
// a core on them.
func TestCallShare(t *testing.T) {
	var calls atomic.Int32
	exp := new(interp.Exports).Func("app/slow", "Work", func() int { calls.Add(1); time.Sleep(5 * time.Millisecond); return 1 })
	p, err := New(Options{Exports: exp, CallShare: 0.1, Interp: interp.Options{Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in, err := p.Start(context.Background(), Spec{Packages: []string{"app/slow"}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	in.Eval(context.Background(), "for { slow.Work() }", &bytes.Buffer{})
	// 1 s × 0.1 / 5 ms = 20 calls; without the share, about 200.
	if n := calls.Load(); n > 30 {
		t.Fatalf("%d calls of 5 ms in 1 s; want about 20 at a 10%% share", n)
	}
}

// TestConcurrentStarts: more sessions than places start at once; each
// waits for a place (an interpreter that finished its eval is taken) and
// none is refused.
func TestConcurrentStarts(t *testing.T) {
	p := newPool(t, func(o *Options) { o.MaxChildren = 2 })
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		go func() {
			in, err := p.Start(context.Background(), Spec{})
			if err == nil {
				defer in.Close()
				_, err = in.Eval(context.Background(), "1+2", &bytes.Buffer{})
			}
			errs <- err
		}()
	}
	for i := 0; i < 6; i++ {
		if err := <-errs; err != nil && !errors.Is(err, interp.ErrReset) {
			t.Fatalf("start %d: %v", i, err)
		}
	}
}
