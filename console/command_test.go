package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/diag"
	"github.com/opsrepl/opsrepl/policy"

	opsrepl "github.com/opsrepl/opsrepl"
)

func TestAppCommands(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	cmds := []Command{
		{Name: "greet", Usage: "NAME", Summary: "say hello", Run: func(ctx context.Context, r *Request) error {
			fs := newFlagSet("greet")
			if err := r.ParseFlags(fs, true); err != nil {
				return err
			}
			if fs.NArg() != 1 {
				return wire.Errorf(wire.CodeBadRequest, "greet: want one name")
			}
			fmt.Fprintf(r.Out, "hello %s from %s\n", fs.Arg(0), r.Subject)
			return nil
		}},
		{Name: "slow", Summary: "hold the heavy slot", Cost: Heavy, Run: func(ctx context.Context, r *Request) error {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}},
		{Name: "freeze", Summary: "pretend to stop the world", Cost: StopsTheWorld,
			Pause: func() time.Duration { return 1500 * time.Millisecond },
			Run: func(ctx context.Context, r *Request) error {
				if err := r.ParseFlags(newFlagSet("freeze"), false); err != nil {
					return err
				}
				fmt.Fprintln(r.Out, "frozen")
				return nil
			}},
		{Name: "boom", Summary: "fail inside", Run: func(ctx context.Context, r *Request) error {
			return errors.New("secret internal detail")
		}},
		{Name: "crash", Summary: "a bug in the application's command", Run: func(ctx context.Context, r *Request) error {
			panic("a bug in the command")
		}},
	}
	f := newFixture(t, func(o *Options) {
		o.Commands = cmds
		enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy +
			"g, viewer, role:viewer\ng, operator, role:operator\ng, admin, role:admin\n" +
			"p, role:operator, cmd:greet, run, allow\n"})
		if err != nil {
			t.Fatal(err)
		}
		o.Authorizer = enf
	})
	viewer, op, admin := f.dial(t, "viewer"), f.dial(t, "operator"), f.dial(t, "admin")
	tests := []struct {
		c    *tconn
		line string
		code wire.Code
		out  string
	}{
		{op, "greet world", "", "hello world from operator"},
		{viewer, "greet world", wire.CodeForbidden, "cmd:greet"},
		{op, "greet", wire.CodeBadRequest, "want one name"},
		{admin, "freeze", wire.CodeBadRequest, "about 1.5s; run it again with --yes"},
		{admin, "freeze --yes", "", "frozen"},
		{admin, "boom", wire.CodeInternal, "internal error"},
		{admin, "crash", wire.CodeInternal, "internal error"},
		{admin, "whoami", "", "admin"}, // the host survived the panic
	}
	for _, tt := range tests {
		tt.c.t = t
		final, out, _, _ := tt.c.run(tt.line)
		if final.Code != tt.code || !strings.Contains(out+final.Message, tt.out) {
			t.Errorf("%s: got %s %q %q; want %q containing %q", tt.line, final.Type, final.Code, out+final.Message, tt.code, tt.out)
		}
	}
	if strings.Contains(f.audit.String(), "secret internal detail") || !strings.Contains(f.logs.String(), "secret internal detail") {
		t.Error("an internal error must reach the log, not the client or the audit")
	}
	if !strings.Contains(f.audit.String(), `"line":"greet world","object":"cmd:greet","decision":"deny"`) {
		t.Error("the denied app command is not audited")
	}
	_, help, _, _ := admin.run("help")
	for _, want := range []string{"greet ", "say hello", "slow", "[heavy]", "freeze", "[stops the world]"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if _, usage, _, _ := admin.run("help greet"); !strings.Contains(usage, "greet NAME") {
		t.Errorf("help greet lacks its usage:\n%s", usage)
	}

	// Heavy commands run one at a time in the process.
	id := admin.send(wire.Request{Type: wire.TypeRun, Line: "slow"})
	<-started
	op.t = t
	final, _, _, _ := op.run("gc")
	if final.Code != wire.CodeBusy || !strings.Contains(final.Message, "slow (run by admin)") {
		t.Fatalf("gc while slow runs: got %+v; want busy naming slow and admin", final)
	}
	close(release)
	admin.read(id)
	if final, _, _, _ := op.run("gc"); final.Type != wire.EventResult {
		t.Fatalf("gc after slow ended: %+v", final)
	}
}

func TestBadCommandDefinitions(t *testing.T) {
	run := func(context.Context, *Request) error { return nil }
	authn := AuthenticatorFunc(func(*http.Request) (string, error) { return "x", nil })
	allow := AuthorizerFunc(func(string, string, string) (bool, error) { return true, nil })
	for _, c := range []Command{
		{Name: "", Summary: "s", Run: run},
		{Name: "two words", Summary: "s", Run: run},
		{Name: "eval", Summary: "s", Run: run},
		{Name: "gc", Summary: "shadows a built-in", Run: run},
		{Name: "norun", Summary: "s"},
		{Name: "nosummary", Run: run},
	} {
		if _, err := New(Options{Authenticator: authn, Authorizer: allow, Audit: audit.Discard, Commands: []Command{c}}); err == nil {
			t.Errorf("New with command %+v: got no error", c.Name)
		}
	}
}

func TestMaintenanceFlags(t *testing.T) {
	f := newFixture(t, nil)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // steady GC cycles for gcwatch and --after-gc
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
				runtime.GC()
			}
		}
	}()
	c := f.dial(t, "admin")
	tests := []struct {
		line  string
		code  wire.Code
		check func(out string) bool
	}{
		{"memstats --json", "", func(out string) bool {
			var v struct{ Stats []struct{ Metric string } }
			return json.Unmarshal([]byte(out), &v) == nil && len(v.Stats) > 5 && v.Stats[0].Metric != ""
		}},
		{"memstats --watch 20ms --count 3", "", func(out string) bool { return strings.Count(out, "\n-- ") == 2 && strings.HasPrefix(out, "-- ") }},
		{"memstats --watch 20ms --count 2 --json", "", func(out string) bool { return strings.Count(out, "\n") == 2 }},
		{"memstats --watch 1ms", wire.CodeBadRequest, nil},
		{"memstats --count 3", wire.CodeBadRequest, nil},
		{"memstats --watch soon", wire.CodeBadRequest, nil},
		{"gcwatch --count 2", "", func(out string) bool { return strings.Count(out, "\n") == 3 && strings.Contains(out, "heap live") }},
		{"goroutines --filter (", wire.CodeBadRequest, nil},
		{"heapdump --gc --after-gc", wire.CodeBadRequest, nil},
		{"heapdump --after-gc --wait 1h", wire.CodeBadRequest, nil},
		{"heapdump --after-gc", "", func(out string) bool { return strings.Contains(out, "GC cycle") }},
	}
	for _, tt := range tests {
		c.t = t
		final, out, _, _ := c.run(tt.line)
		if final.Code != tt.code || (tt.check != nil && !tt.check(out)) {
			t.Errorf("%s: got %s %q %q\n%s", tt.line, final.Type, final.Code, final.Message, out)
		}
	}
	// A watch ends when cancelled.
	id := c.send(wire.Request{Type: wire.TypeRun, Line: "memstats --watch 10ms"})
	time.Sleep(100 * time.Millisecond)
	c.send(wire.Request{Type: wire.TypeCancel, Target: id})
	evs, _ := c.read(id)
	if final := evs[len(evs)-1]; final.Code != wire.CodeCanceled {
		t.Fatalf("cancelled watch: %+v", final)
	}
}

// TestGoroutines10k checks the grouped and full forms with 10k goroutines.
func TestGoroutines10k(t *testing.T) {
	f := newFixture(t, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 10000; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); parkedForConsoleTest(stop) }()
	}
	defer func() { close(stop); wg.Wait() }()
	c := f.dial(t, "operator")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, _, _ := c.run("goroutines --filter parkedForConsoleTest")
		if strings.Contains(out, "10000 goroutines with this stack") && !strings.Contains(out, "runtime.main") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grouped goroutines with a filter:\n%.600s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if final, _, _, _ := c.run("goroutines --full"); final.Code != wire.CodeBadRequest || !strings.Contains(final.Message, "--yes") {
		t.Fatalf("--full without --yes: %+v", final)
	}
	final, out, _, _ := c.run("goroutines --full --yes --filter parkedForConsoleTest")
	if final.Type != wire.EventResult || strings.Count(out, "parkedForConsoleTest") < 10000 {
		t.Fatalf("--full: %+v, %d matches", final, strings.Count(out, "parkedForConsoleTest"))
	}
}

func parkedForConsoleTest(stop chan struct{}) { <-stop }

// gcPercent reads GOGC without setting it (setting it would race with a
// pending revert).
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func TestTuning(t *testing.T) {
	orig := gcPercent()
	origLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(orig); debug.SetMemoryLimit(origLimit) })
	lv := new(slog.LevelVar)
	f := newFixture(t, func(o *Options) { o.LogLevel = lv })
	admin, op := f.dial(t, "admin"), f.dial(t, "operator")

	if final, _, _, _ := op.run("setgc 50"); final.Code != wire.CodeForbidden {
		t.Fatalf("setgc as operator: %+v", final)
	}
	_, out, _, _ := admin.run("setgc 50 --ttl 300ms")
	if gcPercent() != 50 || !strings.Contains(out, "-> 50%") || !strings.Contains(out, "reverts to") {
		t.Fatalf("setgc 50: GOGC %d, output %q", gcPercent(), out)
	}
	admin.run("setgc 70 --ttl 300ms") // a second change keeps the first original
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.audit.String(), `"kind":"revert"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if gcPercent() != orig {
		t.Fatalf("GOGC did not revert: %d, want %d", gcPercent(), orig)
	}
	if !strings.Contains(f.audit.String(), `"kind":"revert"`) || !strings.Contains(f.audit.String(), `"detail":"GOGC 100% -> 50%`) {
		t.Fatalf("tuning and its revert are not audited:\n%s", f.audit.String())
	}

	tests := []struct{ line, msg string }{
		{"setgc", "want one value"},
		{"setgc abc", "percentage"},
		{"setgc 0", "percentage"},
		{"setgc 50 60", "want one value"},
		{"setgc 50 --ttl -1s", "negative"},
		{"setgc 50 --ttl forever", "invalid value"},
		{"setmemlimit 10", "at least 1MiB"},
		{"setmemlimit 1XB", "at least 1MiB"},
		{"setmemlimit -5GiB", "not defined"},
		{"loglevel loud", "want debug"},
		{"loglevel info debug", "at most one"},
	}
	for _, tt := range tests {
		final, _, _, _ := admin.run(tt.line)
		if final.Code != wire.CodeBadRequest || !strings.Contains(final.Message, tt.msg) {
			t.Errorf("%s: got %q %q; want bad_request with %q", tt.line, final.Code, final.Message, tt.msg)
		}
	}

	if _, out, _, _ := admin.run("loglevel debug"); lv.Level() != slog.LevelDebug || !strings.Contains(out, "INFO -> DEBUG") {
		t.Fatalf("loglevel debug: %v %q", lv.Level(), out)
	}
	if _, out, _, _ := op.run("loglevel"); !strings.Contains(out, "DEBUG") {
		t.Fatalf("loglevel as operator: %q", out)
	}

	// Close reverts what is pending.
	admin.run("setmemlimit 512MiB --ttl 1h")
	if got := debug.SetMemoryLimit(-1); got != 512<<20 {
		t.Fatalf("setmemlimit: %d", got)
	}
	f.srv.Close()
	if got := debug.SetMemoryLimit(-1); got != origLimit {
		t.Fatalf("after Close: memory limit %d, want %d", got, origLimit)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1073741824": 1 << 30, "512MiB": 512 << 20, "2GiB": 2 << 30, "100MB": 100e6, "1.5GiB": 3 << 29} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q): %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1e30GiB", "5 MiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q): got no error", bad)
		}
	}
}

func TestProfiles(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dial(t, "operator")
	for _, tt := range []struct {
		line string
		code wire.Code
		file string
	}{
		{"profile cpu --seconds 1", "", "cpu-"},
		{"profile --seconds 1 cpu", "", "cpu-"},
		{"profile allocs", "", "allocs-"},
		{"profile mutex", "", "mutex-"},
		{"trace --seconds 1", "", "trace-"},
		{"profile", wire.CodeBadRequest, ""},
		{"profile cpu allocs", wire.CodeBadRequest, ""},
		{"profile disk", wire.CodeBadRequest, ""},
		{"profile cpu --seconds 0", wire.CodeBadRequest, ""},
		{"trace --seconds 100", wire.CodeBadRequest, ""},
	} {
		c.t = t
		final, _, file, evs := c.run(tt.line)
		name := ""
		for _, ev := range evs {
			if ev.Type == wire.EventFile {
				name = ev.Name
			}
		}
		if final.Code != tt.code || !strings.HasPrefix(name, tt.file) || (tt.file != "" && len(file) == 0) {
			t.Errorf("%s: got %q %q, file %q (%d bytes)", tt.line, final.Code, final.Message, name, len(file))
		}
	}
	// A CPU profile running elsewhere in the process makes profile cpu busy.
	var sink bytes.Buffer
	if err := pprof.StartCPUProfile(&sink); err != nil {
		t.Fatal(err)
	}
	final, _, _, _ := c.run("profile cpu --seconds 1")
	pprof.StopCPUProfile()
	if final.Code != wire.CodeBusy {
		t.Fatalf("profile cpu during another CPU profile: %+v", final)
	}
	if err := trace.Start(&sink); err != nil {
		t.Fatal(err)
	}
	final, _, _, _ = c.run("trace --seconds 1")
	trace.Stop()
	if final.Code != wire.CodeBusy {
		t.Fatalf("trace during another trace: %+v", final)
	}
}

func TestFullHeapdump(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, func(o *Options) { o.DumpDir = dir })
	op, admin := f.dial(t, "operator"), f.dial(t, "admin")
	final, _, _, _ := op.run("heapdump --full --yes")
	if final.Code != wire.CodeForbidden || !strings.Contains(final.Message, "cmd:heapdump-full") {
		t.Fatalf("operator heapdump --full: %+v", final)
	}
	if !strings.Contains(f.audit.String(), `"line":"heapdump --full --yes","object":"cmd:heapdump-full","decision":"deny"`) {
		t.Fatal("the refused full dump is not audited with its object")
	}
	final, _, _, _ = admin.run("heapdump --full")
	if final.Code != wire.CodeBadRequest || !strings.Contains(final.Message, "stops the whole process for about") {
		t.Fatalf("heapdump --full without --yes: %+v", final)
	}
	final, out, file, evs := admin.run("heapdump --full --yes")
	if final.Type != wire.EventResult || !strings.Contains(out, "pause: predicted") {
		t.Fatalf("heapdump --full --yes: %+v %q", final, out)
	}
	var hdr wire.Event
	for _, ev := range evs {
		if ev.Type == wire.EventFile {
			hdr = ev
		}
	}
	sum := sha256.Sum256(file)
	if hdr.Size == 0 || int64(len(file)) != hdr.Size || hex.EncodeToString(sum[:]) != hdr.SHA256 || !strings.HasPrefix(string(file), "go1.7 heap dump") {
		t.Fatalf("dump: %d bytes (header %d), starts %q", len(file), hdr.Size, file[:min(len(file), 16)])
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Fatalf("temporary dump files left: %v", left)
	}
	// The outcome lists the file as announced, and hashes the text only.
	var rec audit.Record
	for _, r := range auditRecords(t, f.audit.String()) {
		if r.Kind == audit.KindOutcome && len(r.Files) > 0 {
			rec = r
		}
	}
	want := audit.File{Name: hdr.Name, Size: hdr.Size, Sent: hdr.Size, SHA256: hdr.SHA256}
	if len(rec.Files) != 1 || rec.Files[0] != want || rec.OutputBytes != int64(len(out)) || rec.OutputSHA256 != sha256Hex([]byte(out)) {
		t.Fatalf("outcome record: files %+v, output %d bytes %s; want %+v and the text's %d bytes", rec.Files, rec.OutputBytes, rec.OutputSHA256, want, len(out))
	}
	if !strings.Contains(out, "predicted pause") || !strings.Contains(out, "likely") {
		t.Fatalf("the prediction does not show its range: %q", out)
	}
	g := newFixture(t, nil) // no DumpDir
	if final, _, _, _ := g.dial(t, "admin").run("heapdump --full --yes"); final.Code != wire.CodeBadRequest || !strings.Contains(final.Message, "DumpDir") {
		t.Fatalf("without DumpDir: %+v", final)
	}
}

// TestDumpPrediction: the model alone gives ±50%; observed dumps scale
// it, one dump only halfway (in logarithm), and the range follows their
// spread.
func TestDumpPrediction(t *testing.T) {
	shape := heapShape{bytes: 1 << 30, objects: 16 << 20}
	m := shape.model()
	if m < 3*time.Second || m > 6*time.Second {
		t.Fatalf("model for 1 GiB in 16 Mi objects: %v; want the 3 to 6 s measured", m)
	}
	tests := []struct {
		name     string
		observed []float64 // observed/model ratios, oldest first
		scale    float64   // want pause = model × scale
		low      float64   // want low = model × low
		basis    string
	}{
		{name: "none", scale: 1, low: 0.5, basis: "not yet calibrated"},
		{name: "one, twice as slow", observed: []float64{2}, scale: math.Sqrt2, low: math.Sqrt2 * 0.75, basis: "calibrated by 1 earlier full dump in"},
		{name: "two alike", observed: []float64{2, 2}, scale: math.Pow(2, 2.0/3), low: math.Pow(2, 2.0/3) * 0.75, basis: "by 2 earlier full dumps"},
		{name: "spread", observed: []float64{0.5, 2}, scale: 1, low: 0.5, basis: "by 2"},
		{name: "only the last five count", observed: []float64{100, 1, 1, 1, 1, 1}, scale: 1, low: 0.75, basis: "by 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d dumpHistory
			for _, r := range tt.observed {
				d.observe(shape, time.Duration(float64(m)*r))
				d.observe(heapShape{bytes: 1 << 20}, time.Second) // too small to count
			}
			p := d.predict(shape)
			near := func(got time.Duration, f float64) bool {
				return math.Abs(float64(got)-float64(m)*f) <= float64(m)*0.01
			}
			if !near(p.pause, tt.scale) || !near(p.low, tt.low) || p.high < p.pause || !strings.Contains(p.String(), tt.basis) {
				t.Fatalf("got %v (low %v, high %v) %q; want %.2f × %v, low %.2f ×, saying %q", p.pause, p.low, p.high, p, tt.scale, m, tt.low, tt.basis)
			}
		})
	}
}

var leakedForConsoleTest [][]byte

func leakForConsoleTest(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
			leakedForConsoleTest = append(leakedForConsoleTest, make([]byte, 2<<20))
			runtime.GC()
		}
	}
}

func TestLeakcheck(t *testing.T) {
	// The heap profile lags up to two GC cycles: settle it, so allocations
	// freed before this test (an earlier -count run) are not in "before".
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { leakForConsoleTest(stop); close(done) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
		leakedForConsoleTest = nil
	}()
	f := newFixture(t, nil)
	c := f.dial(t, "operator")
	final, out, _, _ := c.run("leakcheck --cycles 12")
	if final.Type != wire.EventResult || !strings.Contains(out, "LIKELY LEAK") || !strings.Contains(out, "leakForConsoleTest") {
		t.Fatalf("leakcheck: %+v\n%s", final, out)
	}
	for _, bad := range []string{"leakcheck --for 1h", "leakcheck --for 5s --cycles 3", "leakcheck --top 0", "leakcheck --cycles -1", "leakcheck --cycles 2", "leakcheck --cycles 9", "leakcheck --cycles 10001", "leakcheck --for 1ns"} {
		if final, _, _, _ := c.run(bad); final.Code != wire.CodeBadRequest {
			t.Errorf("%s: %+v", bad, final)
		}
	}
	close(stop)
	<-done
	stop = make(chan struct{})
	leakedForConsoleTest = nil

	// Without the leak, GC cycles alone give no leak verdict.
	churn, churned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(churned)
		for {
			select {
			case <-churn:
				return
			case <-time.After(10 * time.Millisecond):
				_ = make([]byte, 2<<20)
				runtime.GC()
			}
		}
	}()
	final, out, _, _ = c.run("leakcheck --cycles 12")
	close(churn)
	<-churned
	if final.Type != wire.EventResult || strings.Contains(out, "LIKELY") || !strings.Contains(out, "verdict: no ") {
		t.Errorf("leakcheck without a leak: %+v\n%s", final, out)
	}
	if final, _, _, _ := f.dial(t, "viewer").run("leakcheck --cycles 2"); final.Code != wire.CodeForbidden {
		t.Errorf("leakcheck as viewer: %+v", final)
	}
}

// TestLeakVerdicts walks the verdicts of leakcheck's report: no verdict
// without enough cycles, however steep the line; a leak only for a
// significant rise that matters.
func TestLeakVerdicts(t *testing.T) {
	series := func(n int, live func(i int) uint64, goroutines func(i int) int) []diag.HeapSample {
		var s []diag.HeapSample
		for i := 0; i < n; i++ {
			s = append(s, diag.HeapSample{At: time.Duration(i) * 3 * time.Second, Cycle: uint64(i), Live: live(i), Goroutines: goroutines(i)})
		}
		return s
	}
	steady := func(int) int { return 20 }
	fast := func(n, perCycle int) []diag.HeapSample { // n cycles in well under a second
		var s []diag.HeapSample
		for i := 0; i < n; i++ {
			s = append(s, diag.HeapSample{At: time.Duration(i) * 40 * time.Millisecond, Cycle: uint64(i), Live: uint64(1<<20 + i*perCycle + i%2*64), Goroutines: 7})
		}
		return s
	}
	jitter := func(i int) uint64 { return 64<<20 + uint64(i%2)*(2<<20) } // ±1 MiB around 65 MiB
	stacks := []diag.StackDelta{{Count: 30, Stack: "main.worker"}}
	tests := []struct {
		name    string
		samples []diag.HeapSample
		stacks  []diag.StackDelta
		want    string
	}{
		{"3 cycles of steep growth", series(3, func(i int) uint64 { return uint64(i) * 100 << 20 }, steady), nil, "not enough evidence: 3 GC cycles"},
		{"9 cycles", series(9, func(i int) uint64 { return uint64(i) * 100 << 20 }, steady), nil, "a verdict needs 10"},
		{"no cycle", nil, nil, "not enough evidence: 0 GC cycles"},
		{"flat", series(20, func(int) uint64 { return 64 << 20 }, steady), nil, "no steady growth"},
		{"noise", series(20, jitter, steady), nil, "no steady growth"},
		{"a tiny significant rise", series(20, func(i int) uint64 { return 64<<20 + uint64(i)*1000 }, steady), nil, "no leak worth reporting"},
		{"a few KiB over a second of rapid cycles", fast(12, 412), nil, "no leak worth reporting"},
		{"a steady rise", series(20, func(i int) uint64 { return 64<<20 + uint64(i)*(1<<20) + uint64(i%2)*(64<<10) }, steady), nil, "LIKELY LEAK: the live heap grows"},
		{"goroutines pile up", series(20, func(int) uint64 { return 64 << 20 }, func(i int) int { return 20 + 2*i }), stacks, "LIKELY GOROUTINE LEAK"},
		{"both", series(20, func(i int) uint64 { return 64<<20 + uint64(i)*(1<<20) }, func(i int) int { return 20 + 2*i }), stacks, "LIKELY LEAK: the live heap and the goroutine count both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			r := &Request{Out: &out}
			took := time.Minute
			if n := len(tt.samples); n > 0 {
				took = tt.samples[n-1].At
			}
			writeLeakReport(r, diag.FitTrend(tt.samples), tt.samples, nil, tt.stacks, took)
			verdict, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
			if !strings.Contains(verdict, tt.want) {
				t.Errorf("verdict %q; want %q\n%s", verdict, tt.want, out.String())
			}
			if strings.Contains(tt.want, "LEAK") != strings.Contains(verdict, "LEAK") {
				t.Errorf("verdict %q", verdict)
			}
		})
	}
}

// TestTwoServersOneProcess: two consoles in one process share what
// belongs to the process. A heavy command on one makes the other's heavy
// command wait its turn; closing one reverts only the settings whose last
// change it made, and the other, closing later, puts back the value from
// before either.
func TestTwoServersOneProcess(t *testing.T) {
	orig := gcPercent()
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	release, started := make(chan struct{}), make(chan struct{}, 1)
	hold := Command{Name: "hold", Summary: "hold the heavy slot", Cost: Heavy, Run: func(ctx context.Context, r *Request) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
	a := newFixture(t, func(o *Options) { o.Commands = []Command{hold} })
	b := newFixture(t, nil)
	ca, cb := a.dial(t, "admin"), b.dial(t, "admin")

	id := ca.send(wire.Request{Type: wire.TypeRun, Line: "hold"})
	<-started
	if final, _, _, _ := cb.run("gc"); final.Code != wire.CodeBusy || !strings.Contains(final.Message, "hold (run by admin)") {
		t.Fatalf("gc on the other console while hold runs: %+v; want busy naming hold", final)
	}
	close(release)
	if evs, _ := ca.read(id); evs[len(evs)-1].Type != wire.EventResult {
		t.Fatalf("hold: %+v", evs)
	}
	if final, _, _, _ := cb.run("gc"); final.Type != wire.EventResult {
		t.Fatalf("gc once the slot is free: %+v", final)
	}

	ca.run("setgc 50 --ttl 1h")
	cb.run("setgc 70 --ttl 1h")
	a.srv.Close()
	if got := gcPercent(); got != 70 {
		t.Fatalf("after the first console closed: GOGC %d; want 70, the other console's", got)
	}
	b.srv.Close()
	if got := gcPercent(); got != orig {
		t.Fatalf("after both closed: GOGC %d; want %d, from before either change", got, orig)
	}
	if want := fmt.Sprintf(`"detail":"GOGC 70%% -> %d%% (console closed)"`, orig); !strings.Contains(b.audit.String(), want) {
		t.Fatalf("the revert is not in the second console's audit (%s):\n%s", want, b.audit.String())
	}
	if strings.Contains(a.audit.String(), `"kind":"revert"`) {
		t.Fatalf("the first console reverted a setting it no longer owned:\n%s", a.audit.String())
	}
}

// TestAppCommandAPI: an application's command has the built-ins' means: a
// further permission declared in the table (Require), a confirmation for a
// pause (Confirm), the process's heavy slot (Exclusive), and streaming
// (Flush).
func TestAppCommandAPI(t *testing.T) {
	export := Command{Name: "export", Usage: "[--secrets] [--pause]", Summary: "export the cache", Requires: []string{"cmd:export-secrets"},
		Run: func(ctx context.Context, r *Request) error {
			fs := newFlagSet("export")
			secrets, pause := fs.Bool("secrets", false, ""), fs.Bool("pause", false, "")
			if err := r.ParseFlags(fs, false); err != nil {
				return err
			}
			if *secrets {
				if err := r.Require("cmd:export-secrets"); err != nil {
					return err
				}
			}
			if *pause {
				if err := r.Confirm("export --pause", 2*time.Second); err != nil {
					return err
				}
				release, err := r.Exclusive()
				if err != nil {
					return err
				}
				defer release()
			}
			fmt.Fprintln(r.Out, "part 1")
			r.Flush()
			fmt.Fprintln(r.Out, "part 2")
			return nil
		}}
	sneaky := Command{Name: "sneaky", Summary: "asks for what it did not declare", Run: func(ctx context.Context, r *Request) error {
		return r.Require("cmd:heapdump-full")
	}}
	f := newFixture(t, func(o *Options) {
		o.Commands = []Command{export, sneaky}
		enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy +
			"g, viewer, role:viewer\ng, operator, role:operator\ng, admin, role:admin\n" +
			"p, role:operator, cmd:export, run, allow\np, role:admin, cmd:export-secrets, run, allow\n"})
		if err != nil {
			t.Fatal(err)
		}
		o.Authorizer = enf
	})
	op, admin := f.dial(t, "operator"), f.dial(t, "admin")
	tests := []struct {
		c          *tconn
		line, code string
		says       string
	}{
		{op, "export", "", "part 1\npart 2"},
		{op, "export --secrets", string(wire.CodeForbidden), "cmd:export-secrets"},
		{admin, "export --secrets", "", "part 2"},
		{admin, "export --pause", string(wire.CodeBadRequest), "about 2s; run it again with --yes"},
		{admin, "export --pause --yes", "", "part 2"},
		{admin, "sneaky", string(wire.CodeInternal), "internal error"},
	}
	for _, tt := range tests {
		tt.c.t = t
		final, out, _, evs := tt.c.run(tt.line)
		if string(final.Code) != tt.code || !strings.Contains(out+final.Message, tt.says) {
			t.Errorf("%s: got %+v %q; want %q saying %q", tt.line, final, out, tt.code, tt.says)
		}
		if tt.code == "" && len(evs) < 3 { // two output events (Flush), then the result
			t.Errorf("%s: %d events; want the output flushed in two parts", tt.line, len(evs))
		}
	}
	if !strings.Contains(f.audit.String(), `"object":"cmd:export-secrets","decision":"deny"`) {
		t.Error("the refused further permission is not audited")
	}
	// A policy may name the declared object; a misspelt one is refused.
	if err := f.srv.CheckObjects([]string{"cmd:export-secrets"}); err != nil {
		t.Errorf("CheckObjects(cmd:export-secrets): %v", err)
	}
	if err := f.srv.CheckObjects([]string{"cmd:export-secret"}); err == nil {
		t.Error("CheckObjects(cmd:export-secret): got no error")
	}
	if _, err := New(Options{Authenticator: f.srv.opts.Authenticator, Authorizer: f.srv.opts.Authorizer, Audit: audit.Discard,
		Commands: []Command{{Name: "bad", Summary: "x", Requires: []string{"eval"}, Run: sneaky.Run}}}); err == nil {
		t.Error("New with Requires eval: got no error")
	}
}

// TestDumpDiskBound: the free-disk check's bound holds what a dump of a
// heap of each shape writes, pointer-dense ones included.
func TestDumpDiskBound(t *testing.T) {
	const n = 1 << 20
	tests := []struct {
		name string
		make func() any
	}{
		{"bytes", func() any { return make([]byte, 16<<20) }},
		{"strings", func() any {
			s := make([]string, n)
			for i := range s {
				s[i] = strconv.Itoa(i)
			}
			return s
		}},
		{"pointers", func() any {
			p := make([]*int, n)
			for i := range p {
				p[i] = new(int)
			}
			return p
		}},
		{"maps", func() any {
			m := make(map[int]*[2]int, n/4)
			for i := 0; i < n/4; i++ {
				m[i] = new([2]int)
			}
			return m
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep := tt.make()
			runtime.GC()
			shape := readHeapShape()
			f, err := os.CreateTemp(t.TempDir(), "dump")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			debug.WriteHeapDump(f.Fd())
			runtime.KeepAlive(keep)
			st, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("dump %d bytes, bound %d (%.2f)", st.Size(), shape.diskBytes(), float64(shape.diskBytes())/float64(st.Size()))
			if uint64(st.Size()) > shape.diskBytes() {
				t.Fatalf("the dump wrote %d bytes; the bound is %d (heap %d, %d objects, scan %d)", st.Size(), shape.diskBytes(), shape.bytes, shape.objects, shape.scan)
			}
		})
	}
}
