package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/diag"
)

// objHeapdumpFull is the permission a full heap dump needs on top of
// cmd:heapdump: it copies every byte of the heap, secrets included, and
// stops the world while it does.
const objHeapdumpFull = "cmd:heapdump-full"

// dumpSecondsPerGiB predicts the pause of debug.WriteHeapDump, which stops
// the world for the whole dump (4–11 s per GiB measured on a 2-core
// machine; the upper end is the safer prediction).
const dumpSecondsPerGiB = 11

// heapInUse is the heap the dump will copy: objects and goroutine stacks.
func heapInUse() uint64 {
	st := diag.ReadMemStats()
	a, _ := diag.Lookup(st, "/memory/classes/heap/objects:bytes")
	b, _ := diag.Lookup(st, "/memory/classes/heap/stacks:bytes")
	return uint64(a + b)
}

// predictDumpPause adds a fixed 50 ms, which dominates small heaps.
func predictDumpPause(heap uint64) time.Duration {
	return 50*time.Millisecond + time.Duration(float64(heap)/(1<<30)*dumpSecondsPerGiB*float64(time.Second))
}

// fullHeapdump writes a runtime heap dump to a temporary file in
// Options.DumpDir and streams it. The file is removed whatever happens.
func fullHeapdump(ctx context.Context, c *Request) error {
	if err := c.Require(objHeapdumpFull); err != nil {
		return err
	}
	dir := c.s.srv.opts.DumpDir
	if dir == "" {
		return wire.Errorf(wire.CodeBadRequest, "heapdump --full: this application configured no dump folder (console.Options.DumpDir)")
	}
	heap := heapInUse()
	pause := predictDumpPause(heap)
	if err := c.Confirm(fmt.Sprintf("heapdump --full (%s of heap at up to %d s per GiB; it writes about %s to %s)",
		diag.FormatBytes(float64(heap)), dumpSecondsPerGiB, diag.FormatBytes(float64(heap)*1.3), dir), pause); err != nil {
		return err
	}
	need := heap + heap/2
	if free, ok := diag.FreeDisk(dir); ok && free < need {
		return wire.Errorf(wire.CodeLimit, "heapdump --full: %s has %s free; a dump of %s of heap needs at least %s (1.5 × heap)",
			dir, diag.FormatBytes(float64(free)), diag.FormatBytes(float64(heap)), diag.FormatBytes(float64(need)))
	}
	f, err := os.CreateTemp(dir, ".heapdump-*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("heapdump --full: %w", err)
	}
	// The dump holds every secret in the heap: unlink it at once (the open
	// file stays readable), so no copy outlives this process even if it
	// dies mid-dump. Where an open file cannot be removed, remove it after.
	if os.Remove(f.Name()) != nil {
		defer os.Remove(f.Name())
	}
	defer f.Close()
	fmt.Fprintf(c.Out, "dumping %s of heap; predicted pause %s…\n", diag.FormatBytes(float64(heap)), pause.Round(time.Millisecond))
	c.Flush()
	start := time.Now()
	debug.WriteHeapDump(f.Fd())
	took := time.Since(start)
	fmt.Fprintf(c.Out, "pause: predicted %s, observed %s\n", pause.Round(time.Millisecond), took.Round(time.Millisecond))
	c.detail = fmt.Sprintf("full heap dump: heap %d bytes, pause predicted %s observed %s", heap, pause.Round(time.Millisecond), took.Round(time.Millisecond))
	c.Flush()
	h := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("heapdump --full: %w", err)
	}
	size, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("heapdump --full: %w", err)
	}
	// debug.WriteHeapDump ignores write errors: a full disk gives a cut
	// file. A complete dump ends with the EOF record, a zero byte.
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil || size < 16 || last[0] != 0 {
		return wire.Errorf(wire.CodeInternal, "heapdump --full: the dump is incomplete (%d bytes written; disk full?)", size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("heapdump --full: %w", err)
	}
	name := fmt.Sprintf("heapdump-%s.dump", stamp())
	return c.SendStream(ctx, name, size, hex.EncodeToString(h.Sum(nil)), f)
}
