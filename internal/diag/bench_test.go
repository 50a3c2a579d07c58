package diag

import (
	"io"
	"runtime/metrics"
	"runtime/pprof"
	"testing"
)

// BenchmarkMemStats is the cost of the memstats command's work.
func BenchmarkMemStats(b *testing.B) {
	b.Run("read", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ReadMemStats()
		}
	})
	b.Run("read+format", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			WriteStats(io.Discard, ReadMemStats())
		}
	})
}

// BenchmarkGoroutinePauses reports the stop-the-world pauses (count, and
// the upper bound of the longest one, from /sched/pauses/total/other) of
// each goroutine dump with 10,000 goroutines, in one run:
//
//	grouped   WriteGoroutines (the default of the goroutines command)
//	full      WriteGoroutinesFull (one pre-sized runtime.Stack)
//	debug2    pprof's goroutine profile with debug=2 (the baseline)
//
//	go test -run '^$' -bench GoroutinePauses -benchtime 5x ./diag/
func BenchmarkGoroutinePauses(b *testing.B) {
	stop := make(chan struct{})
	for i := 0; i < 10000; i++ {
		go parkedForDiagTest(stop)
	}
	defer close(stop)
	for _, c := range []struct {
		name string
		fn   func(io.Writer) error
	}{
		{"grouped", WriteGoroutines},
		{"full", func(w io.Writer) error { return WriteGoroutinesFull(w, nil) }},
		{"debug2", func(w io.Writer) error { return pprof.Lookup("goroutine").WriteTo(w, 2) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var pauses, maxPause float64
			for i := 0; i < b.N; i++ {
				before := pauseCounts()
				if err := c.fn(io.Discard); err != nil {
					b.Fatal(err)
				}
				n, longest := pauseDelta(before, pauseCounts())
				pauses += n
				maxPause = max(maxPause, longest)
			}
			b.ReportMetric(pauses/float64(b.N), "pauses/op")
			b.ReportMetric(maxPause*1e3, "max-pause-ms")
		})
	}
}

type histogram struct {
	counts  []uint64
	buckets []float64
}

func pauseCounts() histogram {
	s := []metrics.Sample{{Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	return histogram{counts: append([]uint64(nil), h.Counts...), buckets: h.Buckets}
}

// pauseDelta returns how many pauses happened between two readings and
// the upper bound of the bucket of the longest.
func pauseDelta(a, b histogram) (n, longest float64) {
	for i := range b.counts {
		if d := b.counts[i] - a.counts[i]; d > 0 {
			n += float64(d)
			longest = b.buckets[i+1]
		}
	}
	return n, longest
}
