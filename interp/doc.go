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
// and its authors say so. The controls that matter are around it, in
// layers:
//
//   - the symbol table is an allowlist: a curated errors, fmt, math, sort,
//     strconv, strings, time, unicode and unicode/utf8, plus the exported
//     packages the caller includes; there is no os, io/ioutil, net,
//     reflect, runtime, unsafe, syscall or os/signal, nothing that starts
//     goroutines running user code (time.AfterFunc, Tick, tickers), no
//     package variable (they are the host's own state), and no preloaded
//     generic source packages;
//   - fmt is rebuilt: interpreted values reach it as Stringers, never as
//     Formatters or Scanners (which would hand them fmt's pooled state),
//     and it sizes what it prints first, refusing values that contain
//     themselves or would print too much;
//   - source is checked before it runs, with scopes: no go statements, no
//     func main or init, only allowlisted imports, no source loaded from
//     disk, no identifiers starting with "__", no assignment through a
//     pointer, array types, literals, function frames and constant
//     arithmetic bounded, nesting bounded;
//   - source is rewritten before it runs: every function counts its call
//     depth (Go's stack overflow is fatal), every make checks its size
//     against the element type;
//   - while it runs: a timeout, an output cap, a heap-growth watchdog on
//     runtime/metrics, wrapped size-amplifying functions (strings.Repeat,
//     Replace, ReplaceAll, Join, Split, Fields, strconv.Quote), sorts and
//     time.Sleep that stop when the eval does;
//   - results and panic values that could run interpreted methods are
//     formatted inside the eval, under its deadline;
//   - an interpreter stopped mid-eval is discarded (yaegi may resume
//     stopped code), and each is replaced after MaxEvals evals.
//
// Above this package, the console lets only subjects the policy allows
// reach eval at all (admins by default), gives each session only the
// exported packages its subject may import, and audits every eval.
//
// Export functions, not mutable objects: see Exports.Value for what can go
// wrong. yaegi reads YAEGI_* environment variables of the host process
// (one of them runs a command); the ops-repl command clears them, and an
// embedding application should not set them.
package interp
