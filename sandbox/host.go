package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/opsrepl/opsrepl/interp"
)

// Options configures New. Zero fields take their defaults.
type Options struct {
	// Exports are the application's functions and values; children reach
	// them through the channel. Default: none.
	Exports *interp.Exports
	// Interp holds the limits applied inside each child (see
	// interp.Options; its Exports and Packages are ignored). Default:
	// interp's defaults.
	Interp interp.Options
	// MaxMemory caps a child's memory: its data (heap, stacks, every
	// private writable mapping; RLIMIT_DATA) and, watched from this
	// process while it evaluates, its resident set. A child past it is
	// killed. Default: 512 MiB.
	MaxMemory uint64
	// MaxChildren caps the children running at once, spares included, so
	// that sessions cannot take more than MaxChildren × MaxMemory between
	// them. At the cap, a session that needs a child gets the one of the
	// session that has gone longest without a request (that session gets
	// a new one, with a notice, at its next eval), waiting for one at most
	// an eval's time limit; only when every child stays in the middle of a
	// request is it refused (ErrBusy). Default: 8.
	MaxChildren int
	// MaxCPU caps the CPU time a child may use over its life (RLIMIT_CPU);
	// a child is replaced at its session's next eval once it has used it.
	// One eval can use at most one core for the eval's time limit. Default:
	// 10m.
	MaxCPU time.Duration
	// CallTimeout bounds one call of an exported function made from a
	// child: past it the child is stopped and the eval fails (the function
	// itself cannot be stopped, and is left to finish). Default: 5s.
	CallTimeout time.Duration
	// CallRate bounds the calls of exported functions one child may make
	// per second (bursts of as many): past it a call waits. Default: 1000.
	CallRate int
	// CallShare bounds the share of one core's time that a child's calls
	// of exported functions may take in this process, on average: after a
	// call that took d, the child's next call waits d×(1/CallShare − 1).
	// A loop of calls then costs this process little, whatever each call
	// costs. Default: 0.1.
	CallShare float64
	// Spares is how many started children wait for a session's first
	// eval, so that it does not wait for a process to start. Default: 1.
	Spares int
	// IdleTimeout stops a session's child after this long without a
	// request; the session gets a new one, with a clean state, at its next
	// eval. Default: 10m.
	IdleTimeout time.Duration
	// Logger receives the pool's operational logs. Default: discard.
	Logger *slog.Logger
	// NoSeccomp leaves out the seccomp filter (Linux), for kernels or
	// containers that refuse it. Default: false (the filter is loaded,
	// and a child that cannot load it does not start).
	NoSeccomp bool
}

// Pool starts and owns the children of one console: the spares, and the
// interpreter each session is using.
type Pool struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	changed  *sync.Cond // a spare was started, or failed to
	spares   []*proc
	starting int // spares being started (counted in spawning too)
	spawning int // children being started (places held under MaxChildren)
	live     map[*proc]bool
	users    map[*Interpreter]bool // interpreters in use, for reclaim
	closed   bool
	running  atomic.Int32 // exported calls under way (a stuck one stays)
}

// maxRunning bounds the exported calls under way at once from a pool's
// children: past it (functions that do not return, each left behind with
// its goroutine) calls are refused.
const maxRunning = 16

// Errors of New.
var (
	// ErrNotInstalled means Main was not called in this process: starting
	// the executable again would start the application, not a child.
	ErrNotInstalled = errors.New("sandbox: this program does not call sandbox.Main() first in main (and TestMain), so it cannot start evaluation children")
	// ErrUnsupported means this platform cannot run children.
	ErrUnsupported = errUnsupportedPlatform
	// ErrBusy means Options.MaxChildren children are running.
	ErrBusy = errors.New("sandbox: every interpreter process allowed is in use")
)

var errUnsupportedPlatform = errors.New("sandbox: evaluation children are supported on Linux only")

// New returns a pool. It starts nothing: spares are started by Warm and
// by Start.
func New(opts Options) (*Pool, error) {
	if !supported {
		return nil, ErrUnsupported
	}
	if !Installed() {
		return nil, ErrNotInstalled
	}
	if err := opts.Exports.Err(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	opts.Interp = opts.Interp.WithDefaults()
	if opts.MaxMemory == 0 {
		opts.MaxMemory = 512 << 20
	}
	if opts.MaxChildren <= 0 {
		opts.MaxChildren = 8
	}
	setDefault(&opts.MaxCPU, 10*time.Minute)
	setDefault(&opts.CallTimeout, 5*time.Second)
	setDefault(&opts.IdleTimeout, 10*time.Minute)
	if opts.CallRate <= 0 {
		opts.CallRate = 1000
	}
	if opts.CallShare <= 0 || opts.CallShare > 1 {
		opts.CallShare = 0.1
	}
	if opts.Spares == 0 {
		opts.Spares = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{opts: opts, log: opts.Logger, live: map[*proc]bool{}, users: map[*Interpreter]bool{}}
	p.changed = sync.NewCond(&p.mu)
	return p, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Stats counts a pool's children.
type Stats struct {
	Ready    int // spares started and waiting
	Starting int // spares being started
	Live     int // every child process, spares included
}

// Stats returns the pool's counts now.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Ready: len(p.spares), Starting: p.starting, Live: len(p.live)}
}

// Options returns the pool's options, with defaults applied.
func (p *Pool) Options() Options { return p.opts }

// Warm starts spares in the background until Options.Spares are ready or
// starting.
func (p *Pool) Warm() {
	p.mu.Lock()
	need := 0
	if !p.closed {
		need = max(p.opts.Spares-len(p.spares)-p.starting, 0)
		need = min(need, max(p.opts.MaxChildren-len(p.live)-p.spawning, 0))
		p.starting += need
		p.spawning += need // their places are held
	}
	p.mu.Unlock()
	for range need {
		go func() {
			c, err := p.spawn()
			p.mu.Lock()
			p.starting--
			if err == nil && !p.closed {
				p.spares = append(p.spares, c)
				c = nil
			}
			p.changed.Broadcast()
			p.mu.Unlock()
			switch {
			case errors.Is(err, ErrBusy) || errors.Is(err, errClosed):
			case err != nil:
				p.log.Error("sandbox: cannot start a spare child", "err", err)
			}
			if c != nil {
				c.kill(errClosed)
			}
		}()
	}
}

// take returns a started child: a spare if one is ready, else a new one.
// When every place is held, it takes the child of the least recently used
// interpreter; when none can be taken (all in the middle of a request, or
// still starting), it waits for a place: at most an eval's time limit (by
// then one has ended), or until ctx ends.
func (p *Pool) take(ctx context.Context) (*proc, error) {
	maxWait := p.opts.Interp.Timeout
	deadline := time.Now().Add(maxWait)
	wake := context.AfterFunc(ctx, func() { p.mu.Lock(); p.changed.Broadcast(); p.mu.Unlock() })
	defer wake()
	timer := time.AfterFunc(maxWait, func() { p.mu.Lock(); p.changed.Broadcast(); p.mu.Unlock() })
	defer timer.Stop()
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, errClosed
		}
		if n := len(p.spares); n > 0 {
			c := p.spares[n-1]
			p.spares = p.spares[:n-1]
			p.mu.Unlock()
			p.Warm()
			select {
			case <-c.done: // died while it waited
				c.kill(errClosed)
				p.mu.Lock()
				continue
			default:
				return c, nil
			}
		}
		if len(p.live)+p.spawning < p.opts.MaxChildren {
			p.spawning++ // the place is this call's
			break
		}
		if p.starting == 0 {
			p.mu.Unlock()
			if p.reclaim() {
				p.mu.Lock()
				continue
			}
			p.mu.Lock()
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			p.mu.Unlock()
			return nil, ErrBusy
		}
		p.changed.Wait() // a spare on its way, a child reaped, an eval ended
	}
	p.mu.Unlock()
	p.Warm()
	return p.spawn()
}

// reclaim makes room: it stops the child of the interpreter that has gone
// longest without a request (never one in the middle of one), whose
// session gets a new child, with a notice, at its next eval. It reports
// whether there was one.
func (p *Pool) reclaim() bool {
	p.mu.Lock()
	users := make([]*Interpreter, 0, len(p.users))
	for in := range p.users {
		users = append(users, in)
	}
	p.mu.Unlock()
	sort.Slice(users, func(i, j int) bool { return users[i].lastUsed.Load() < users[j].lastUsed.Load() })
	for _, in := range users {
		if !in.mu.TryLock() {
			continue
		}
		ok := !in.dead
		if ok {
			in.c.kill(errIdle)
			in.dead = true
			in.why = fmt.Sprintf("the interpreter process was stopped to make room for another session (%d may run at once)", p.opts.MaxChildren)
		}
		in.mu.Unlock()
		if ok {
			in.c.reaped() // its place is free once it is reaped
			return true
		}
	}
	return false
}

// Close kills every child, spare or in use, and refuses new ones. It is
// idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	p.changed.Broadcast()
	all := p.spares
	p.spares = nil
	for c := range p.live {
		all = append(all, c)
	}
	p.mu.Unlock()
	for _, c := range all {
		c.kill(errClosed)
	}
	for _, c := range all {
		c.reaped()
	}
	return nil
}

// Kill causes: why the host stopped a child.
var (
	errClosed    = errors.New("sandbox: closed")
	errWall      = errors.New("sandbox: wall-clock limit")
	errMemoryCap = errors.New("sandbox: memory cap")
	errIdle      = errors.New("sandbox: idle")
	errStopped   = errors.New("sandbox: eval stopped")
	errProtocol  = errors.New("sandbox: protocol")
	errNoAnswer  = errors.New("sandbox: no answer")
	// errCallTimeout: an exported call ran past CallTimeout. The child is
	// killed then: the eval's goroutine is inside the application's
	// function, and nothing else can answer the child.
	errCallTimeout = errors.New("sandbox: an exported call did not return in time")
)

// proc is one child process and the host's end of its channel.
type proc struct {
	pool   *Pool
	cmd    *exec.Cmd
	conn   net.Conn
	l      *link
	stderr *stderrTail
	done   chan struct{} // closed once the process is reaped
	start  time.Time

	mu    sync.Mutex
	cause error // why the host killed it; nil if it ended on its own
}

// childEnv is a child's whole environment.
var childEnv = []string{"GOTRACEBACK=single", "GOMAXPROCS=1"}

// spawn starts a child, waits for it to apply its limits, and registers
// it as live. The caller holds a place for it (p.spawning), which spawn
// gives up when the child is live, or failed.
func (p *Pool) spawn() (*proc, error) {
	started := false
	defer func() {
		if !started {
			p.mu.Lock()
			p.spawning--
			p.changed.Broadcast()
			p.mu.Unlock()
		}
	}()
	hostEnd, childEnd, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("sandbox: socketpair: %w", err)
	}
	conn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		childEnd.Close()
		return nil, fmt.Errorf("sandbox: channel: %w", err)
	}
	c := &proc{pool: p, conn: conn, l: newLink(conn, childFrame, hostFrame), stderr: &stderrTail{}, done: make(chan struct{}), start: time.Now()}
	c.l.fromChild = true
	c.cmd = &exec.Cmd{
		Path:        exePath,
		Args:        []string{childArg0},
		Env:         childEnv,
		Dir:         "/",
		ExtraFiles:  []*os.File{childEnd}, // fd 3
		Stderr:      c.stderr,
		SysProcAttr: sysProcAttr(),
		// A process that died leaves its standard error to whatever holds
		// it open; the host waits for the copy no longer than this.
		WaitDelay: time.Second,
	}
	err = c.cmd.Start()
	childEnd.Close()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sandbox: start child: %w", err)
	}
	p.mu.Lock()
	p.live[c] = true
	p.spawning--
	closed := p.closed
	p.mu.Unlock()
	started = true
	go func() {
		// The channel stays open past the exit: the frames the child sent
		// last (its output, a stopped eval's result) are still to be read,
		// and the reader then sees the end. kill and Close close it.
		c.cmd.Wait()
		p.mu.Lock()
		delete(p.live, c)
		p.changed.Broadcast() // a place is free
		p.mu.Unlock()
		close(c.done)
	}()
	if closed { // Close did not see it
		c.kill(errClosed)
		return nil, errClosed
	}
	lim := childLimits{MaxMemory: p.opts.MaxMemory, MaxCPU: p.opts.MaxCPU, MaxStack: 64 << 20,
		MaxFrame: childFrame, Seccomp: !p.opts.NoSeccomp}
	if _, err := c.exchange(&message{Op: opStart, Limits: &lim}, opReady, 30*time.Second); err != nil {
		return nil, fmt.Errorf("sandbox: child did not start: %w", err)
	}
	return c, nil
}

// exchange sends m and waits, at most d, for the answer op. On any
// failure the child is killed and the error says what it left behind.
func (c *proc) exchange(m *message, op string, d time.Duration) (*message, error) {
	c.conn.SetDeadline(time.Now().Add(d))
	defer c.conn.SetDeadline(time.Time{})
	err := c.l.send(m)
	var r *message
	if err == nil {
		r, err = c.l.recv()
	}
	switch {
	case err != nil:
		return nil, c.fail(err)
	case r.Op == opFailed:
		c.kill(errProtocol)
		return nil, fmt.Errorf("%s", r.Text)
	case r.Op != op:
		return nil, c.fail(fmt.Errorf("%w: got %q; want %q", errProtocol, r.Op, op))
	}
	return r, nil
}

// kill stops the child (once) for cause: its whole process group, and
// the channel, so that a read waiting on it returns at once.
func (c *proc) kill(cause error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	c.mu.Unlock()
	select {
	case <-c.done: // reaped: its pid may be another process's now
	default:
		killGroup(c.cmd.Process)
	}
	c.conn.Close()
}

// reaped waits, at most a few seconds, for the child to be reaped.
func (c *proc) reaped() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// fail ends the child after a channel error and returns what ended it.
func (c *proc) fail(err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.kill(errNoAnswer)
	case errors.Is(err, errProtocol) || errors.Is(err, errFrameTooLarge):
		c.kill(errProtocol)
	}
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
		c.kill(errProtocol) // alive but not answering
		c.reaped()
	}
	return c.exitError(err)
}

// Cause is why a child ended.
type Cause string

// Causes.
const (
	CauseMemory   Cause = "memory cap"
	CauseCPU      Cause = "CPU limit"
	CauseWall     Cause = "time limit"
	CauseCanceled Cause = "canceled"
	CauseCrash    Cause = "crash"
	CauseProtocol Cause = "protocol"
	CauseIdle     Cause = "idle"
	CauseClosed   Cause = "closed"
	CauseNoAnswer Cause = "no answer"
	// CauseCallTimeout: an exported function did not return within
	// Options.CallTimeout.
	CauseCallTimeout Cause = "exported call timeout"
)

// ExitError reports a child that ended during a request: killed by the
// host (a limit, a cancel) or dead on its own (a crash, the kernel's
// limits). The session's Go state is gone with it.
type ExitError struct {
	Cause Cause
	// Detail says more: the limit, or what the child printed as it died
	// (clipped).
	Detail string
	err    error
}

func (e *ExitError) Error() string {
	switch e.Cause {
	case CauseMemory:
		return "the interpreter process passed its memory cap (" + e.Detail + ") and was stopped"
	case CauseCPU:
		return "the interpreter process used up its CPU time (" + e.Detail + ") and was stopped"
	case CauseWall:
		return "the evaluation ran past its time limit; the interpreter process was stopped"
	case CauseCanceled:
		return "canceled; the interpreter process was stopped"
	case CauseCrash:
		return "the interpreter process crashed: " + e.Detail
	case CauseIdle:
		return "the interpreter process was stopped after " + e.Detail + " without a request"
	case CauseClosed:
		return "the console is closing"
	case CauseNoAnswer:
		return "the interpreter process did not answer in time and was stopped"
	case CauseCallTimeout:
		return "an exported function did not return within " + e.Detail + "; the interpreter process was stopped (the function is left to finish)"
	}
	return "the interpreter process broke the channel and was stopped: " + e.Detail
}

// Unwrap returns the cause the host stopped the child for, if any
// (context.DeadlineExceeded for the time limit, the request's cancel
// cause), so errors.Is sees it.
func (e *ExitError) Unwrap() error { return e.err }

// exitError describes how the child ended. It must be reaped.
func (c *proc) exitError(chanErr error) *ExitError {
	c.mu.Lock()
	cause := c.cause
	c.mu.Unlock()
	opts := c.pool.opts
	switch {
	case cause == errMemoryCap:
		return &ExitError{Cause: CauseMemory, Detail: bytesString(opts.MaxMemory), err: cause}
	case cause == errWall:
		return &ExitError{Cause: CauseWall, Detail: opts.Interp.Timeout.String(), err: context.DeadlineExceeded}
	case cause == errIdle:
		return &ExitError{Cause: CauseIdle, Detail: opts.IdleTimeout.String(), err: cause}
	case cause == errClosed:
		return &ExitError{Cause: CauseClosed, err: cause}
	case cause == errProtocol:
		return &ExitError{Cause: CauseProtocol, Detail: errString(chanErr), err: cause}
	case cause == errNoAnswer:
		return &ExitError{Cause: CauseNoAnswer, err: cause}
	case cause == errCallTimeout:
		return &ExitError{Cause: CauseCallTimeout, Detail: opts.CallTimeout.String(), err: cause}
	case cause != nil: // the request's own cancel cause
		return &ExitError{Cause: CauseCanceled, err: cause}
	}
	st := c.cmd.ProcessState
	head, tail := c.stderr.text()
	if st != nil {
		if killedBySignal(st) && st.UserTime()+st.SystemTime() >= opts.MaxCPU-time.Second {
			return &ExitError{Cause: CauseCPU, Detail: opts.MaxCPU.String()}
		}
	}
	if outOfMemory(head) {
		return &ExitError{Cause: CauseMemory, Detail: bytesString(opts.MaxMemory)}
	}
	detail := crashSummary(head, tail)
	if detail == "" && st != nil {
		detail = st.String()
	}
	return &ExitError{Cause: CauseCrash, Detail: detail}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// outOfMemory reports whether the child's last words are the runtime's
// for a refused allocation.
func outOfMemory(stderr string) bool {
	for _, s := range []string{"out of memory", "cannot allocate memory", "pthread_create failed"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

// crashSummary picks the lines that say why a child died: the runtime's
// "fatal error" or "panic" lines, else the last lines; clipped.
func crashSummary(head, tail string) string {
	var picked []string
	for _, line := range strings.Split(head, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "panic:") ||
			strings.HasPrefix(line, "runtime: goroutine stack exceeds") || strings.HasPrefix(line, "SIG") {
			picked = append(picked, line)
		}
	}
	if len(picked) == 0 {
		lines := strings.Split(strings.TrimSpace(tail), "\n")
		picked = lines[max(len(lines)-3, 0):]
	}
	s := strings.Join(picked, "; ")
	if len(s) > maxDetail {
		s = s[:maxDetail] + "…"
	}
	return s
}

const maxDetail = 300

func bytesString(n uint64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// stderrTail keeps the first and the last few KiB a child writes to its
// standard error.
type stderrTail struct {
	mu    sync.Mutex
	head  []byte
	tail  []byte
	total int
}

const stderrKeep = 4 << 10

// errStderrFlood stops copying a child's standard error: a child that
// writes more than stderrMax is not saying why it dies, and the host does
// not spend its CPU reading it (the child blocks on its writes).
var errStderrFlood = errors.New("sandbox: the child writes too much to its standard error")

const stderrMax = 1 << 20

func (s *stderrTail) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total += len(p); s.total > stderrMax {
		return 0, errStderrFlood
	}
	n := len(p)
	if room := stderrKeep - len(s.head); room > 0 {
		k := min(room, len(p))
		s.head = append(s.head, p[:k]...)
		p = p[k:]
	}
	s.tail = append(s.tail, p...)
	if len(s.tail) > stderrKeep {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-stderrKeep:]...)
	}
	return n, nil
}

func (s *stderrTail) text() (head, tail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.head), string(s.head) + string(s.tail)
}

// Spec is what a session's interpreter is built with.
type Spec struct {
	// Packages are the exported packages its interpreter contains.
	Packages []string
	// Allow is asked before every call of an exported function, with the
	// function's package; false refuses the call. Default: allow.
	Allow func(pkg string) bool
}

// Interpreter is one session's interpreter, in its own child process. Its
// methods are safe for one caller at a time, except that Complete may be
// called while an Eval runs (it then returns nothing).
type Interpreter struct {
	pool *Pool
	c    *proc
	spec Spec
	pkgs map[string]bool

	mu       sync.Mutex // one request at a time
	spent    bool
	dead     bool
	why      string // why it was released, when the host released it
	closed   bool
	lastUsed atomic.Int64 // unix nanoseconds of the last request's end
	idle     *time.Timer
	calls    *rate.Limiter
	callFree time.Time // the earliest start of the next exported call (CallShare); the eval's goroutine's
}

// Start gives a session an interpreter: a spare child (or a new one) is
// loaded with the exports of spec.Packages.
func (p *Pool) Start(ctx context.Context, spec Spec) (*Interpreter, error) {
	descs := make([]exportDesc, 0, 8)
	pkgs := map[string]bool{}
	for _, pkg := range spec.Packages {
		names := p.opts.Exports.Names(pkg)
		if len(names) == 0 {
			return nil, fmt.Errorf("sandbox: package %q is not exported", pkg)
		}
		pkgs[pkg] = true
		for _, name := range names {
			sym, _ := p.opts.Exports.Symbol(pkg, name)
			descs = append(descs, exportDesc{Pkg: pkg, Name: name, Type: refOf(sym.Type), Func: sym.Func.IsValid(), Value: sym.Snapshot})
		}
	}
	c, err := p.take(ctx)
	if err != nil {
		return nil, err
	}
	im := &initMsg{Interp: limitsOf(p.opts.Interp), Packages: spec.Packages, Exports: descs}
	if _, err := c.exchange(&message{Op: opInit, Init: im}, opReady, 30*time.Second); err != nil {
		return nil, fmt.Errorf("sandbox: load the interpreter: %w", err)
	}
	in := &Interpreter{pool: p, c: c, spec: spec, pkgs: pkgs, calls: rate.NewLimiter(rate.Limit(p.opts.CallRate), p.opts.CallRate)}
	in.lastUsed.Store(time.Now().UnixNano())
	in.idle = time.AfterFunc(p.opts.IdleTimeout, in.release)
	p.mu.Lock()
	p.users[in] = true
	p.mu.Unlock()
	return in, nil
}

// evalEnded notes that in is free again: it may be reclaimed, and a
// session waiting for a place may take it.
func (p *Pool) evalEnded(in *Interpreter) {
	in.lastUsed.Store(time.Now().UnixNano())
	p.mu.Lock()
	p.changed.Broadcast()
	p.mu.Unlock()
}

// release stops an idle child; the session's next eval gets a new one.
func (in *Interpreter) release() {
	if !in.mu.TryLock() {
		in.idle.Reset(in.pool.opts.IdleTimeout) // busy: not idle (or closing: Close stops the timer after)
		return
	}
	defer in.mu.Unlock()
	if !in.dead {
		in.c.kill(errIdle)
		in.dead = true
		in.why = fmt.Sprintf("the interpreter process was stopped after %s without a request", in.pool.opts.IdleTimeout)
	}
}

// Released reports why the interpreter can no longer be used ("" while it
// can): it served its evals, its child was stopped after the idle
// timeout, or its child is gone.
func (in *Interpreter) Released() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.why != "":
		return in.why
	case in.dead:
		return "the interpreter process has ended"
	case in.spent:
		return "the interpreter was recycled after its evaluation limit"
	}
	return ""
}

// Close stops the child. It is idempotent.
func (in *Interpreter) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	defer in.idle.Stop() // after the lock: a release that found it held re-armed the timer
	in.dead, in.closed = true, true
	in.c.kill(errClosed)
	in.c.reaped()
	in.pool.mu.Lock()
	delete(in.pool.users, in)
	in.pool.mu.Unlock()
	return nil
}

// Eval runs src in the child, streaming its output to out, and returns
// the value of a final expression, like interp.Interpreter.Eval, with the
// same errors for the same outcomes. When the child ends during the eval
// (a cancel, the time limit, its memory cap or CPU limit, a crash) it
// returns an *ExitError, and the interpreter is gone: Close it and start
// another.
func (in *Interpreter) Eval(ctx context.Context, src string, out io.Writer) (string, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead {
		return "", interp.ErrReset
	}
	in.idle.Reset(in.pool.opts.IdleTimeout)
	defer in.pool.evalEnded(in)
	c := in.c
	// The child stops itself at the eval's time limit; past a grace
	// period (checking the source comes first, and a busy machine is
	// slow) it is killed.
	limit := in.pool.opts.Interp.Timeout
	ctx, cancel := context.WithTimeoutCause(ctx, limit+limit/2+2*time.Second, errWall)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.kill(context.Cause(ctx)) })
	defer stop()
	watch := c.watchMemory()
	defer watch.Stop()

	r := &evalRun{in: in, ctx: ctx, out: &eventOut{w: out}}
	if err := c.l.send(&message{Op: opEval, Src: src}); err != nil {
		return "", in.died(err)
	}
	// Frames are handled here until the first call of an exported
	// function. From there on the rest of the eval runs on a goroutine of
	// its own, calls inline (no handoff per call), and this one waits for
	// it, for a call that does not return in time, and for the context.
	var m *message
	for {
		var err error
		if m, err = c.l.recv(); err != nil {
			return "", in.died(err)
		}
		if m.Op == opCall {
			break
		}
		if done, err := r.step(m); done || err != nil {
			return in.finish(r, m, err, stop)
		}
	}
	res := make(chan error, 1)
	go func() { res <- r.rest(m) }()
	select {
	case err := <-res:
		return in.finish(r, r.last, err, stop)
	case <-r.stuck():
		c.kill(errCallTimeout)
	case <-ctx.Done():
	}
	// The eval's goroutine is in an exported function that has not
	// returned (the child is being killed, so it ends when the function
	// does): leave it, and what it would still print.
	r.out.abandon()
	select {
	case err := <-res:
		return in.finish(r, r.last, err, stop)
	case <-time.After(100 * time.Millisecond):
	}
	in.dead = true
	c.reaped()
	return "", c.exitError(nil)
}

// evalRun is the state of one eval on the host side.
type evalRun struct {
	in      *Interpreter
	ctx     context.Context
	out     *eventOut
	printed int
	value   []byte
	last    *message // the frame that ended the eval

	mu   sync.Mutex
	late chan struct{} // closed when a call passes CallTimeout
}

// stuck returns a channel closed when an exported call runs past
// CallTimeout.
func (r *evalRun) stuck() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.late == nil {
		r.late = make(chan struct{})
	}
	return r.late
}

// rest handles the eval's frames from m (a call) to its result.
func (r *evalRun) rest(m *message) error {
	for {
		if done, err := r.step(m); done || err != nil {
			r.last = m
			return err
		}
		var err error
		if m, err = r.in.c.l.recv(); err != nil {
			return err
		}
	}
}

// step handles one frame of the eval; done is true for its result.
func (r *evalRun) step(m *message) (done bool, err error) {
	opts := r.in.pool.opts
	switch m.Op {
	case opValue:
		if len(r.value)+len(m.Data) > maxValue(opts.Interp.MaxOutput) {
			return false, fmt.Errorf("%w: a value past the limit", errProtocol)
		}
		r.value = append(r.value, m.Data...)
	case opOut:
		if r.printed += len(m.Data); r.printed > opts.Interp.MaxOutput+outChunk {
			return false, fmt.Errorf("%w: output past the limit", errProtocol)
		}
		r.out.Write(m.Data)
	case opCall:
		r.mu.Lock()
		stuck := r.late
		if stuck == nil {
			stuck = make(chan struct{})
			r.late = stuck
		}
		r.mu.Unlock()
		t := time.AfterFunc(opts.CallTimeout, func() { close(stuck) })
		reply := r.in.call(r.ctx, m)
		if !t.Stop() {
			return false, errCallTimeout
		}
		return false, r.in.c.l.send(reply)
	case opResult:
		return true, nil
	default:
		return false, fmt.Errorf("%w: unexpected %q", errProtocol, m.Op)
	}
	return false, nil
}

// finish ends an eval whose last frame was m (its result, unless err).
func (in *Interpreter) finish(r *evalRun, m *message, err error, stop func() bool) (string, error) {
	if err != nil {
		return "", in.died(err)
	}
	if !stop() { // the kill for the deadline or cancel has begun
		in.dead = true
		in.c.reaped()
		return "", in.c.exitError(nil)
	}
	if m.Kind == kindOK && len(r.value) > 0 {
		if len(r.value)+len(m.Data) > maxValue(in.pool.opts.Interp.MaxOutput) {
			return "", in.died(fmt.Errorf("%w: a value past the limit", errProtocol))
		}
		m.Data = append(r.value, m.Data...)
	}
	return in.result(m)
}

// eventOut passes an eval's output on, until the eval is abandoned.
type eventOut struct {
	mu        sync.Mutex
	w         io.Writer
	abandoned bool
}

func (o *eventOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.abandoned {
		return 0, io.ErrClosedPipe
	}
	return o.w.Write(p)
}

func (o *eventOut) abandon() {
	o.mu.Lock()
	o.abandoned = true
	o.mu.Unlock()
}

func (in *Interpreter) died(err error) error {
	in.dead = true
	if errors.Is(err, errCallTimeout) {
		in.c.kill(errCallTimeout)
	}
	return in.c.fail(err)
}

// result maps the child's result to interp's outcomes. A stopped eval
// ends the child (it exits by itself; it is killed if it lingers).
func (in *Interpreter) result(m *message) (string, error) {
	in.spent = in.spent || m.Spent
	var err error
	switch m.Kind {
	case kindOK:
		return string(m.Data), nil // formatted and bounded by the child; a frame bounds it here
	case kindIncomplete:
		return "", interp.ErrIncomplete
	case kindCheck:
		return "", &interp.CheckError{Msg: m.Text}
	case kindEval:
		return "", &interp.EvalError{Msg: m.Text}
	case kindTimeout:
		err = context.DeadlineExceeded
	case kindOutput:
		err = interp.ErrOutputLimit
	case kindMemory:
		err = interp.ErrMemoryLimit
	default:
		err = interp.ErrReset
	}
	in.dead = true
	in.c.kill(errStopped)
	in.c.reaped()
	return "", err
}

// watchMemory kills the child when its resident set passes the cap, as
// long as the returned timer is not stopped: it looks every 10 ms. (The
// data limit in the child is the kernel's own cap; this one also holds
// where that cannot apply.) A timer, not a goroutine: an eval does not
// pay for waking one.
func (c *proc) watchMemory() *stoppable {
	w := &stoppable{c: c}
	w.mu.Lock()
	w.t = time.AfterFunc(10*time.Millisecond, w.check)
	w.mu.Unlock()
	return w
}

// stoppable is a timer that re-arms itself until stopped.
type stoppable struct {
	c       *proc
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (w *stoppable) check() {
	if rss, ok := residentBytes(w.c.cmd.Process.Pid); ok && rss > w.c.pool.opts.MaxMemory {
		w.c.kill(errMemoryCap)
		return
	}
	w.mu.Lock()
	if !w.stopped {
		w.t.Reset(10 * time.Millisecond)
	}
	w.mu.Unlock()
}

func (w *stoppable) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.t.Stop()
	w.mu.Unlock()
}

// call runs one exported function for the child: it must be in the
// session's packages and still allowed. Decoding the arguments, the call
// and encoding the results all run the application's code (its methods
// and JSON methods), so they run together, with a deadline and a recover.
func (in *Interpreter) call(ctx context.Context, m *message) *message {
	ret := func(format string, args ...any) *message {
		return &message{Op: opRet, Text: fmt.Sprintf(format, args...)}
	}
	sym, ok := in.pool.opts.Exports.Symbol(m.Pkg, m.Name)
	if !ok || !sym.Func.IsValid() || !in.pkgs[m.Pkg] {
		return ret("no such exported function")
	}
	if in.spec.Allow != nil && !in.spec.Allow(m.Pkg) {
		return ret("not permitted (policy object pkg:%s, action import)", m.Pkg)
	}
	if err := in.calls.Wait(ctx); err != nil {
		return ret("%v", context.Cause(ctx))
	}
	if wait := time.Until(in.callFree); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ret("%v", context.Cause(ctx))
		}
	}
	if n := in.pool.running.Load(); n >= maxRunning {
		return ret("%d exported calls made from interpreters have not returned; try again later", n)
	}
	start := time.Now()
	results, err := in.pool.invoke(m.Pkg+"."+m.Name, sym, m.Values)
	d := time.Since(start)
	in.callFree = time.Now().Add(time.Duration(float64(d) * (1/in.pool.opts.CallShare - 1)))
	if err != nil {
		return ret("%v", err)
	}
	if len(results) > hostFrame-64<<10 {
		return ret("the results take %d bytes; at most %d cross to the interpreter", len(results), hostFrame-64<<10)
	}
	return &message{Op: opRet, Values: results}
}

// invoke decodes the arguments, calls an exported function and encodes
// its results; a panic anywhere in that (the application's function, its
// JSON or Error methods) becomes an error. It runs on the eval's own
// goroutine, which the session leaves behind if the function does not
// return within CallTimeout (see Eval).
func (p *Pool) invoke(name string, sym interp.Symbol, raw json.RawMessage) (out json.RawMessage, err error) {
	p.running.Add(1)
	defer p.running.Add(-1)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("sandbox: an exported function panicked", "func", name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			out, err = nil, fmt.Errorf("panicked: %v", r)
		}
	}()
	args, err := decodeValues(ins(sym.Type), raw, "argument")
	if err != nil {
		return nil, err
	}
	var res []reflect.Value
	if sym.Type.IsVariadic() {
		res = sym.Func.CallSlice(args)
	} else {
		res = sym.Func.Call(args)
	}
	return encodeValues(res, "result")
}

// Complete returns completions of word, or nothing while an eval runs.
func (in *Interpreter) Complete(word string) []string {
	if !in.mu.TryLock() {
		return nil
	}
	defer in.mu.Unlock()
	if in.dead {
		return nil
	}
	in.idle.Reset(in.pool.opts.IdleTimeout)
	r, err := in.c.exchange(&message{Op: opComplete, Src: word}, opItems, 5*time.Second)
	if err != nil {
		in.dead = true
		return nil
	}
	if len(r.Data) == 0 {
		return nil
	}
	items := strings.Split(string(r.Data), "\n")
	items = items[:min(len(items), maxItems)]
	sort.Strings(items)
	return items
}

// Vars writes what the interpreter can reach (see interp.Interpreter.Vars).
func (in *Interpreter) Vars(w io.Writer) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead {
		return interp.ErrReset
	}
	in.idle.Reset(in.pool.opts.IdleTimeout)
	r, err := in.c.exchange(&message{Op: opVars}, opItems, 5*time.Second)
	if err != nil {
		in.dead = true
		return err
	}
	_, err = w.Write(r.Data)
	return err
}

// PID returns the child's process id.
func (in *Interpreter) PID() int { return in.c.cmd.Process.Pid }

// Resident returns the child's resident set size, in bytes (0 where the
// platform does not say).
func (in *Interpreter) Resident() uint64 {
	n, _ := residentBytes(in.PID())
	return n
}
