package interp

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Errors the guards raise, checked with errors.Is.
var (
	// ErrMemoryLimit means an eval grew the heap past Options.MaxHeapGrowth.
	ErrMemoryLimit = errors.New("interp: memory limit reached")
)

// guard holds the state behind the __opsrepl pseudo package.
type guard struct {
	maxDepth int32
	maxAlloc uint64
	maxOut   int // bytes a formatted result may take
	depth    atomic.Int32
	heap     *heapBudget

	// slot is the value Format renders, and formatted what it made. A
	// Format stopped by the deadline may still run on the interpreter's
	// goroutine after the eval returns: both are read and written under
	// fmu.
	fmu       sync.Mutex
	slot      reflect.Value
	formatted string
}

// setSlot sets the value Format renders, clearing the last rendering.
func (g *guard) setSlot(v reflect.Value) {
	g.fmu.Lock()
	g.slot, g.formatted = v, ""
	g.fmu.Unlock()
}

// rendered returns what Format made of the slot.
func (g *guard) rendered() string {
	g.fmu.Lock()
	defer g.fmu.Unlock()
	return g.formatted
}

// symbols returns the __opsrepl package.
func (g *guard) symbols() map[string]reflect.Value {
	return map[string]reflect.Value{
		"Enter":  reflect.ValueOf(g.enter),
		"Leave":  reflect.ValueOf(g.leave),
		"Make":   reflect.ValueOf(g.make),
		"Format": reflect.ValueOf(g.format),
	}
}

// depthPanic is the panic value when calls nest too deep.
type depthPanic struct{ limit int32 }

func (d depthPanic) Error() string {
	return fmt.Sprintf("call depth limit (%d) reached: unbounded recursion?", d.limit)
}

func (g *guard) enter() {
	if g.depth.Add(1) > g.maxDepth {
		g.depth.Add(-1)
		panic(depthPanic{g.maxDepth})
	}
}

func (g *guard) leave() { g.depth.Add(-1) }

// allocPanic is the panic value when make asks for too much: more than
// one allocation may take, or (heap) more than the interpreter's heap
// budget has left.
type allocPanic struct {
	bytes float64
	limit uint64
	typ   reflect.Type
	heap  bool
}

func (a allocPanic) Error() string {
	if a.heap {
		return fmt.Sprintf("make(%s, …) would allocate about %.0f bytes, past the interpreter's heap limit (%d bytes)", a.typ, a.bytes, a.limit)
	}
	return fmt.Sprintf("make(%s, …) would allocate about %.0f bytes; the limit is %d", a.typ, a.bytes, a.limit)
}

// make checks one size argument of make(T, n): probe is a (*T)(nil).
func (g *guard) make(probe any, n any) int {
	size := reflect.ValueOf(n)
	var count float64
	switch size.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		count = float64(size.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		count = float64(size.Uint())
	case reflect.Float32, reflect.Float64:
		count = size.Float()
	default:
		panic(fmt.Sprintf("make: size must be an integer; got %T", n))
	}
	t := reflect.TypeOf(probe).Elem()
	var elem uintptr = 1
	switch t.Kind() {
	case reflect.Slice, reflect.Chan:
		elem = max(t.Elem().Size(), 1)
	case reflect.Map:
		elem = t.Key().Size() + t.Elem().Size() + 8
	}
	if count > 0 && count*float64(elem) > float64(g.maxAlloc) {
		panic(allocPanic{bytes: count * float64(elem), limit: g.maxAlloc, typ: t})
	}
	if bytes := count * float64(elem); bytes >= 64<<10 {
		if ok, limit := g.heap.room(uint64(bytes)); !ok {
			panic(allocPanic{bytes: bytes, limit: limit, typ: t, heap: true})
		}
	}
	if count != float64(int(count)) {
		panic(fmt.Sprintf("make: size %v is not an integer", n))
	}
	return int(count)
}

// format renders g.slot. It runs inside an eval, so an interpreted String
// or Error method it calls is stopped by the eval's deadline.
func (g *guard) format() {
	g.fmu.Lock()
	v := g.slot
	g.fmu.Unlock()
	s := formatValue(v, g.maxOut) // may run interpreted methods: not under fmu
	g.fmu.Lock()
	g.formatted = s
	g.fmu.Unlock()
}

// formatValue renders a result in at most about limit bytes: a long
// string is cut (its length is shown), and anything else is sized first
// (cycles, depth, size), so fmt never recurses forever or builds a huge
// string.
func formatValue(v reflect.Value, limit int) string {
	if !v.IsValid() {
		return "<nil>"
	}
	if v.Kind() == reflect.String && v.Type() == reflect.TypeFor[string]() {
		return truncateString(v.String(), limit)
	}
	if !v.CanInterface() {
		return v.String()
	}
	x := v.Interface()
	func() {
		defer func() {
			if r := recover(); r != nil {
				if fp, ok := r.(fmtPanic); ok {
					panic(fmtPanic{"the result cannot be shown: " + fp.msg + "; print a part of it"})
				}
				panic(r)
			}
		}()
		sizeArgs("", []any{x}, float64(limit))
	}()
	return fmt.Sprint(x)
}

// plain reports whether v can be formatted on the caller's goroutine:
// a value of a predeclared basic type has no methods that could run
// interpreted code.
func plain(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return v.Type().PkgPath() == "" && v.CanInterface()
	}
	return false
}

// heapBudget bounds the heap: its growth during one eval (from where it
// was when the eval started) and, for an interpreter in a process of its
// own, its total, which counts what earlier evals keep. The heap measured
// is the process's.
type heapBudget struct {
	growth uint64        // Options.MaxHeapGrowth
	total  uint64        // Options.MaxHeap; 0: none
	base   atomic.Uint64 // heap objects when the running eval started
	mu     sync.Mutex
	lastGC time.Time
}

// heapObjects returns the bytes in heap objects, live or not yet
// collected (runtime/metrics: no stop-the-world).
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// start marks the start of an eval.
func (h *heapBudget) start() { h.base.Store(heapObjects()) }

// fits reports whether n more bytes fit the budget now, and which limit
// is the tighter one.
func (h *heapBudget) fits(n uint64) (ok bool, limit uint64) {
	now, base := heapObjects(), h.base.Load()
	if h.total > 0 && now+n > h.total {
		return false, h.total
	}
	if now > base && now-base+n > h.growth {
		return false, h.growth
	}
	return true, 0
}

// room reports whether n more bytes fit the budget. Over it, garbage may
// be what fills it: it collects (at most every 100 ms) and looks again.
// It runs on the eval's own goroutine, which then waits for the
// collection instead of allocating more.
func (h *heapBudget) room(n uint64) (ok bool, limit uint64) {
	if ok, limit = h.fits(n); ok {
		return ok, limit
	}
	ok, _, limit = h.collectFits(n)
	return ok, limit
}

// collectFits collects, unless another collection ran in the last 100 ms
// (collected is then false), and reports whether n more bytes fit.
func (h *heapBudget) collectFits(n uint64) (ok, collected bool, limit uint64) {
	h.mu.Lock()
	collected = time.Since(h.lastGC) >= 100*time.Millisecond
	if collected {
		h.lastGC = time.Now()
	}
	h.mu.Unlock()
	if collected {
		runtime.GC()
	}
	ok, limit = h.fits(n)
	return ok, collected, limit
}

// heapWatch stops an eval once the heap budget is spent: it checks every
// couple of milliseconds until ctx ends. Over the budget, it stops the
// eval only if the heap is still over right after a collection: garbage,
// which an eval that holds nothing may produce faster than the
// collector's own pace, does not count.
func heapWatch(ctx context.Context, h *heapBudget, stop context.CancelCauseFunc) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, _ := h.fits(0); ok {
				continue
			}
			if ok, collected, _ := h.collectFits(0); !ok && collected {
				stop(ErrMemoryLimit)
				return
			}
		}
	}
}
