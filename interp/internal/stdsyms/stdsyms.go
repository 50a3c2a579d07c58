// Package stdsyms is the interpreter's table of standard library symbols:
// only the packages interp allows (its stdlibAllow), extracted by yaegi
// from the standard library of the Go that builds the module. The table of
// yaegi's own stdlib package holds every standard package, and linking it
// made every embedding service carry them all.
//
// Regenerate it after changing the allowlist or the module's Go version:
//
//	go generate ./interp/...
package stdsyms

//go:generate go run github.com/traefik/yaegi/cmd/yaegi@v0.16.1 extract -name stdsyms errors fmt math sort strconv strings time unicode unicode/utf8
//go:generate go run lazy.go

import (
	"reflect"
	"sync"
)

// Symbols is filled by the loaders; read it through Table.
var Symbols = map[string]map[string]reflect.Value{}

// loaders fill Symbols. The extracted files' init functions only register
// them (lazy.go rewrites them so): building the table takes about a
// millisecond, which every start of a program that links the console
// would pay, the one-shot CLI included, though only interpreters read it.
var loaders []func()

// Table returns the table, built on first use: "importpath/name" to the
// package's exported symbols. Callers must not change it.
var Table = sync.OnceValue(func() map[string]map[string]reflect.Value {
	for _, load := range loaders {
		load()
	}
	return Symbols
})
