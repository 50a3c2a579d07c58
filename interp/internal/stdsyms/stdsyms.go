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

import "reflect"

// Symbols maps "importpath/name" to the package's exported symbols.
var Symbols = map[string]map[string]reflect.Value{}
