package console

import (
	"encoding/json"
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
	"github.com/opsrepl/opsrepl/console/wire"
)

// BenchmarkRoundTrip measures, in one run and interleaved so that machine
// noise hits all three alike, the p50 round trip over loopback of:
//
//	echo      a bare gorilla/websocket echo of a request-sized frame (baseline)
//	memstats  the memstats command on an open session
//	eval      1+2 on an open session (interpreter already built)
//
// with the audit log writing to a file. It reports each p50 in µs and the
// ratios to the echo (targets: eval ≤ 3×, memstats ≤ 4×).
//
//	go test -run '^$' -bench RoundTrip -benchtime 2000x ./console/
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
	ed := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}}
	ec, _, err := ed.Dial("ws"+strings.TrimPrefix(echo.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ec.Close()

	auditLog, err := audit.Open(audit.Options{Path: filepath.Join(b.TempDir(), "audit.jsonl")})
	if err != nil {
		b.Fatal(err)
	}
	defer auditLog.Close()
	t := &testing.T{}
	f := newFixture(t, func(o *Options) { o.Audit = auditLog })
	defer f.srv.Close()
	defer f.hs.Close()
	admin := dialBench(b, f, "admin")

	frame, _ := json.Marshal(wire.Request{Type: wire.TypeRun, ID: 1, Line: "memstats"})
	roundTrip := func(line string) time.Duration {
		admin.next++
		id := admin.next
		req, _ := json.Marshal(wire.Request{Type: wire.TypeRun, ID: id, Line: line})
		start := time.Now()
		admin.ws.WriteMessage(websocket.TextMessage, req)
		for {
			_, msg, err := admin.ws.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			ev, _ := wire.DecodeEvent(msg)
			if ev.ID == id && ev.Final() {
				if ev.Type != wire.EventResult {
					b.Fatalf("%s: %+v", line, ev)
				}
				return time.Since(start)
			}
		}
	}
	echoTrip := func() time.Duration {
		start := time.Now()
		ec.WriteMessage(websocket.TextMessage, frame)
		if _, _, err := ec.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	roundTrip("1+2") // build the interpreter outside the measurement
	for i := 0; i < 50; i++ {
		echoTrip()
		roundTrip("memstats")
		roundTrip("1+2")
	}
	var e, m, v []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e = append(e, echoTrip())
		m = append(m, roundTrip(benchLineM))
		v = append(v, roundTrip(benchLineV))
	}
	b.StopTimer()
	pe, pm, pv := p50(e), p50(m), p50(v)
	b.ReportMetric(us(pe), "echo-p50-µs")
	b.ReportMetric(us(pm), "memstats-p50-µs")
	b.ReportMetric(us(pv), "eval-p50-µs")
	b.ReportMetric(float64(pm)/float64(pe), "memstats/echo")
	b.ReportMetric(float64(pv)/float64(pe), "eval/echo")
}

func dialBench(b *testing.B, f *fixture, subject string) *client {
	d := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}}
	ws, _, err := d.Dial(f.url, http.Header{"Authorization": {"Bearer " + testTokens[subject]}})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := ws.ReadMessage(); err != nil { // hello
		b.Fatal(err)
	}
	return &client{ws: ws}
}

func p50(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

var benchLineM, benchLineV = "memstats", "1+2"

// BenchmarkFirstEval measures the first 1+2 of a fresh session: the
// interpreter is built then (target p50 ≤ 10 ms).
//
//	go test -run '^$' -bench FirstEval -benchtime 100x ./console/
func BenchmarkFirstEval(b *testing.B) {
	f := newFixture(&testing.T{}, nil)
	defer f.srv.Close()
	defer f.hs.Close()
	var d []time.Duration
	for i := 0; i < b.N; i++ {
		c := dialBench(b, f, "admin")
		start := time.Now()
		req, _ := json.Marshal(wire.Request{Type: wire.TypeRun, ID: 1, Line: "1+2"})
		c.ws.WriteMessage(websocket.TextMessage, req)
		for {
			_, msg, err := c.ws.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			if ev, _ := wire.DecodeEvent(msg); ev.ID == 1 && ev.Final() {
				break
			}
		}
		d = append(d, time.Since(start))
		c.ws.Close()
	}
	b.ReportMetric(float64(p50(d).Microseconds())/1000, "first-eval-p50-ms")
}

// BenchmarkSessionMemory reports the heap retained by an idle session
// without an interpreter, and with one after a single eval (targets:
// 64 KiB and 1.5 MiB).
//
//	go test -run '^$' -bench SessionMemory -benchtime 1x ./console/
func BenchmarkSessionMemory(b *testing.B) {
	const n = 40
	f := newFixture(&testing.T{}, nil)
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
		base := heap()
		cs := make([]*client, n)
		for j := range cs {
			cs[j] = dialBench(b, f, "admin")
		}
		idle := heap()
		for j, c := range cs {
			c.t = &testing.T{}
			c.next = 0
			if final, _, _, _ := c.run("1+2"); final.Value != "3" {
				b.Fatalf("session %d: %+v", j, final)
			}
		}
		withInterp := heap()
		b.ReportMetric(float64(idle-base)/n/1024, "idle-KiB/session")
		b.ReportMetric(float64(withInterp-base)/n/1024, "with-interp-KiB/session")
		for _, c := range cs {
			c.ws.Close()
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
	none := newFixture(t, func(o *Options) { o.Audit = nil; o.RequestRate = Rate{PerSecond: 1e9, Burst: 1 << 30} })
	defer durable.srv.Close()
	defer none.srv.Close()
	defer durable.hs.Close()
	defer none.hs.Close()
	cd, cn := dialBench(b, durable, "viewer"), dialBench(b, none, "viewer")
	trip := func(c *client) time.Duration {
		c.next++
		req, _ := json.Marshal(wire.Request{Type: wire.TypeRun, ID: c.next, Line: "whoami"})
		start := time.Now()
		c.ws.WriteMessage(websocket.TextMessage, req)
		for {
			_, msg, err := c.ws.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			if ev, _ := wire.DecodeEvent(msg); ev.ID == c.next && ev.Final() {
				return time.Since(start)
			}
		}
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
