package console

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/loopback"
	"github.com/opsrepl/opsrepl/sandbox"
)

// BenchmarkRoundTrip measures, in one run and interleaved so that machine
// noise hits all alike, the p50 round trip over loopback of:
//
//	echo       a bare gorilla/websocket echo of a request-sized frame (baseline)
//	whoami     a command that does nothing but answer (target ≤ 2× echo)
//	memstats   the memstats command (target ≤ 4× echo)
//	eval       1+2, evaluated in the session's child process
//	in-process 1+2 on a console with InProcessEval
//
// whoami and memstats are measured twice: through package client, and
// over a bare WebSocket driven as the echo is (bare-), which is the
// console's own cost.
//
// all on an open session whose console writes no audit log: this is the
// pipeline's own cost. What the durable audit adds (an fsync of each
// intent record before its request runs) is BenchmarkAuditRoundTrip's.
// It reports each p50 in µs and the ratios to the echo, and eval to
// in-process (what the process boundary costs).
//
//	go test -run '^$' -bench RoundTrip -benchtime 3000x ./console/
func BenchmarkRoundTrip(b *testing.B) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{wire.Subprotocol}}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}))
	defer echo.Close()
	// The baseline is a bare WebSocket to an echo server, not a console:
	// raw on purpose.
	ed := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}}
	ec, _, err := ed.Dial("ws"+strings.TrimPrefix(echo.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ec.Close()

	t := &testing.T{}
	fast := Rate{PerSecond: 1e6, Burst: 1e6} // the session's request rate is not what is measured
	f := newFixture(t, func(o *Options) { o.Audit = audit.Discard; o.RequestRate = fast })
	defer f.srv.Close()
	defer f.hs.Close()
	admin := dialBench(b, f, "admin")
	// A bare WebSocket to the console, driven as the echo is: what a
	// client written from PROTOCOL.md sees, without package client's
	// reading goroutine.
	rh := http.Header{"Authorization": {"Bearer " + testTokens["admin"]}}
	rc, _, err := ed.Dial(f.url, rh)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	rc.ReadMessage() // hello
	rawID := uint64(1 << 40)
	rawTrip := func(line string) time.Duration {
		rawID++
		req, _ := json.Marshal(wire.Request{Type: wire.TypeRun, ID: rawID, Line: line})
		start := time.Now()
		rc.WriteMessage(websocket.TextMessage, req)
		for {
			_, msg, err := rc.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			ev, err := wire.DecodeEvent(msg)
			if err != nil || ev.ID == rawID && ev.Type == wire.EventError {
				b.Fatalf("%s: %+v %v", line, ev, err)
			}
			if ev.ID == rawID && ev.Final() {
				return time.Since(start)
			}
		}
	}
	fin := newFixture(t, func(o *Options) { o.Audit = audit.Discard; o.InProcessEval = true; o.RequestRate = fast })
	defer fin.srv.Close()
	defer fin.hs.Close()
	local := dialBench(b, fin, "admin")

	frame, _ := json.Marshal(wire.Request{Type: wire.TypeRun, ID: 1, Line: "memstats"})
	roundTrip := func(c *tconn, line string) time.Duration {
		start := time.Now()
		ev, err := c.c.Run(context.Background(), line, client.Handler{})
		if err != nil || ev.Type != wire.EventResult {
			b.Fatalf("%s: %+v %v", line, ev, err)
		}
		return time.Since(start)
	}
	echoTrip := func() time.Duration {
		start := time.Now()
		ec.WriteMessage(websocket.TextMessage, frame)
		if _, _, err := ec.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	roundTrip(admin, "1+2") // build the interpreters outside the measurement
	roundTrip(local, "1+2")
	for i := 0; i < 50; i++ {
		echoTrip()
		roundTrip(admin, "whoami")
		roundTrip(admin, "memstats")
		roundTrip(admin, "1+2")
		roundTrip(local, "1+2")
	}
	// Two rounds: the commands and the child's eval against the echo;
	// then the child's eval against the in-process one, whose interpreter
	// allocates in this process (its garbage collection would fall on
	// the other measurements).
	var e, w, m, rw, rm, v, v2, l []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e = append(e, echoTrip())
		w = append(w, roundTrip(admin, "whoami"))
		m = append(m, roundTrip(admin, benchLineM))
		rw = append(rw, rawTrip("whoami"))
		rm = append(rm, rawTrip(benchLineM))
		v = append(v, roundTrip(admin, benchLineV))
	}
	for i := 0; i < b.N; i++ {
		v2 = append(v2, roundTrip(admin, benchLineV))
		l = append(l, roundTrip(local, benchLineV))
	}
	b.StopTimer()
	pe, pw, pm, pv, pl := p50(e), p50(w), p50(m), p50(v), p50(l)
	b.ReportMetric(us(pe), "echo-p50-µs")
	b.ReportMetric(us(pw), "whoami-p50-µs")
	b.ReportMetric(float64(pw)/float64(pe), "whoami/echo")
	b.ReportMetric(float64(p50(rw))/float64(pe), "bare-whoami/echo")
	b.ReportMetric(float64(p50(rm))/float64(pe), "bare-memstats/echo")
	b.ReportMetric(us(pm), "memstats-p50-µs")
	b.ReportMetric(us(pv), "eval-p50-µs")
	b.ReportMetric(us(pl), "in-process-eval-p50-µs")
	b.ReportMetric(float64(pm)/float64(pe), "memstats/echo")
	b.ReportMetric(float64(pv)/float64(pe), "eval/echo")
	b.ReportMetric(float64(p50(v2))/float64(pl), "eval/in-process")
}

func dialBench(b *testing.B, f *fixture, subject string) *tconn {
	c, err := client.Dial(context.Background(), f.url, client.Options{Token: testTokens[subject], ThrottleWait: -1})
	if err != nil {
		b.Fatal(err)
	}
	return &tconn{t: &testing.T{}, c: c, hello: c.Hello(), reqs: map[uint64]*client.Request{}, files: map[uint64]*bytes.Buffer{}}
}

func p50(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

var benchLineM, benchLineV = "memstats", "1+2"

// BenchmarkFirstEval measures the first 1+2 of a fresh session: its
// interpreter is built then, in a spare child process already started
// (target p50 ≤ 50 ms), and, for comparison, in this process with
// InProcessEval.
//
//	go test -run '^$' -bench FirstEval -benchtime 100x ./console/
func BenchmarkFirstEval(b *testing.B) {
	many := func(o *Options) { o.HandshakeRate = Rate{PerSecond: 1e6, Burst: 1e6} } // not what is measured
	f := newFixture(&testing.T{}, many)
	defer f.srv.Close()
	defer f.hs.Close()
	fin := newFixture(&testing.T{}, func(o *Options) { many(o); o.InProcessEval = true })
	defer fin.srv.Close()
	defer fin.hs.Close()
	first := func(f *fixture) time.Duration {
		c := dialBench(b, f, "admin")
		defer c.c.Close()
		if f.srv.pool != nil { // measure with the spare ready, as a session finds it
			waitBench(b, func() bool { st := f.srv.pool.Stats(); return st.Ready == 1 && st.Starting == 0 })
		}
		start := time.Now()
		if ev, err := c.c.Run(context.Background(), "1+2", client.Handler{}); err != nil || ev.Type != wire.EventResult {
			b.Fatalf("first eval: %+v %v", ev, err)
		}
		return time.Since(start)
	}
	var d, l []time.Duration
	for i := 0; i < b.N; i++ {
		d = append(d, first(f))
		l = append(l, first(fin))
	}
	b.ReportMetric(float64(p50(d).Microseconds())/1000, "first-eval-p50-ms")
	b.ReportMetric(float64(p50(l).Microseconds())/1000, "in-process-first-eval-p50-ms")
}

func waitBench(b *testing.B, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkSessionMemory reports the heap this process holds for an idle
// session (target 64 KiB) and for one that has evaluated (its interpreter
// is in a child: what is left here is the channel), and the resident set
// of each session's child process.
//
//	go test -run '^$' -bench SessionMemory -benchtime 1x ./console/
func BenchmarkSessionMemory(b *testing.B) {
	const n = 8
	f := newFixture(&testing.T{}, func(o *Options) {
		o.Sandbox.MaxChildren = n + 1
		o.HandshakeRate = Rate{PerSecond: 1e6, Burst: 1e6}
		o.MaxSessionsPerSubject = 1000 // closed sessions end asynchronously
	})
	defer f.srv.Close()
	defer f.hs.Close()
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for i := 0; i < b.N; i++ {
		waitBench(b, func() bool { return f.srv.sessionCount() == 0 }) // the last round's sessions are gone
		base := heap()
		cs := make([]*tconn, n)
		for j := range cs {
			cs[j] = dialBench(b, f, "admin")
		}
		idle := heap()
		for j, c := range cs {
			if final, _, _, _ := c.run("1+2"); final.Value != "3" {
				b.Fatalf("session %d: %+v", j, final)
			}
		}
		withInterp := heap()
		var rss uint64
		f.srv.mu.Lock()
		for _, s := range f.srv.sessions {
			if in, ok := s.interp.(*sandbox.Interpreter); ok {
				rss += in.Resident()
			}
		}
		f.srv.mu.Unlock()
		b.ReportMetric(float64(int64(idle)-int64(base))/n/1024, "idle-KiB/session")
		b.ReportMetric(float64(int64(withInterp)-int64(base))/n/1024, "with-interp-KiB/session")
		b.ReportMetric(float64(rss)/n/(1<<20), "child-RSS-MiB/session")
		for _, c := range cs {
			c.c.Close()
		}
	}
}

// BenchmarkAuditRoundTrip compares, interleaved in one run, the round trip
// of whoami on a session whose console writes the durable audit (intent
// fsynced before each request, then the outcome) to a file, against the
// same with no audit log.
//
//	go test -run '^$' -bench AuditRoundTrip -benchtime 2000x ./console/
func BenchmarkAuditRoundTrip(b *testing.B) {
	log, err := audit.Open(audit.Options{Path: filepath.Join(b.TempDir(), "audit.jsonl")})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	t := &testing.T{}
	durable := newFixture(t, func(o *Options) { o.Audit = log; o.RequestRate = Rate{PerSecond: 1e9, Burst: 1 << 30} })
	none := newFixture(t, func(o *Options) { o.Audit = audit.Discard; o.RequestRate = Rate{PerSecond: 1e9, Burst: 1 << 30} })
	defer durable.srv.Close()
	defer none.srv.Close()
	defer durable.hs.Close()
	defer none.hs.Close()
	cd, cn := dialBench(b, durable, "viewer"), dialBench(b, none, "viewer")
	trip := func(c *tconn) time.Duration {
		start := time.Now()
		if _, err := c.c.Run(context.Background(), "whoami", client.Handler{}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for i := 0; i < 50; i++ {
		trip(cd)
		trip(cn)
	}
	var d, n []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d = append(d, trip(cd))
		n = append(n, trip(cn))
	}
	b.StopTimer()
	p99 := func(s []time.Duration) time.Duration {
		s = slices.Clone(s)
		slices.Sort(s)
		return s[len(s)*99/100]
	}
	b.ReportMetric(us(p50(d)), "durable-p50-µs")
	b.ReportMetric(us(p50(n)), "no-audit-p50-µs")
	b.ReportMetric(float64(p50(d))/float64(p50(n)), "durable/no-audit-p50")
	b.ReportMetric(float64(p99(d))/float64(p99(n)), "durable/no-audit-p99")
}

// BenchmarkTransfer measures a 256 MiB file transfer through a console
// session to package client (size and SHA-256 checked as the bytes
// arrive), against a raw loopback TCP copy of the same bytes, interleaved.
// It reports both rates in MiB/s and their ratio (target ≥ 0.5).
//
//	go test -run '^$' -bench Transfer -benchtime 5x ./console/
func BenchmarkTransfer(b *testing.B) {
	const size = 256 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7919 >> 8)
	}
	sum := sha256Hex(data)
	blob := Command{Name: "blob", Summary: "sends a test file", Run: func(ctx context.Context, r *Request) error {
		return r.SendStream(ctx, "blob.bin", size, sum, bytes.NewReader(data))
	}}
	f := newFixture(&testing.T{}, func(o *Options) { o.Audit = audit.Discard; o.Commands = []Command{blob} })
	defer f.srv.Close()
	defer f.hs.Close()
	c := dialBench(b, f, "admin")
	defer c.c.Close()
	viaConsole := func() float64 {
		var start, end time.Time
		_, err := c.c.Run(context.Background(), "blob", client.Handler{File: func(wire.Event) (client.Sink, error) {
			start = time.Now()
			return endSink{client.WriterSink(io.Discard), &end}, nil
		}})
		if err != nil {
			b.Fatal(err)
		}
		return size / end.Sub(start).Seconds() / (1 << 20)
	}
	var cr, rr []float64
	for i := 0; i < b.N; i++ {
		cr = append(cr, viaConsole())
		r, err := loopback.Rate(data, false, 1)
		if err != nil {
			b.Fatal(err)
		}
		rr = append(rr, r)
	}
	slices.Sort(cr)
	slices.Sort(rr)
	b.ReportMetric(cr[len(cr)/2], "console-MiB/s")
	b.ReportMetric(rr[len(rr)/2], "raw-TCP-MiB/s")
	b.ReportMetric(cr[len(cr)/2]/rr[len(rr)/2], "console/raw")
}

// endSink notes when its transfer ends (at file_end, once checked).
type endSink struct {
	client.Sink
	end *time.Time
}

func (s endSink) Finish(err error) error {
	*s.end = time.Now()
	return s.Sink.Finish(err)
}
