package diag

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"
)

// Stat is one runtime figure.
type Stat struct {
	Name   string  `json:"name"`   // human label
	Metric string  `json:"metric"` // runtime/metrics key
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"` // bytes, count, percent, seconds
}

var memMetrics = []struct{ name, key, unit string }{
	{"heap live (marked at last GC)", "/gc/heap/live:bytes", "bytes"},
	{"heap in use (objects)", "/memory/classes/heap/objects:bytes", "bytes"},
	{"heap goal", "/gc/heap/goal:bytes", "bytes"},
	{"heap free (not released)", "/memory/classes/heap/free:bytes", "bytes"},
	{"heap released to OS", "/memory/classes/heap/released:bytes", "bytes"},
	{"goroutine stacks", "/memory/classes/heap/stacks:bytes", "bytes"},
	{"total mapped from OS", "/memory/classes/total:bytes", "bytes"},
	{"allocated since start", "/gc/heap/allocs:bytes", "bytes"},
	{"live objects", "/gc/heap/objects:objects", "count"},
	{"goroutines", "/sched/goroutines:goroutines", "count"},
	{"GC cycles", "/gc/cycles/total:gc-cycles", "count"},
	{"GOGC", "/gc/gogc:percent", "percent"},
	{"GOMEMLIMIT", "/gc/gomemlimit:bytes", "bytes"},
	{"GC CPU time", "/cpu/classes/gc/total:cpu-seconds", "seconds"},
	{"longest GC pause (since start)", "/sched/pauses/total/gc:seconds", "seconds"},
}

// ReadMemStats samples memory and GC figures from runtime/metrics. It does
// not stop the world. Figures the running Go version does not provide are
// left out.
func ReadMemStats() []Stat {
	samples := make([]metrics.Sample, len(memMetrics))
	for i, m := range memMetrics {
		samples[i].Name = m.key
	}
	metrics.Read(samples)
	out := make([]Stat, 0, len(samples))
	for i, s := range samples {
		var v float64
		switch s.Value.Kind() {
		case metrics.KindUint64:
			v = float64(s.Value.Uint64())
		case metrics.KindFloat64:
			v = s.Value.Float64()
		case metrics.KindFloat64Histogram:
			v = histogramMax(s.Value.Float64Histogram())
		default:
			continue
		}
		out = append(out, Stat{Name: memMetrics[i].name, Metric: s.Name, Value: v, Unit: memMetrics[i].unit})
	}
	return out
}

// histogramMax returns the upper bound of h's highest non-empty bucket
// (its lower bound when that is the open-ended last one), or 0.
func histogramMax(h *metrics.Float64Histogram) float64 {
	for i := len(h.Counts) - 1; i >= 0; i-- {
		if h.Counts[i] > 0 {
			if math.IsInf(h.Buckets[i+1], 1) {
				return h.Buckets[i]
			}
			return h.Buckets[i+1]
		}
	}
	return 0
}

// Lookup returns the value of the stat with the given metric key.
func Lookup(stats []Stat, metric string) (float64, bool) {
	for _, s := range stats {
		if s.Metric == metric {
			return s.Value, true
		}
	}
	return 0, false
}

// WriteStats writes stats as an aligned table, in one write.
func WriteStats(w io.Writer, stats []Stat) error {
	values := make([]string, len(stats))
	nameW, valW := 0, 0
	for i, s := range stats {
		values[i] = FormatValue(s.Value, s.Unit)
		nameW, valW = max(nameW, len(s.Name)), max(valW, len(values[i]))
	}
	var b strings.Builder
	b.Grow(len(stats) * (nameW + valW + 48))
	for i, s := range stats {
		b.WriteString(s.Name)
		b.WriteString(strings.Repeat(" ", nameW-len(s.Name)+2))
		b.WriteString(values[i])
		b.WriteString(strings.Repeat(" ", valW-len(values[i])+2))
		b.WriteString(s.Metric)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatValue renders v in unit for people: 12.5 MiB, 1,234, 0.012 s.
func FormatValue(v float64, unit string) string {
	switch unit {
	case "bytes":
		if v >= math.MaxInt64 {
			return "unlimited"
		}
		return FormatBytes(v)
	case "percent":
		if v < 0 {
			return "off"
		}
		return fmt.Sprintf("%.0f%%", v)
	case "seconds":
		if v > 0 && v < 0.1 {
			return time.Duration(v * 1e9).Round(time.Microsecond).String()
		}
		return fmt.Sprintf("%.3f s", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// FormatBytes renders n bytes with a binary unit.
func FormatBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// WriteGoroutines writes every goroutine's stack, grouped by identical
// stack, with the number of goroutines sharing it, most common first. It
// uses the aggregated goroutine profile, whose stop-the-world pause stays
// well under a millisecond even with many goroutines.
func WriteGoroutines(w io.Writer) error {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return fmt.Errorf("diag: goroutine profile: %w", err)
	}
	return regroup(w, &buf)
}

// regroup rewrites the debug=1 goroutine profile in a form meant for
// people: a count per distinct stack, then its frames, without addresses.
func regroup(w io.Writer, r io.Reader) error {
	bw := bufio.NewWriter(w)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "goroutine profile: total "):
			fmt.Fprintf(bw, "%s goroutines\n", strings.TrimPrefix(line, "goroutine profile: total "))
		case strings.HasPrefix(line, "# labels:"):
			fmt.Fprintf(bw, "    labels %s\n", strings.TrimSpace(strings.TrimPrefix(line, "# labels:")))
		case strings.HasPrefix(line, "#\t"):
			// "#\t0x4a1b2c\tpkg.fn+0x2c\t\t/path/file.go:123"
			f := strings.Fields(line)
			if len(f) >= 4 {
				fn := f[2]
				if i := strings.LastIndex(fn, "+0x"); i > 0 {
					fn = fn[:i]
				}
				fmt.Fprintf(bw, "    %s\n        %s\n", fn, strings.Join(f[3:], " "))
			}
		case strings.Contains(line, " @ "):
			n, _, _ := strings.Cut(line, " @ ")
			word := "goroutines"
			if n == "1" {
				word = "goroutine"
			}
			fmt.Fprintf(bw, "\n%s %s with this stack:\n", n, word)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("diag: goroutine profile: %w", err)
	}
	return bw.Flush()
}

// WriteHeapProfile writes the heap profile as gzip-compressed protocol
// buffers, the format go tool pprof reads. It does not stop the world. The
// figures describe the heap as of the most recently completed GC cycle.
func WriteHeapProfile(w io.Writer) error {
	if err := pprof.Lookup("heap").WriteTo(w, 0); err != nil {
		return fmt.Errorf("diag: heap profile: %w", err)
	}
	return nil
}
