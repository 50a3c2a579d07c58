package diag

import (
	"bytes"
	"fmt"
	"math"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// HeapSample is the live heap and goroutine count right after a GC cycle.
type HeapSample struct {
	At         time.Duration // since the first sample
	Cycle      uint64
	Live       uint64 // bytes marked live by that cycle
	Goroutines int
}

// Trend is a least-squares line through samples.
type Trend struct {
	BytesPerCycle       float64
	BytesPerMinute      float64
	GoroutinesPerMinute float64
	R2                  float64 // how well a line fits the live heap, 0..1
	// T and GoroutinesT are the t-statistics of the two per-minute slopes
	// (slope over its standard error): how unlikely such a slope is from
	// noise around a flat line. 0 with fewer than 3 samples; +Inf for a
	// perfect rising line.
	T, GoroutinesT float64
	Samples        int
}

// FitTrend fits live heap against GC cycle and against time, and the
// goroutine count against time.
func FitTrend(s []HeapSample) Trend {
	t := Trend{Samples: len(s)}
	if len(s) < 2 {
		return t
	}
	xs, ts, ys, gs := make([]float64, len(s)), make([]float64, len(s)), make([]float64, len(s)), make([]float64, len(s))
	for i, v := range s {
		xs[i], ts[i], ys[i], gs[i] = float64(v.Cycle), v.At.Minutes(), float64(v.Live), float64(v.Goroutines)
	}
	t.BytesPerCycle, _, _ = fit(xs, ys)
	t.BytesPerMinute, t.R2, t.T = fit(ts, ys)
	t.GoroutinesPerMinute, _, t.GoroutinesT = fit(ts, gs)
	return t
}

// fit returns the slope of the least-squares line, its R², and the
// slope's t-statistic (0 with fewer than 3 points).
func fit(x, y []float64) (slope, r2, tstat float64) {
	n := float64(len(x))
	var sx, sy, sxx, sxy, syy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
		syy += y[i] * y[i]
	}
	den := n*sxx - sx*sx
	if den <= 0 {
		return 0, 0, 0
	}
	slope = (n*sxy - sx*sy) / den
	vy := n*syy - sy*sy
	if vy <= 0 {
		return slope, 0, 0
	}
	r := (n*sxy - sx*sy) / math.Sqrt(den*vy)
	r2 = min(r*r, 1)
	if len(x) < 3 {
		return slope, r2, 0
	}
	// The slope's standard error: sqrt(SSres/(n-2) / Sxx), with
	// SSres = Syy(1-r²), Syy = vy/n and Sxx = den/n.
	se := math.Sqrt(vy * (1 - r2) / ((n - 2) * den))
	switch {
	case se > 0:
		tstat = slope / se
	case slope > 0:
		tstat = math.Inf(1)
	case slope < 0:
		tstat = math.Inf(-1)
	}
	return slope, r2, tstat
}

// SiteDelta is the growth of in-use heap at one allocation site.
type SiteDelta struct {
	Function string // the allocating function (first frame outside the runtime)
	Stack    string // a few callers, innermost first
	Bytes    int64  // in-use bytes, end minus start
	Objects  int64
}

// HeapProfile returns the current heap profile (gzip'd proto).
func HeapProfile() ([]byte, error) {
	var b bytes.Buffer
	err := pprof.Lookup("heap").WriteTo(&b, 0)
	return b.Bytes(), err
}

// GoroutineProfile returns the current goroutine profile (gzip'd proto);
// its stop-the-world pause is short (stacks are aggregated).
func GoroutineProfile() ([]byte, error) {
	var b bytes.Buffer
	err := pprof.Lookup("goroutine").WriteTo(&b, 0)
	return b.Bytes(), err
}

// DiffHeap compares two heap profiles by allocation site and returns the
// sites whose in-use bytes grew the most.
func DiffHeap(before, after []byte, top int) ([]SiteDelta, error) {
	sum := func(b []byte, sign int64, into map[string]*SiteDelta) error {
		p, err := profile.ParseData(b)
		if err != nil {
			return fmt.Errorf("diag: parse heap profile: %w", err)
		}
		space, objects := -1, -1
		for i, st := range p.SampleType {
			switch st.Type {
			case "inuse_space":
				space = i
			case "inuse_objects":
				objects = i
			}
		}
		if space < 0 {
			return fmt.Errorf("diag: heap profile has no inuse_space")
		}
		for _, s := range p.Sample {
			fn, stack := site(s)
			d := into[stack]
			if d == nil {
				d = &SiteDelta{Function: fn, Stack: stack}
				into[stack] = d
			}
			d.Bytes += sign * s.Value[space]
			if objects >= 0 {
				d.Objects += sign * s.Value[objects]
			}
		}
		return nil
	}
	sites := map[string]*SiteDelta{}
	if err := sum(before, -1, sites); err != nil {
		return nil, err
	}
	if err := sum(after, 1, sites); err != nil {
		return nil, err
	}
	out := make([]SiteDelta, 0, len(sites))
	for _, d := range sites {
		if d.Bytes > 0 {
			out = append(out, *d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	if len(out) > top {
		out = out[:top]
	}
	return out, nil
}

// site names a sample's allocation site: the first function outside the
// runtime, and up to four frames from there.
func site(s *profile.Sample) (fn, stack string) {
	var frames []string
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			name := line.Function.Name
			if len(frames) == 0 && (strings.HasPrefix(name, "runtime.") || strings.HasPrefix(name, "internal/")) {
				continue
			}
			frames = append(frames, fmt.Sprintf("%s (%s:%d)", name, shortFile(line.Function.Filename), line.Line))
		}
	}
	if len(frames) == 0 {
		return "(runtime)", "(runtime)"
	}
	fn, _, _ = strings.Cut(frames[0], " (")
	if len(frames) > 4 {
		frames = frames[:4]
	}
	return fn, strings.Join(frames, " ← ")
}

func shortFile(f string) string {
	parts := strings.Split(f, "/")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, "/")
}

// StackDelta is the growth of goroutines parked at one stack.
type StackDelta struct {
	Stack string
	Count int64 // end minus start
}

// DiffGoroutines compares two goroutine profiles by stack and returns the
// stacks whose goroutine count grew the most.
func DiffGoroutines(before, after []byte, top int) ([]StackDelta, error) {
	count := func(b []byte, sign int64, into map[string]int64) error {
		p, err := profile.ParseData(b)
		if err != nil {
			return fmt.Errorf("diag: parse goroutine profile: %w", err)
		}
		for _, s := range p.Sample {
			var fns []string
			for _, loc := range s.Location {
				for _, line := range loc.Line {
					if line.Function != nil && !strings.HasPrefix(line.Function.Name, "runtime.") {
						fns = append(fns, line.Function.Name)
					}
				}
			}
			if len(fns) > 5 {
				fns = fns[:5]
			}
			into[strings.Join(fns, " ← ")] += sign * s.Value[0]
		}
		return nil
	}
	stacks := map[string]int64{}
	if err := count(before, -1, stacks); err != nil {
		return nil, err
	}
	if err := count(after, 1, stacks); err != nil {
		return nil, err
	}
	var out []StackDelta
	for st, n := range stacks {
		if n > 0 {
			out = append(out, StackDelta{Stack: st, Count: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	if len(out) > top {
		out = out[:top]
	}
	return out, nil
}

// GoroutineLeakProfile returns the runtime's goroutine leak profile when
// this Go has one (it reports goroutines blocked forever on unreachable
// channels), else ok false.
func GoroutineLeakProfile() (text string, ok bool) {
	p := pprof.Lookup("goroutineleak")
	if p == nil {
		return "", false
	}
	var b bytes.Buffer
	if err := p.WriteTo(&b, 1); err != nil {
		return "", false
	}
	return b.String(), true
}
