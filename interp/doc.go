// Package interp evaluates Go source typed by an operator, inside a live
// process, against a symbol table built by allowlist: a curated part of
// the standard library plus the functions and values the application
// chose to export (see Exports).
//
// Usage:
//
//	exp := new(interp.Exports).Func("shop/cache", "Len", cache.Len)
//	in, err := interp.New(interp.Options{Exports: exp, Packages: []string{"shop/cache"}})
//	if err != nil { ... }
//	val, err := in.Eval(ctx, `cache.Len() * 2`, os.Stdout)
//
// # Security
//
// The interpreter (github.com/traefik/yaegi) is not a security boundary,
// and its authors say so. The controls that matter are outside it, in
// layers: the symbol table is an allowlist (no os, io/ioutil, net, reflect,
// runtime, unsafe, syscall, os/signal), the source is checked before it
// runs (no go statements, no func main or init, only allowlisted imports,
// no source loaded from disk), each eval has a timeout and an output cap,
// and a stopped interpreter is discarded. Above this package, the console
// lets only subjects the policy allows reach eval at all (admins by
// default), builds each session's interpreter with only the exported
// packages its subject may import, and audits every eval.
//
// Export functions, not mutable objects: see Exports.Value for what can go
// wrong. yaegi reads YAEGI_* environment variables of the host process
// (one of them runs a command); the ops-repl command clears them, and an
// embedding application should not set them.
package interp
