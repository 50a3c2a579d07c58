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
	Name string  `json:"name"` // t.String(), checked by the child
	Size uintptr `json:"size"`
}

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
	return typeRef{Off: int64(uintptr(pw.data)) - int64(uintptr(aw.data)), Name: t.String(), Size: t.Size()}
}

// typeOf returns the type ref names. It is called in the child only, on
// references the host sent. A reference to a type the host made at run
// time points at nothing in the child, or at something else: reading it
// faults (turned into a panic here) or does not match the name and size.
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
	if t.String() != ref.Name || t.Size() != ref.Size {
		return nil, false
	}
	return t, true
}
