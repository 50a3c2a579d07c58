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
// and its authors say so; nor can guards inside a process be shown
// complete (a fatal runtime error cannot be recovered, its compiler
// cannot be interrupted, a native call runs to completion). The boundary
// is a process: package sandbox runs an interpreter per session in a
// child process, and this package's guards run inside it, so that
// everyday mistakes get a clear error instead of a dead child. In layers:
//
//   - the symbol table is an allowlist: a curated errors, fmt, math, sort,
//     strconv, strings, time, unicode and unicode/utf8, plus the exported
//     packages the caller includes; there is no os, io/ioutil, net,
//     reflect, runtime, unsafe, syscall or os/signal, nothing that starts
//     goroutines running user code (time.AfterFunc, Tick, tickers), no
//     package variable (they are the host's own state), and no preloaded
//     generic source packages; every native function and method in it has
//     a declared safety class (bounded by its input, size-checked wrapper,
//     calls back into interpreted code, blocking), and an unclassified one
//     is left out;
//   - fmt is rebuilt: interpreted values reach it as Stringers, never as
//     Formatters or Scanners (which would hand them fmt's pooled state),
//     and it sizes what it prints first, refusing values that contain
//     themselves or would print too much;
//   - source is checked before it runs, with scopes: no go statements, no
//     func main or init, only allowlisted imports, no source loaded from
//     disk, no identifiers starting with "__", no assignment through a
//     pointer, array types, literals, function frames and constant
//     arithmetic bounded, string constants and type nesting bounded, no
//     recursive types without indirection, generics instantiated inside
//     generic code only with type names, nesting bounded;
//   - source is rewritten before it runs: every function counts its call
//     depth (Go's stack overflow is fatal), every make checks its size
//     against the element type;
//   - while it runs: a timeout, an output cap, a heap watchdog on
//     runtime/metrics (growth per eval; with MaxHeap, the whole process's
//     heap, so what earlier evals keep counts), wrapped size-amplifying
//     functions (strings.Repeat, Replace, ReplaceAll, Join, Split, Fields,
//     ToValidUTF8, strconv quoting and float precision, errors.Join and
//     fmt.Errorf trees), sorts and time.Sleep that stop when the eval
//     does, and that natives deferred by stopped code see as done;
//   - results and panic values that could run interpreted methods are
//     formatted inside the eval, under its deadline;
//   - an interpreter stopped mid-eval is discarded (yaegi may resume
//     stopped code), and each is replaced after MaxEvals evals.
//
// Above this package, the console lets only subjects the policy allows
// reach eval at all (admins by default), gives each session only the
// exported packages its subject may import, and audits every eval.
//
// Export functions: their arguments and results cross as copies (see
// Exports.Func), and Exports.Value exports a snapshot. yaegi reads YAEGI_* environment variables of the host process
// (one of them runs a command); the ops-repl command clears them, and an
// embedding application should not set them.
package interp
