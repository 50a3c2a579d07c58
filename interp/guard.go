package interp

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/metrics"
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

	slot      reflect.Value // the value Format renders
	formatted string
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

// allocPanic is the panic value when make asks for too much.
type allocPanic struct {
	bytes float64
	limit uint64
	typ   reflect.Type
}

func (a allocPanic) Error() string {
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
	if count != float64(int(count)) {
		panic(fmt.Sprintf("make: size %v is not an integer", n))
	}
	return int(count)
}

// format renders g.slot. It runs inside an eval, so an interpreted String
// or Error method it calls is stopped by the eval's deadline.
func (g *guard) format() {
	g.formatted = formatValue(g.slot, g.maxOut)
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

// heapWatch stops an eval whose heap growth passes limit: it samples the
// bytes in live and not-yet-collected heap objects (runtime/metrics, no
// stop-the-world) every couple of milliseconds until ctx ends.
func heapWatch(ctx context.Context, limit uint64, stop context.CancelCauseFunc) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	base := read()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if now := read(); now > base && now-base > limit {
				stop(ErrMemoryLimit)
				return
			}
		}
	}
}
