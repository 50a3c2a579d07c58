package interp

import (
	"context"
	"errors"
	"fmt"
	"go/token"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/traefik/yaegi/interp"
)

// Options configures New.
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
}

// Interpreter evaluates Go source against an allowlisted symbol table. One
// Eval runs at a time. After an Eval that was stopped (timeout, cancel,
// output limit), the interpreter refuses further work with ErrReset: the
// owner must build a new one, because yaegi may resume stopped code.
type Interpreter struct {
	opts    Options
	yi      *interp.Interpreter
	allowed map[string]bool // importable paths

	mu     sync.Mutex // serializes Eval
	out    *switchWriter
	broken bool
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
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = 1 << 20
	}
	in := &Interpreter{opts: opts, out: &switchWriter{ctx: context.Background()}, allowed: map[string]bool{}}
	for p := range stdlibAllow {
		in.allowed[p] = true
	}
	for _, p := range opts.Packages {
		in.allowed[p] = true
	}
	table, err := symbolTable(opts.Exports, opts.Packages, in.out.context)
	if err != nil {
		return nil, err
	}
	in.yi = interp.New(interp.Options{
		Stdin:                strings.NewReader(""),
		Stdout:               in.out,
		Stderr:               io.Discard, // yaegi prints panic positions there
		Args:                 []string{"ops-repl"},
		Env:                  []string{},
		SourcecodeFilesystem: fstest.MapFS{},
		GoPath:               "/nonexistent",
	})
	if err := in.yi.Use(table); err != nil { // one Use call, with fmt/fmt
		return nil, fmt.Errorf("interp: load symbols: %w", err)
	}
	in.yi.ImportUsed()
	return in, nil
}

// Eval checks and runs src, streaming what it prints to out, and returns
// the value of a final expression formatted as text ("" for statements).
// Errors: ErrIncomplete, a *CheckError for rejected source, context errors
// on timeout or cancel (then ErrReset for every later call),
// ErrOutputLimit, or an *EvalError for compile and run-time failures.
func (in *Interpreter) Eval(ctx context.Context, src string, out io.Writer) (string, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.broken {
		return "", ErrReset
	}
	node, err := check(token.NewFileSet(), src, in.allowed)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, in.opts.Timeout)
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	lw := &limitWriter{w: out, left: in.opts.MaxOutput, stop: stop}
	in.out.set(ctx, lw)
	defer in.out.set(context.Background(), nil)

	// EvalWithContext parses again and compiles on a fresh goroutine,
	// which costs about twice as much as CompileAST on the caller's
	// goroutine plus ExecuteWithContext; but ExecuteWithContext races on
	// its own results when cancelled (yaegi v0.16.1), EvalWithContext
	// does not.
	v, err := in.yi.EvalWithContext(ctx, src)
	if ctx.Err() != nil {
		in.broken = true
		return "", context.Cause(ctx)
	}
	if err != nil {
		return "", evalError(err)
	}
	if !v.IsValid() || v.Kind() == reflect.Func || !showsResult(node) {
		return "", nil
	}
	res, err := format(ctx, v)
	if err != nil {
		in.broken = true
		return "", err
	}
	return res, nil
}

// format renders a result. It runs on its own goroutine so that an
// interpreted String method that never returns cannot hold the caller past
// the eval's deadline.
func format(ctx context.Context, v reflect.Value) (string, error) {
	switch v.Kind() { // kinds without methods run no user code: format inline
	case reflect.String:
		if v.Type() == reflect.TypeFor[string]() {
			return fmt.Sprintf("%q", v.String()), nil
		}
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		if v.Type().PkgPath() == "" && v.CanInterface() { // predeclared type: no String method
			return fmt.Sprint(v.Interface()), nil
		}
	}
	done := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				errc <- &EvalError{Msg: fmt.Sprintf("panic while formatting the result: %v", r)}
			}
		}()
		var s string
		if v.Kind() == reflect.String {
			s = fmt.Sprintf("%q", v.String())
		} else if v.CanInterface() {
			s = fmt.Sprint(v.Interface())
		} else {
			s = v.String()
		}
		done <- s
	}()
	select {
	case s := <-done:
		return s, nil
	case err := <-errc:
		return "", err
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
}

// EvalError is a compile or run-time failure of evaluated source. Msg is
// safe to show to the operator.
type EvalError struct{ Msg string }

func (e *EvalError) Error() string { return e.Msg }

func evalError(err error) error {
	var p interp.Panic
	if errors.As(err, &p) {
		return &EvalError{Msg: fmt.Sprintf("panic: %v", p.Value)}
	}
	return &EvalError{Msg: stripPosition(err.Error())}
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
