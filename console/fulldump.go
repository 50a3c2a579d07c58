package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/diag"
)

// objHeapdumpFull is the permission a full heap dump needs on top of
// cmd:heapdump: it copies every byte of the heap, secrets included, and
// stops the world while it does.
const objHeapdumpFull = "cmd:heapdump-full"

// debug.WriteHeapDump stops the world for the whole dump, on one thread:
// it writes every allocated object (live, and garbage not yet swept) and
// goroutine stack to the file, with about dumpBytesPerObject of framing
// each. Its pause is modelled as the bytes it writes at dumpWriteRate plus
// dumpObjectCost per object: both measured on a 2-core machine writing
// to its page cache, across heaps of small pointerful objects, maps and
// large byte slices, 256 MiB to 2 GiB (observed 0.75 to 1.45 times the
// model there, the first dump of a process the slowest). A machine with a slower disk or CPU is slower; so each
// dump this process observes calibrates the next prediction
// (dumpHistory).
const (
	dumpWriteRate      = 455 << 20 // bytes per second
	dumpObjectCost     = 80 * time.Nanosecond
	dumpBytesPerObject = 20
	dumpFixedCost      = 15 * time.Millisecond // the runtime's own tables and the file; dominates small heaps
)

// heapShape is what a full dump will copy.
type heapShape struct {
	bytes   uint64 // heap objects (live and unswept) and goroutine stacks
	objects uint64
	scan    uint64 // heap bytes the GC scans for pointers
}

func readHeapShape() heapShape {
	st := diag.ReadMemStats()
	a, _ := diag.Lookup(st, "/memory/classes/heap/objects:bytes")
	b, _ := diag.Lookup(st, "/memory/classes/heap/stacks:bytes")
	n, _ := diag.Lookup(st, "/gc/heap/objects:objects")
	scan := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(scan)
	var sc uint64
	if scan[0].Value.Kind() == metrics.KindUint64 {
		sc = scan[0].Value.Uint64()
	}
	return heapShape{bytes: uint64(a + b), objects: uint64(n), scan: sc}
}

// dumpBytes is about how much the dump writes.
func (h heapShape) dumpBytes() uint64 { return h.bytes + h.objects*dumpBytesPerObject }

// diskBytes bounds what the dump may write, for the free-disk check: the
// dump also records each pointer slot of an object (about 3 bytes per
// 8-byte word the GC scans), and never less than 1.5 × the heap.
func (h heapShape) diskBytes() uint64 {
	return max(h.dumpBytes()+h.scan*3/8, h.bytes+h.bytes/2)
}

// model is the uncalibrated prediction of the dump's pause.
func (h heapShape) model() time.Duration {
	write := float64(h.dumpBytes()) / dumpWriteRate
	return dumpFixedCost + time.Duration(write*float64(time.Second)) + time.Duration(h.objects)*dumpObjectCost
}

// dumpHistory keeps, for the process, how the last full dumps' observed
// pauses compared with the model. The next prediction is the model times
// their geometric mean, shrunk towards 1 while there are few (one dump
// counts half: one slow dump, a cold page cache say, must not make the
// next prediction as slow).
type dumpHistory struct {
	mu     sync.Mutex
	ratios []float64 // observed / model, the newest last; at most 5
}

// pausePrediction is a predicted pause with the range it is likely in.
type pausePrediction struct {
	pause, low, high time.Duration
	basis            string
}

func (p pausePrediction) String() string {
	return fmt.Sprintf("%s (likely %s)", roundPause(p.pause), p.likely())
}

// likely is the range and what it rests on.
func (p pausePrediction) likely() string {
	return fmt.Sprintf("%s to %s: %s", roundPause(p.low), roundPause(p.high), p.basis)
}

// roundPause shows d to the millisecond under a second, else to 10 ms.
func roundPause(d time.Duration) string {
	if d < time.Second {
		return max(d.Round(time.Millisecond), time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// predict returns the pause a dump of h is expected to take.
func (d *dumpHistory) predict(h heapShape) pausePrediction {
	m := h.model()
	d.mu.Lock()
	rs := slices.Clone(d.ratios)
	d.mu.Unlock()
	if len(rs) == 0 {
		return pausePrediction{pause: m, low: m / 2, high: m * 3 / 2,
			basis: "from the heap's size and object count, not yet calibrated by a full dump in this process"}
	}
	var logs float64
	for _, r := range rs {
		logs += math.Log(r)
	}
	n := float64(len(rs))
	k := math.Exp(logs / n * n / (n + 1))
	// The range: the spread of the observed ratios, and at least ±25%.
	slices.Sort(rs)
	lo, hi := min(rs[0]/k, 0.75), max(rs[len(rs)-1]/k, 1.25)
	scale := func(f float64) time.Duration { return time.Duration(float64(m) * k * f) }
	dumps := "dump"
	if len(rs) > 1 {
		dumps = "dumps"
	}
	return pausePrediction{pause: scale(1), low: scale(lo), high: scale(hi),
		basis: fmt.Sprintf("calibrated by %d earlier full %s in this process", len(rs), dumps)}
}

// observe records a dump of h that took took. A dump predicted under
// 100 ms is not kept: fixed costs dominate it, and say little of the rate
// a large heap will see.
func (d *dumpHistory) observe(h heapShape, took time.Duration) {
	m := h.model()
	if m < 100*time.Millisecond || took <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ratios = append(d.ratios, float64(took)/float64(m))
	if len(d.ratios) > 5 {
		d.ratios = d.ratios[1:]
	}
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
	shape := readHeapShape()
	heap := shape.bytes
	pred := process.dumps.predict(shape)
	dumpBytes := shape.dumpBytes()
	if err := c.Confirm(fmt.Sprintf("heapdump --full (%s of heap in %d objects; it writes about %s to %s; likely %s)",
		diag.FormatBytes(float64(heap)), shape.objects, diag.FormatBytes(float64(dumpBytes)), dir, pred.likely()), pred.pause); err != nil {
		return err
	}
	need := shape.diskBytes() + shape.diskBytes()/5
	if free, ok := diag.FreeDisk(dir); ok && free < need {
		return wire.Errorf(wire.CodeLimit, "heapdump --full: %s has %s free; a dump of %s of heap in %d objects needs at least %s",
			dir, diag.FormatBytes(float64(free)), diag.FormatBytes(float64(heap)), shape.objects, diag.FormatBytes(float64(need)))
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
	// Read again: the heap may have changed while the operator confirmed.
	shape = readHeapShape()
	pred = process.dumps.predict(shape)
	fmt.Fprintf(c.Out, "dumping %s of heap in %d objects; predicted pause %s…\n", diag.FormatBytes(float64(shape.bytes)), shape.objects, pred)
	c.Flush()
	start := time.Now()
	debug.WriteHeapDump(f.Fd())
	took := time.Since(start)
	fmt.Fprintf(c.Out, "pause: predicted %s, observed %s\n", pred.pause.Round(time.Millisecond), took.Round(time.Millisecond))
	c.detail = fmt.Sprintf("full heap dump: heap %d bytes, %d objects, pause predicted %s observed %s", shape.bytes, shape.objects, pred.pause.Round(time.Millisecond), took.Round(time.Millisecond))
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
	process.dumps.observe(shape, took) // a whole dump only: a cut one says nothing of the rate
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("heapdump --full: %w", err)
	}
	name := fmt.Sprintf("heapdump-%s.dump", stamp())
	return c.SendStream(ctx, name, size, hex.EncodeToString(h.Sum(nil)), f)
}
