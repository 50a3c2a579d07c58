package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/opsrepl/opsrepl/interp"
)

// childArg0 is the whole command line of a child: the executable is this
// program's own, started again, and this argument tells Main to become a
// child instead of returning.
const childArg0 = "ops-repl-sandbox"

// channelFD is the descriptor the channel arrives on in a child.
const channelFD = 3

// installed records that Main ran (and returned) in this process: only
// then may the program be started again as a child, because only then
// does that start reach the child loop instead of the application.
var installed atomic.Bool

// Main hands control to the sandbox child when this process was started as
// one, and never returns then. Otherwise it returns at once, and records
// that the program can be started again as a child.
//
// Call it first in main, and in TestMain of tests that evaluate Go:
//
//	func main() {
//		sandbox.Main()
//		...
//	}
//
// A child runs the package initializers of the program, as every process
// of it does, and nothing else of it: Main does not return in a child.
func Main() {
	if len(os.Args) == 1 && os.Args[0] == childArg0 {
		os.Exit(runChild())
	}
	installed.Store(true)
}

// Installed reports whether Main has run in this process.
func Installed() bool { return installed.Load() }

// child is the child side of the channel.
type child struct {
	l   *link
	wmu sync.Mutex // sends: the main loop, and stubs during an eval
	in  *interp.Interpreter
}

// Exit codes of a child, besides the runtime's own (2 for a fatal error).
const (
	exitOK       = 0 // the host closed the channel
	exitStopped  = 0 // an eval was stopped: the interpreter is spent
	exitProtocol = 3
	exitLimits   = 4
)

func runChild() int {
	if err := prepareChild(); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		return exitLimits
	}
	c := &child{l: newLink(os.NewFile(channelFD, "sandbox"), hostFrame, 1<<20)}
	m, err := c.l.recv()
	if err != nil || m.Op != opStart || m.Limits == nil {
		return exitProtocol
	}
	c.l.maxOut = m.Limits.MaxFrame
	if err := applyLimits(*m.Limits); err != nil {
		c.send(&message{Op: opFailed, Text: err.Error()})
		return exitLimits
	}
	c.send(&message{Op: opReady})
	for {
		m, err := c.l.recv()
		if err != nil {
			return exitOK // the host closed the channel, or is gone
		}
		switch {
		case m.Op == opInit && c.in == nil && m.Init != nil:
			if err := c.init(m.Init); err != nil {
				c.send(&message{Op: opFailed, Text: err.Error()})
				return exitProtocol
			}
			c.send(&message{Op: opReady})
		case m.Op == opEval && c.in != nil:
			if !c.eval(m.Src) {
				return exitStopped
			}
		case m.Op == opComplete && c.in != nil:
			var items []string
			for _, it := range c.in.Complete(m.Src) {
				if len(items) < maxItems && len(it) <= 256 {
					items = append(items, it)
				}
			}
			if c.send(&message{Op: opItems, Data: []byte(strings.Join(items, "\n"))}) != nil {
				return exitProtocol
			}
		case m.Op == opVars && c.in != nil:
			var b bytes.Buffer
			c.in.Vars(&b)
			text := b.Bytes()
			if limit := c.l.maxOut / 2; len(text) > limit {
				text = append(text[:limit:limit], "… (clipped)\n"...)
			}
			if c.send(&message{Op: opItems, Data: text}) != nil {
				return exitProtocol
			}
		default:
			return exitProtocol
		}
	}
}

func (c *child) send(m *message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.l.send(m)
}

// init builds the interpreter: the exports become stubs of the
// application's own types that call across the channel.
func (c *child) init(im *initMsg) error {
	exp := new(interp.Exports)
	for _, d := range im.Exports {
		t, ok := typeOf(d.Type)
		if !ok {
			return fmt.Errorf("sandbox: export %s.%s: its type %s is not one this program was built with (made at run time, with reflect?), so it cannot cross to an interpreter process", d.Pkg, d.Name, d.Type.Name)
		}
		if d.Func {
			exp.Func(d.Pkg, d.Name, c.stub(d.Pkg, d.Name, t).Interface())
			continue
		}
		p := reflect.New(t)
		if err := json.Unmarshal(d.Value, p.Interface()); err != nil {
			return fmt.Errorf("sandbox: export %s.%s: %w", d.Pkg, d.Name, err)
		}
		exp.Value(d.Pkg, d.Name, p.Interface())
	}
	opts := im.Interp.options()
	opts.Exports, opts.Packages = exp, im.Packages
	// The whole heap of this process is the session's: cap it, so what
	// earlier evals keep counts, and make the collector keep garbage
	// below the cap.
	runtime.GC()
	var ms runtime.MemStats // (this process evaluates nothing yet: its pause is no one's)
	runtime.ReadMemStats(&ms)
	opts.MaxHeap = ms.HeapAlloc + sessionSlack + opts.WithDefaults().MaxHeapGrowth
	if cur := debug.SetMemoryLimit(-1); cur > int64(opts.MaxHeap) {
		debug.SetMemoryLimit(int64(opts.MaxHeap))
	}
	in, err := interp.New(opts)
	if err != nil {
		return err
	}
	c.in = in
	return nil
}

// sessionSlack is room on top of the heap budget for the interpreter's
// own tables.
const sessionSlack = 16 << 20

// stub returns a function of type ft whose calls run pkg.name in the
// host: the arguments cross as JSON, the host checks the grant, calls the
// real function and sends its results back.
func (c *child) stub(pkg, name string, ft reflect.Type) reflect.Value {
	return reflect.MakeFunc(ft, func(args []reflect.Value) []reflect.Value {
		fn := lastElem(pkg) + "." + name
		raw, err := encodeValues(args, "argument")
		if err != nil {
			panic(fmt.Sprintf("%s: %v", fn, err))
		}
		c.wmu.Lock()
		err = c.l.send(&message{Op: opCall, Pkg: pkg, Name: name, Values: raw})
		var reply *message
		if err == nil {
			reply, err = c.l.recv()
		}
		c.wmu.Unlock()
		if errors.Is(err, errFrameTooLarge) {
			panic(fmt.Sprintf("%s: the arguments take %d bytes; at most %d cross to the application", fn, c.l.lastOut, c.l.maxOut))
		}
		if err != nil || reply.Op != opRet {
			os.Exit(exitProtocol) // the host is gone or confused: nothing to return to
		}
		if reply.Text != "" {
			panic(fmt.Sprintf("%s: %s", fn, reply.Text))
		}
		out, err := decodeValues(outs(ft), reply.Values, "result")
		if err != nil {
			panic(fmt.Sprintf("%s: %v", fn, err))
		}
		return out
	})
}

func lastElem(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// eval runs one submission and sends its output and result. It reports
// false when the eval was stopped: the interpreter must not be used again
// (yaegi may resume stopped code), so the child ends.
func (c *child) eval(src string) bool {
	w := &outWriter{c: c}
	val, err := c.in.Eval(context.Background(), src, w)
	w.flush()
	for len(val) > outChunk { // a long value, in parts; the rest with the result
		if err := c.send(&message{Op: opValue, Data: []byte(val[:outChunk])}); err != nil {
			return false
		}
		val = val[outChunk:]
	}
	res := &message{Op: opResult, Data: []byte(val), Spent: c.in.Spent()}
	var ce *interp.CheckError
	var ee *interp.EvalError
	stopped := false
	switch {
	case err == nil:
	case errors.Is(err, interp.ErrIncomplete):
		res.Kind = kindIncomplete
	case errors.As(err, &ce):
		res.Kind, res.Text = kindCheck, ce.Msg
	case errors.As(err, &ee):
		res.Kind, res.Text = kindEval, ee.Msg
	case errors.Is(err, context.DeadlineExceeded):
		res.Kind, stopped = kindTimeout, true
	case errors.Is(err, interp.ErrOutputLimit):
		res.Kind, stopped = kindOutput, true
	case errors.Is(err, interp.ErrMemoryLimit):
		res.Kind, stopped = kindMemory, true
	default:
		res.Kind, res.Text, stopped = kindReset, err.Error(), true
	}
	if len(res.Text) > maxText {
		res.Text = clip(res.Text, maxText)
	}
	return c.send(res) == nil && !stopped
}

// clip cuts s to at most n bytes, at a rune boundary, and says so.
func clip(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf("… (%d bytes in all)", len(s))
}

// outWriter sends what an eval prints, in chunks: at outChunk bytes, when
// flushAfter has passed since the last send, and at the end.
type outWriter struct {
	c    *child
	buf  []byte
	last time.Time
}

const flushAfter = 50 * time.Millisecond

func (w *outWriter) Write(p []byte) (int, error) {
	if w.last.IsZero() {
		w.last = time.Now()
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= outChunk || time.Since(w.last) >= flushAfter {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *outWriter) flush() error {
	for len(w.buf) > 0 {
		n := min(len(w.buf), outChunk)
		if err := w.c.send(&message{Op: opOut, Data: w.buf[:n]}); err != nil {
			return err
		}
		w.buf = w.buf[n:]
	}
	w.buf = w.buf[:0]
	w.last = time.Now()
	return nil
}
