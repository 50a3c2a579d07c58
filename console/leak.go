package console

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/diag"
)

const maxLeakWindow = 10 * time.Minute

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
	case *cycles != 0 && (*cycles < 3 || *cycles > 10000):
		return wire.Errorf(wire.CodeBadRequest, "leakcheck: --cycles must be between 3 and 10000 (a trend needs three points)")
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
	if *cycles > 0 {
		fmt.Fprintf(c.Out, "watching %d GC cycles (at most %s)…\n", *cycles, deadline)
	} else {
		fmt.Fprintf(c.Out, "watching the heap after each GC cycle for %s…\n", deadline)
	}
	c.flush()
watch:
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			break watch
		case <-notify:
		}
		st := w.Read()
		s := diag.HeapSample{At: time.Since(start), Cycle: st.Cycle, Live: st.HeapLive, Goroutines: runtime.NumGoroutine()}
		samples = append(samples, s)
		fmt.Fprintf(c.Out, "  cycle %-6d live %-10s goroutines %d\n", s.Cycle, diag.FormatBytes(float64(s.Live)), s.Goroutines)
		c.flush()
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
	heapGrows := len(samples) >= 3 && t.R2 >= 0.6 && t.BytesPerMinute > max(256<<10, 0.02*mean)
	var goroutineGrowth int
	if len(samples) >= 2 {
		goroutineGrowth = samples[len(samples)-1].Goroutines - samples[0].Goroutines
	}
	goroutinesGrow := goroutineGrowth >= 10 && t.GoroutinesPerMinute > 0 && len(stacks) > 0

	fmt.Fprintln(out)
	switch {
	case len(samples) < 3:
		fmt.Fprintf(out, "verdict: not enough GC cycles (%d in %s) to judge a trend; run longer, or under load\n", len(samples), took.Round(time.Second))
	case heapGrows && goroutinesGrow:
		fmt.Fprintln(out, "verdict: LIKELY LEAK: the live heap and the goroutine count both grow steadily")
	case heapGrows:
		fmt.Fprintln(out, "verdict: LIKELY LEAK: the live heap grows steadily after each GC cycle")
	case goroutinesGrow:
		fmt.Fprintln(out, "verdict: LIKELY GOROUTINE LEAK: goroutines pile up")
	default:
		fmt.Fprintln(out, "verdict: no steady growth seen")
	}
	fmt.Fprintf(out, "\nevidence over %d GC cycles in %s:\n", len(samples), took.Round(time.Second))
	fmt.Fprintf(out, "  live heap trend   %s per minute, %s per cycle (fit R² %.2f; mean live %s)\n",
		signedBytes(t.BytesPerMinute), signedBytes(t.BytesPerCycle), t.R2, diag.FormatBytes(mean))
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
	c.detail = fmt.Sprintf("leakcheck: %d cycles, heap %s/min (R² %.2f), goroutines %+d", len(samples), signedBytes(t.BytesPerMinute), t.R2, goroutineGrowth)
}

func signedBytes(f float64) string {
	if f < 0 {
		return "-" + diag.FormatBytes(-f)
	}
	return "+" + diag.FormatBytes(f)
}
