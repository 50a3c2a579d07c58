package interp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/traefik/yaegi/interp"
)

// Options configures New. Zero fields take their defaults.
type Options struct {
	// Exports holds the application symbols. Default: none.
	Exports *Exports
	// Packages lists which exported packages this interpreter contains (the
	// caller filters them by policy). Default: none. Every entry must be
	// in Exports.
	Packages []string
	// Timeout bounds each Eval. Default: 10s.
	Timeout time.Duration
	// MaxOutput caps what one Eval may print, in bytes; reaching it stops
	// the eval with ErrOutputLimit. Default: 1 MiB.
	MaxOutput int
	// MaxHeapGrowth bounds how far the heap may grow during one eval. A
	// make that would pass it fails with an error; an eval that passes it
	// otherwise is stopped (ErrMemoryLimit). The heap is the whole
	// process's: an application allocating at the same time counts too.
	// Default: 256 MiB.
	MaxHeapGrowth uint64
	// MaxHeap caps the process's heap as a whole, the same way: for an
	// interpreter in a process of its own (package sandbox sets it), where
	// the whole heap is the session's, so what earlier evals keep counts.
	// Default: none.
	MaxHeap uint64
	// MaxAlloc bounds one allocation by make, and the size of array types
	// (counted as 16 bytes an element), in bytes. Default: 256 MiB.
	MaxAlloc uint64
	// MaxDepth bounds the nesting of interpreted calls; Go's own stack
	// overflow would kill the process. Default: 1000.
	MaxDepth int
	// MaxEvals is how many evals an interpreter serves before Spent
	// reports true: each eval retains a little memory, and evals slow down
	// as history grows. Default: 2000.
	MaxEvals int
}

// WithDefaults returns o with every zero limit set to its default.
func (o Options) WithDefaults() Options {
	o.setDefaults()
	return o
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = 1 << 20
	}
	if o.MaxHeapGrowth == 0 {
		o.MaxHeapGrowth = 256 << 20
	}
	if o.MaxAlloc == 0 {
		o.MaxAlloc = 256 << 20
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 1000
	}
	if o.MaxEvals <= 0 {
		o.MaxEvals = 2000
	}
}

// Interpreter evaluates Go source against an allowlisted symbol table. One
// Eval runs at a time. After an Eval that was stopped (timeout, cancel,
// output or memory limit), the interpreter refuses further work with
// ErrReset: the owner must build a new one, because yaegi may resume
// stopped code.
type Interpreter struct {
	opts    Options
	yi      *interp.Interpreter
	allowed map[string]bool // importable paths
	table   map[string]map[string]reflect.Value
	guard   *guard
	ss      *session

	mu     sync.Mutex // serializes Eval
	out    *switchWriter
	broken bool
	evals  int
}

// Sentinel errors, checked with errors.Is.
var (
	// ErrIncomplete means the source is a valid prefix: more lines needed.
	ErrIncomplete = errors.New("interp: incomplete input")
	// ErrReset means the interpreter was stopped mid-eval and must be
	// replaced; its state is gone.
	ErrReset = errors.New("interp: interpreter state was reset")
	// ErrOutputLimit means an eval printed more than Options.MaxOutput.
	ErrOutputLimit = errors.New("interp: output limit reached")
)

// New builds an interpreter. It costs a few milliseconds and about a
// megabyte: build it when the first eval arrives, not per session.
func New(opts Options) (*Interpreter, error) {
	if err := opts.Exports.Err(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	in := &Interpreter{
		opts:    opts,
		out:     &switchWriter{ctx: ended},
		allowed: map[string]bool{},
		guard: &guard{maxDepth: int32(opts.MaxDepth), maxAlloc: opts.MaxAlloc, maxOut: opts.MaxOutput,
			heap: &heapBudget{growth: opts.MaxHeapGrowth, total: opts.MaxHeap}},
	}
	for p := range stdlibAllow {
		in.allowed[p] = true
	}
	for _, p := range opts.Packages {
		in.allowed[p] = true
	}
	table, err := symbolTable(opts.Exports, opts.Packages, in.out, opts.MaxAlloc)
	if err != nil {
		return nil, err
	}
	in.table = table
	in.ss = newSession(in.pkgSym)
	full := make(map[string]map[string]reflect.Value, len(table)+1)
	for k, v := range table {
		full[k] = v
	}
	full[guardPkg+"/"+guardPkg] = in.guard.symbols()
	in.yi = interp.New(interp.Options{
		Stdin:                strings.NewReader(""),
		Stdout:               in.out,
		Stderr:               io.Discard, // yaegi prints panic positions there
		Args:                 []string{"ops-repl"},
		Env:                  []string{},
		SourcecodeFilesystem: fstest.MapFS{},
		GoPath:               "/nonexistent",
	})
	if err := in.yi.Use(full); err != nil { // one Use call, with fmt/fmt
		return nil, fmt.Errorf("interp: load symbols: %w", err)
	}
	in.yi.ImportUsed()
	return in, nil
}

// pkgSym finds a symbol of an allowlisted standard library package by its
// package name, for the checker's sizes and constants.
func (in *Interpreter) pkgSym(pkg, name string) (reflect.Value, bool) {
	for key, syms := range in.table {
		if key == "." || lastElem(key) != pkg || !stdlibAllow[key[:strings.LastIndexByte(key, '/')]] {
			continue
		}
		v, ok := syms[name]
		return v, ok
	}
	return reflect.Value{}, false
}

// Spent reports whether the interpreter has served Options.MaxEvals evals
// and should be replaced.
func (in *Interpreter) Spent() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.evals >= in.opts.MaxEvals
}

// Eval checks and runs src, streaming what it prints to out, and returns
// the value of a final expression formatted as text ("" for statements).
// A submission may mix declarations and statements; they run in order.
//
// Errors: ErrIncomplete; a *CheckError for rejected source; an *EvalError
// for compile and run-time failures (panics included); and, after which
// the interpreter refuses more work with ErrReset: context errors (timeout,
// cancel), ErrOutputLimit, ErrMemoryLimit.
func (in *Interpreter) Eval(ctx context.Context, src string, out io.Writer) (string, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.broken {
		return "", ErrReset
	}
	chunks, err := split(src)
	if err != nil {
		return "", err
	}
	lim := limits{maxUnits: in.opts.MaxAlloc / 16}
	preps := make([]prepared, 0, len(chunks))
	for _, c := range chunks {
		p, err := in.ss.prepare(c, in.allowed, lim)
		if err != nil {
			return "", err
		}
		preps = append(preps, p)
	}
	if len(preps) == 0 {
		return "", nil
	}
	in.evals++

	ctx, cancel := context.WithTimeout(ctx, in.opts.Timeout)
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	in.guard.heap.start()
	go heapWatch(ctx, in.guard.heap, stop)

	lw := &limitWriter{w: out, left: in.opts.MaxOutput, stop: stop}
	in.out.set(ctx, lw)
	// Natives deferred by stopped code run after the eval; they must see
	// a context that stays done (a deferred time.Sleep returns at once).
	defer in.out.set(ended, nil)
	in.guard.depth.Store(0)

	var v reflect.Value
	for _, p := range preps {
		v, err = in.yi.EvalWithContext(ctx, p.src)
		if ctx.Err() != nil {
			in.broken = true
			return "", context.Cause(ctx)
		}
		if err != nil {
			err = in.evalError(ctx, err)
			break
		}
	}
	// What the eval keeps counts against MaxHeap even when it was quicker
	// than the watchdog: past it, the state goes.
	if in.guard.heap.total > 0 {
		if ok, _ := in.guard.heap.room(0); !ok {
			in.broken = true
			return "", ErrMemoryLimit
		}
	}
	if err != nil {
		return "", err
	}
	if !v.IsValid() || v.Kind() == reflect.Func || !preps[len(preps)-1].showResult {
		return "", nil
	}
	return in.format(ctx, v)
}

// format renders a result or panic value. Values of basic types are
// formatted here; anything else inside an eval, so that an interpreted
// String or Error method is bound by the eval's deadline.
func (in *Interpreter) format(ctx context.Context, v reflect.Value) (string, error) {
	if plain(v) {
		return formatValue(v, in.opts.MaxOutput), nil
	}
	in.guard.setSlot(v)
	defer in.guard.setSlot(reflect.Value{})
	_, err := in.yi.EvalWithContext(ctx, guardPkg+".Format()")
	if ctx.Err() != nil {
		in.broken = true
		return "", context.Cause(ctx)
	}
	if err != nil {
		var p interp.Panic
		if errors.As(err, &p) {
			if fp, ok := p.Value.(fmtPanic); ok {
				return "", &EvalError{Msg: fp.msg}
			}
			return "", &EvalError{Msg: "panic while formatting the result"}
		}
		return "", &EvalError{Msg: "cannot format the result: " + stripPosition(err.Error())}
	}
	return in.guard.rendered(), nil
}

// EvalError is a compile or run-time failure of evaluated source. Msg is
// safe to show to the operator.
type EvalError struct{ Msg string }

func (e *EvalError) Error() string { return e.Msg }

func (in *Interpreter) evalError(ctx context.Context, err error) error {
	var p interp.Panic
	if errors.As(err, &p) {
		switch pv := p.Value.(type) {
		case depthPanic, allocPanic, fmtPanic, stopped:
			return &EvalError{Msg: pv.(error).Error()}
		case string:
			if pv == "nil type" { // yaegi's compiler on range over int or func
				return &EvalError{Msg: "the interpreter cannot compile this: range over an integer (Go 1.22) or a function (Go 1.23) is not supported: write for i := 0; i < N; i++"}
			}
		}
		s, ferr := in.format(ctx, reflect.ValueOf(p.Value))
		if ferr != nil {
			return ferr
		}
		return &EvalError{Msg: "panic: " + strings.Trim(s, `"`)}
	}
	msg := stripPosition(err.Error())
	for _, b := range []string{"min", "max", "clear"} {
		if msg == "undefined: "+b {
			msg += " (the interpreter implements Go 1.20-level builtins: no min, max or clear)"
		}
	}
	return &EvalError{Msg: msg}
}

// stripPosition drops the "file:line:col: " prefix of a yaegi error: the
// position is inside yaegi's wrapper of the fragment and means nothing to
// the operator.
func stripPosition(msg string) string {
	rest := msg
	if i := strings.Index(rest, ".go:"); i >= 0 && i < 8 {
		rest = rest[i+4:]
	}
	for n := 0; n < 2; n++ { // line, column
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i >= len(rest) || rest[i] != ':' {
			return msg
		}
		rest = rest[i+1:]
	}
	return strings.TrimPrefix(rest, " ")
}

// ended is the context natives see outside an eval: done.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// switchWriter is the interpreter's stdout: it forwards to the writer of
// the eval in progress and drops output written at any other time.
// It also holds that eval's context, for wrapped blocking natives.
type switchWriter struct {
	mu  sync.Mutex
	w   io.Writer
	ctx context.Context
}

func (s *switchWriter) set(ctx context.Context, w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w, s.ctx = w, ctx
}

func (s *switchWriter) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return 0, io.ErrClosedPipe
	}
	return s.w.Write(p)
}

// limitWriter passes at most left bytes to w, then stops the eval.
type limitWriter struct {
	w    io.Writer
	left int
	stop context.CancelCauseFunc
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		if l.left > 0 {
			l.w.Write(p[:l.left])
		}
		l.left = 0
		l.stop(ErrOutputLimit)
		return 0, ErrOutputLimit
	}
	l.left -= len(p)
	return l.w.Write(p)
}
