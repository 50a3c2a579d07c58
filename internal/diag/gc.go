package diag

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"regexp"
	"runtime"
	"runtime/metrics"
	"strings"
	"time"
)

// sentinel is an object whose finalizer runs after the garbage collector
// found it unreachable: that is, after a GC cycle completed. It holds a
// pointer so it is never a tiny allocation (tiny objects share memory
// and their finalizers may never run).
type sentinel struct {
	_ *sentinel
	_ [16]byte
}

// GCCycles sends on the returned channel once each time a GC cycle
// completes, until ctx ends. It uses a finalizer on a fresh object per
// cycle (a notification from the collector), not polling; a receiver that
// falls behind misses cycles rather than blocking the finalizer.
func GCCycles(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	var arm func()
	arm = func() {
		s := &sentinel{}
		runtime.SetFinalizer(s, func(*sentinel) {
			if ctx.Err() != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
			arm()
		})
	}
	arm()
	return ch
}

// GCStat describes the heap after a GC cycle.
type GCStat struct {
	Cycle    uint64  `json:"cycle"`
	HeapLive uint64  `json:"heap_live_bytes"`
	Goal     uint64  `json:"heap_goal_bytes"`
	PauseMax float64 `json:"pause_max_seconds"` // longest GC pause since the previous GCStat
}

// GCWatcher reads GCStats, each with the pauses since the previous read.
type GCWatcher struct {
	samples []metrics.Sample
	prev    []uint64
}

// NewGCWatcher returns a GCWatcher.
func NewGCWatcher() *GCWatcher {
	w := &GCWatcher{samples: []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/sched/pauses/total/gc:seconds"},
	}}
	w.Read()
	return w
}

// Read samples the runtime (no stop-the-world).
func (w *GCWatcher) Read() GCStat {
	metrics.Read(w.samples)
	st := GCStat{
		Cycle:    uint64Of(w.samples[0]),
		HeapLive: uint64Of(w.samples[1]),
		Goal:     uint64Of(w.samples[2]),
	}
	if w.samples[3].Value.Kind() == metrics.KindFloat64Histogram {
		h := w.samples[3].Value.Float64Histogram()
		for i, n := range h.Counts {
			if i < len(w.prev) && n > w.prev[i] {
				st.PauseMax = h.Buckets[i+1] // upper bound of the bucket
				if math.IsInf(st.PauseMax, 1) {
					st.PauseMax = h.Buckets[i]
				}
			}
		}
		w.prev = append(w.prev[:0], h.Counts...)
	}
	return st
}

func uint64Of(s metrics.Sample) uint64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return s.Value.Uint64()
	}
	return 0
}

// maxFullDump caps the buffer of WriteGoroutinesFull.
const maxFullDump = 256 << 20

// WriteGoroutinesFull writes every goroutine's full stack, usually with one
// stop-the-world pause: the buffer is sized before the runtime.Stack call
// (about 1 KiB per goroutine, where a typical stack trace takes 200 bytes)
// and grown only if that was too small (pprof's debug=2 profile starts
// small and grows by doubling, pausing the world at each try). Past 256
// MiB the dump is cut, and says so.
func WriteGoroutinesFull(w io.Writer, filter *regexp.Regexp) error {
	size := min(runtime.NumGoroutine()<<10+64<<10, maxFullDump)
	for {
		buf := make([]byte, size)
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return writeFiltered(w, buf[:n], filter)
		}
		if size >= maxFullDump {
			if err := writeFiltered(w, buf[:n], filter); err != nil {
				return err
			}
			_, err := fmt.Fprintf(w, "\n(cut at %d bytes)\n", maxFullDump)
			return err
		}
		size = min(size*2, maxFullDump)
	}
}

// PredictStackPause estimates the stop-the-world pause of
// WriteGoroutinesFull: about 4 µs per goroutine (measured at 10,000).
func PredictStackPause() time.Duration {
	return time.Millisecond + time.Duration(runtime.NumGoroutine())*4*time.Microsecond
}

// writeFiltered writes the blank-line separated blocks of text that match
// filter (all of them when filter is nil).
func writeFiltered(w io.Writer, text []byte, filter *regexp.Regexp) error {
	if filter == nil {
		_, err := w.Write(text)
		return err
	}
	for _, block := range bytes.Split(text, []byte("\n\n")) {
		if filter.Match(block) {
			if _, err := fmt.Fprintf(w, "%s\n\n", bytes.TrimRight(block, "\n")); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteGoroutinesFiltered is WriteGoroutines keeping only the groups whose
// stack matches filter.
func WriteGoroutinesFiltered(w io.Writer, filter *regexp.Regexp) error {
	var buf bytes.Buffer
	if err := WriteGoroutines(&buf); err != nil {
		return err
	}
	if filter == nil {
		_, err := w.Write(buf.Bytes())
		return err
	}
	head, rest, _ := strings.Cut(buf.String(), "\n\n")
	fmt.Fprintf(w, "%s (showing groups matching %s)\n\n", head, filter)
	return writeFiltered(w, []byte(rest), filter)
}
