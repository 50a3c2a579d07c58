package interp

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// BenchmarkEval is the floor under the console's eval round trip.
//
//	go test -run '^$' -bench Eval ./interp/
func BenchmarkEval(b *testing.B) {
	in, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("prepare", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			in.ss.prepare(chunk{src: "1+2"}, in.allowed, limits{maxUnits: 1 << 24})
		}
	})
	b.Run("eval", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if v, err := in.Eval(ctx, "1+2", io.Discard); err != nil || v != "3" {
				b.Fatal(v, err)
			}
		}
	})
	b.Run("yaegi", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			in.yi.EvalWithContext(ctx, "1+2")
		}
	})
}

// BenchmarkNew is the cost of a session's first eval.
func BenchmarkNew(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := New(Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFib compares a call-heavy interpreted function with the
// guards (call-depth counting in every function) against the same
// function given to yaegi without them, in one run.
//
//	go test -run '^$' -bench Fib -benchtime 20x ./interp/
func BenchmarkFib(b *testing.B) {
	in, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const fib = "func fib(n int) int { if n < 2 { return n }; return fib(n-1) + fib(n-2) }"
	if _, err := in.Eval(ctx, fib, io.Discard); err != nil {
		b.Fatal(err)
	}
	if _, err := in.yi.Eval(strings.Replace(fib, "fib", "rawfib", -1)); err != nil {
		b.Fatal(err)
	}
	var guarded, raw time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if v, err := in.Eval(ctx, "fib(20)", io.Discard); err != nil || v != "6765" {
			b.Fatal(v, err)
		}
		guarded += time.Since(start)
		start = time.Now()
		if _, err := in.yi.Eval("rawfib(20)"); err != nil {
			b.Fatal(err)
		}
		raw += time.Since(start)
	}
	b.ReportMetric(float64(guarded.Milliseconds())/float64(b.N), "guarded-ms")
	b.ReportMetric(float64(raw.Milliseconds())/float64(b.N), "unguarded-ms")
	b.ReportMetric(float64(guarded)/float64(raw), "slowdown")
}
