package console

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
)

const maxProfileSeconds = 300

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func stamp() string { return time.Now().UTC().Format("20060102T150405Z") }

func runProfile(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	secs := fs.Int("seconds", 10, "")
	if err := c.ParseFlags(fs, true); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return wire.Errorf(wire.CodeBadRequest, "profile: name one profile: cpu, allocs, block, mutex, goroutine or threadcreate (usage: %s)", c.cmd.usageLine())
	}
	kind := fs.Arg(0)
	var buf bytes.Buffer
	switch kind {
	case "cpu":
		if *secs < 1 || *secs > maxProfileSeconds {
			return wire.Errorf(wire.CodeBadRequest, "profile cpu: --seconds must be 1 to %d", maxProfileSeconds)
		}
		if err := pprof.StartCPUProfile(&buf); err != nil {
			return wire.Errorf(wire.CodeBusy, "profile cpu: a CPU profile is already running in this process (%v)", err)
		}
		fmt.Fprintf(c.Out, "profiling the CPU for %ds…\n", *secs)
		c.Flush()
		err := sleepCtx(ctx, time.Duration(*secs)*time.Second)
		pprof.StopCPUProfile()
		if err != nil {
			return err
		}
	case "allocs", "block", "mutex", "goroutine", "threadcreate", "heap":
		if err := pprof.Lookup(kind).WriteTo(&buf, 0); err != nil {
			return fmt.Errorf("profile %s: %w", kind, err)
		}
	default:
		return wire.Errorf(wire.CodeBadRequest, "profile: unknown profile %.40q (cpu, allocs, block, mutex, goroutine, threadcreate)", kind)
	}
	return c.SendFile(ctx, fmt.Sprintf("%s-%s.pb.gz", kind, stamp()), buf.Bytes())
}

func runTrace(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	secs := fs.Int("seconds", 1, "")
	if err := c.ParseFlags(fs, false); err != nil {
		return err
	}
	if *secs < 1 || *secs > 60 {
		return wire.Errorf(wire.CodeBadRequest, "trace: --seconds must be 1 to 60")
	}
	buf := &lockedBuffer{}
	if err := trace.Start(buf); err != nil {
		return wire.Errorf(wire.CodeBusy, "trace: an execution trace is already running in this process (%v)", err)
	}
	fmt.Fprintf(c.Out, "tracing for %ds…\n", *secs)
	c.Flush()
	// A busy process can trace tens of MiB a second; the trace is held in
	// memory, so it stops early at maxTrace.
	deadline := time.Now().Add(time.Duration(*secs) * time.Second)
	var err error
	for time.Now().Before(deadline) && buf.Len() < maxTrace && err == nil {
		err = sleepCtx(ctx, min(100*time.Millisecond, time.Until(deadline)))
	}
	trace.Stop()
	if err != nil {
		return err
	}
	if buf.Len() >= maxTrace {
		fmt.Fprintf(c.Out, "stopped early: the trace reached %d MiB\n", maxTrace>>20)
	}
	return c.SendFile(ctx, fmt.Sprintf("trace-%s.out", stamp()), buf.Bytes())
}

// maxTrace bounds an execution trace held in memory.
const maxTrace = 64 << 20

// lockedBuffer is a bytes.Buffer the tracer writes while the command
// reads its length.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}
