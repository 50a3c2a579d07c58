package console

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/diag"
)

const maxLeakWindow = 10 * time.Minute

// The evidence a leakcheck verdict needs. A growth trend counts when the
// line through the live heap after each GC cycle rises with a t-statistic
// of at least minLeakT (one-sided p < 0.005 from minLeakCycles cycles on:
// the t distribution's quantile for 8 degrees of freedom is 3.36), and
// by more than max(256 KiB, 2% of the mean live heap) both per minute and
// over the window watched.
const (
	minLeakCycles = 10
	minLeakT      = 3.4
	leakSamples   = 15 // with --for, at least about this many cycles: see runLeakcheck
)

const leakcheckHelp = "It records the live heap and the goroutine count right after each GC cycle, for --for (default 30s) or --cycles GC cycles, and fits a line. With --for, when no GC cycle comes for a fifteenth of the window, it runs one (runtime.GC), so a large or quiet heap still gives enough samples; --cycles waits for the application's own cycles. It says LIKELY LEAK only with at least 10 cycles and a significant rise (t-statistic 3.4 or more, p < 0.005) of more than max(256 KiB, 2% of the live heap) both per minute and over the window; otherwise it says there is not enough evidence, or no steady growth. The report names the allocation sites and goroutine stacks that grew most (--top)."

func runLeakcheck(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("leakcheck", flag.ContinueOnError)
	window := fs.Duration("for", 0, "")
	cycles := fs.Int("cycles", 0, "")
	top := fs.Int("top", 5, "")
	if err := c.ParseFlags(fs, false); err != nil {
		return err
	}
	switch {
	case *window != 0 && *cycles != 0:
		return wire.Errorf(wire.CodeBadRequest, "leakcheck: use --for or --cycles, not both")
	case *window != 0 && (*window < time.Second || *window > maxLeakWindow):
		return wire.Errorf(wire.CodeBadRequest, "leakcheck: --for must be between 1s and %s", maxLeakWindow)
	case *cycles != 0 && (*cycles < minLeakCycles || *cycles > 10000):
		return wire.Errorf(wire.CodeBadRequest, "leakcheck: --cycles must be between %d and 10000 (a verdict needs %[1]d cycles)", minLeakCycles)
	case *top < 1 || *top > 50:
		return wire.Errorf(wire.CodeBadRequest, "leakcheck: --top must be between 1 and 50")
	}
	if *window == 0 && *cycles == 0 {
		*window = 30 * time.Second
	}
	deadline := maxLeakWindow
	if *window != 0 {
		deadline = *window
	}

	heap0, err := diag.HeapProfile()
	if err != nil {
		return err
	}
	gor0, err := diag.GoroutineProfile()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	notify := diag.GCCycles(wctx)
	w := diag.NewGCWatcher()
	start := time.Now()
	var samples []diag.HeapSample
	// With --for, a heap that cycles rarely (a large or quiet one) still
	// gives enough samples: when no GC cycle has run for a fifteenth of
	// the window, leakcheck runs one.
	var force <-chan time.Time
	var forceTimer *time.Timer
	every := *window / leakSamples
	if *cycles > 0 {
		fmt.Fprintf(c.Out, "watching %d GC cycles (at most %s)…\n", *cycles, deadline)
	} else {
		fmt.Fprintf(c.Out, "watching the heap after each GC cycle for %s (running one if none comes for %s)…\n", deadline, every.Round(time.Millisecond))
		forceTimer = time.NewTimer(every)
		defer forceTimer.Stop()
		force = forceTimer.C
	}
	c.Flush()
watch:
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			break watch
		case <-force:
			runtime.GC() // its end is the next notification
			forceTimer.Reset(every)
			continue
		case <-notify:
		}
		if forceTimer != nil {
			forceTimer.Reset(every)
		}
		st := w.Read()
		s := diag.HeapSample{At: time.Since(start), Cycle: st.Cycle, Live: st.HeapLive, Goroutines: runtime.NumGoroutine()}
		samples = append(samples, s)
		fmt.Fprintf(c.Out, "  cycle %-6d live %-10s goroutines %d\n", s.Cycle, diag.FormatBytes(float64(s.Live)), s.Goroutines)
		c.Flush()
		if *cycles > 0 && len(samples) >= *cycles {
			break
		}
	}
	heap1, err := diag.HeapProfile()
	if err != nil {
		return err
	}
	gor1, err := diag.GoroutineProfile()
	if err != nil {
		return err
	}
	sites, err := diag.DiffHeap(heap0, heap1, *top)
	if err != nil {
		return err
	}
	stacks, err := diag.DiffGoroutines(gor0, gor1, *top)
	if err != nil {
		return err
	}
	writeLeakReport(c, diag.FitTrend(samples), samples, sites, stacks, time.Since(start))
	return nil
}

func writeLeakReport(c *Request, t diag.Trend, samples []diag.HeapSample, sites []diag.SiteDelta, stacks []diag.StackDelta, took time.Duration) {
	out := c.Out
	var mean float64
	for _, s := range samples {
		mean += float64(s.Live)
	}
	if len(samples) > 0 {
		mean /= float64(len(samples))
	}
	enough := len(samples) >= minLeakCycles
	heapRises := t.T >= minLeakT && t.BytesPerMinute > 0
	// A rise matters when it is large both per minute and over the window
	// watched: a few KiB over a second of rapid GC cycles is not a leak,
	// however straight its line.
	matters := max(256<<10, 0.02*mean)
	heapGrows := enough && heapRises && t.BytesPerMinute > matters && t.BytesPerMinute*took.Minutes() > matters
	var goroutineGrowth int
	if len(samples) >= 2 {
		goroutineGrowth = samples[len(samples)-1].Goroutines - samples[0].Goroutines
	}
	goroutinesGrow := enough && goroutineGrowth >= 10 && t.GoroutinesT >= minLeakT && len(stacks) > 0

	fmt.Fprintln(out)
	switch {
	case !enough:
		fmt.Fprintf(out, "verdict: not enough evidence: %d GC cycles in %s, and a verdict needs %d; run longer (--for), or under load\n",
			len(samples), took.Round(time.Second), minLeakCycles)
	case heapGrows && goroutinesGrow:
		fmt.Fprintln(out, "verdict: LIKELY LEAK: the live heap and the goroutine count both grow steadily")
	case heapGrows:
		fmt.Fprintln(out, "verdict: LIKELY LEAK: the live heap grows steadily after each GC cycle")
	case goroutinesGrow:
		fmt.Fprintln(out, "verdict: LIKELY GOROUTINE LEAK: goroutines pile up")
	case heapRises:
		fmt.Fprintln(out, "verdict: no leak worth reporting: the live heap rises, but by less than 2% of itself (or 256 KiB) per minute or over the window")
	default:
		fmt.Fprintln(out, "verdict: no steady growth seen")
	}
	fmt.Fprintf(out, "\nevidence over %d GC cycles in %s:\n", len(samples), took.Round(time.Second))
	fmt.Fprintf(out, "  live heap trend   %s per minute, %s per cycle (t %.1f, R² %.2f; mean live %s)\n",
		signedBytes(t.BytesPerMinute), signedBytes(t.BytesPerCycle), t.T, t.R2, diag.FormatBytes(mean))
	fmt.Fprintf(out, "  goroutines        %+d (%+.1f per minute)\n", goroutineGrowth, t.GoroutinesPerMinute)
	if len(sites) == 0 && heapGrows {
		fmt.Fprintln(out, "\nno allocation site stood out: the heap profile samples about one allocation per 512 KiB; run longer")
	}
	if len(sites) > 0 {
		fmt.Fprintln(out, "\ntop growing allocation sites (in-use heap, end minus start):")
		for i, s := range sites {
			fmt.Fprintf(out, "  %d. %-10s %s\n     %s\n", i+1, signedBytes(float64(s.Bytes)), s.Function, s.Stack)
		}
	}
	if len(stacks) > 0 {
		fmt.Fprintln(out, "\ngrowing goroutine stacks:")
		for _, s := range stacks {
			fmt.Fprintf(out, "  %+d  %s\n", s.Count, s.Stack)
		}
	}
	if text, ok := diag.GoroutineLeakProfile(); ok {
		fmt.Fprintf(out, "\ngoroutineleak profile:\n%s\n", strings.TrimSpace(text))
	} else {
		fmt.Fprintf(out, "\n(the goroutineleak profile is not available in this build: %s; it needs GOEXPERIMENT=goroutineleakprofile)\n", runtime.Version())
	}
	c.detail = fmt.Sprintf("leakcheck: %d cycles, heap %s/min (t %.1f, R² %.2f), goroutines %+d", len(samples), signedBytes(t.BytesPerMinute), t.T, t.R2, goroutineGrowth)
}

func signedBytes(f float64) string {
	if f < 0 {
		return "-" + diag.FormatBytes(-f)
	}
	return "+" + diag.FormatBytes(f)
}
