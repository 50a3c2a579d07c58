package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/interp"
)

// BenchmarkExportedCall measures one call of an exported function from
// evaluated code in a child: arguments out, the grant check and the real
// call in this process, the result back. The function notes when each
// call reaches it; the p50 gap between calls made back to back in one
// eval is the round trip of one call (target ≤ 100 µs). It also reports
// the child's resident set after the calls.
//
//	go test -run '^$' -bench ExportedCall -benchtime 2000x ./sandbox/
func BenchmarkExportedCall(b *testing.B) {
	var mu sync.Mutex
	var at []time.Time
	exp := new(interp.Exports).Func("bench/app", "Tick", func(n int) int {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return n + 1
	})
	p, err := New(Options{Exports: exp, CallRate: 1 << 30, CallShare: 1}) // the channel, not the limits
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	in, err := p.Start(context.Background(), Spec{Packages: []string{"bench/app"}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	src := fmt.Sprintf("n := 0; for i := 0; i < %d; i++ { n = app.Tick(n) }; n", b.N+1)
	b.ResetTimer()
	v, err := in.Eval(context.Background(), src, &bytes.Buffer{})
	b.StopTimer()
	if err != nil || v != fmt.Sprint(b.N+1) {
		b.Fatalf("got %q, %v", v, err)
	}
	gaps := make([]time.Duration, 0, len(at))
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	slices.Sort(gaps)
	b.ReportMetric(float64(gaps[len(gaps)/2].Nanoseconds())/1e3, "call-p50-µs")
	b.ReportMetric(float64(gaps[len(gaps)*99/100].Nanoseconds())/1e3, "call-p99-µs")
	b.ReportMetric(float64(in.Resident())/(1<<20), "child-RSS-MiB")
}

// BenchmarkEval compares, interleaved in one run, 1+2 evaluated by an
// interpreter in this process and by one in a child (p50s, and their
// ratio), without the console around them.
//
//	go test -run '^$' -bench 'Eval$' -benchtime 2000x ./sandbox/
func BenchmarkEval(b *testing.B) {
	p, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	child, err := p.Start(context.Background(), Spec{})
	if err != nil {
		b.Fatal(err)
	}
	defer child.Close()
	local, err := interp.New(interp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	timed := func(eval func(context.Context, string, *bytes.Buffer) (string, error)) time.Duration {
		start := time.Now()
		if v, err := eval(context.Background(), "1+2", &out); v != "3" || err != nil {
			b.Fatalf("got %q, %v", v, err)
		}
		return time.Since(start)
	}
	inChild := func(ctx context.Context, s string, w *bytes.Buffer) (string, error) { return child.Eval(ctx, s, w) }
	inProc := func(ctx context.Context, s string, w *bytes.Buffer) (string, error) { return local.Eval(ctx, s, w) }
	var c, l []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c = append(c, timed(inChild))
		l = append(l, timed(inProc))
	}
	b.StopTimer()
	slices.Sort(c)
	slices.Sort(l)
	pc, pl := c[len(c)/2], l[len(l)/2]
	b.ReportMetric(float64(pc.Nanoseconds())/1e3, "child-p50-µs")
	b.ReportMetric(float64(pl.Nanoseconds())/1e3, "in-process-p50-µs")
	b.ReportMetric(float64(pc)/float64(pl), "child/in-process")
}
