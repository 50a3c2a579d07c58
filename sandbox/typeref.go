package sandbox

import (
	"reflect"
	"runtime/debug"
	"unsafe"
)

// A child is this same executable started again, so every type an export
// uses exists in both processes at the same place relative to every other
// type of the binary. typeRef names a type by that distance, which lets the
// child build stubs with the application's real types (named types and
// their methods included) without the application registering anything in
// the child.
//
// Only types the binary was linked with can be named this way; a type made
// at run time (reflect.FuncOf and the like) lives on the heap. The child
// checks each reference against the type's name and size before using it.
type typeRef struct {
	Off  int64   `json:"off"`  // distance from the anchor type's descriptor
	Head []byte  `json:"head"` // the descriptor's first bytes (size, hash, kind…), checked first
	Name string  `json:"name"` // t.String(), checked by the child
	Size uintptr `json:"size"`
}

// headBytes is how much of a type descriptor is compared before the type
// is used: its size, pointer bytes, hash, flags, alignments and kind
// (no pointers, so the same in every process of the binary).
const headBytes = 2*unsafe.Sizeof(uintptr(0)) + 8

// anchor is the type every offset is measured from.
var anchor = reflect.TypeFor[int]()

// ifaceWords is the layout of a non-empty interface value.
type ifaceWords struct {
	tab  unsafe.Pointer
	data unsafe.Pointer
}

// refOf returns the reference of t.
func refOf(t reflect.Type) typeRef {
	a, p := anchor, t
	aw := (*ifaceWords)(unsafe.Pointer(&a))
	pw := (*ifaceWords)(unsafe.Pointer(&p))
	head := unsafe.Slice((*byte)(pw.data), headBytes)
	return typeRef{Off: int64(uintptr(pw.data)) - int64(uintptr(aw.data)), Head: append([]byte(nil), head...), Name: t.String(), Size: t.Size()}
}

// typeOf returns the type ref names. It is called in the child only, on
// references the host sent. A reference to a type the host made at run
// time points at nothing in the child, or at something else: reading it
// faults (turned into a panic here) or does not match the name and size.
//
// (The race detector's pointer checks would call the arithmetic on a bad
// reference fatal instead of letting the name check refuse it.)
//
//go:nocheckptr
func typeOf(ref typeRef) (t reflect.Type, ok bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			t, ok = nil, false
		}
	}()
	t = anchor
	w := (*ifaceWords)(unsafe.Pointer(&t))
	w.data = unsafe.Add(w.data, ref.Off)
	// Raw bytes first: a wrong address faults here (a panic, with
	// SetPanicOnFault) or differs, before the runtime reads names through
	// it (which it would treat as a fatal error).
	if string(unsafe.Slice((*byte)(w.data), headBytes)) != string(ref.Head) {
		return nil, false
	}
	if t.String() != ref.Name || t.Size() != ref.Size {
		return nil, false
	}
	return t, true
}
