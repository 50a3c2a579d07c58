package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opsrepl/opsrepl/access"

	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/sandbox"
)

// evaluator is a session's Go interpreter: in a child process of its own
// (package sandbox), or, when the embedder opted in, in this process.
type evaluator interface {
	Eval(ctx context.Context, src string, out io.Writer) (string, error)
	// Complete returns completions of a Go identifier or pkg.Member.
	Complete(word string) []string
	// Vars writes what the interpreter can reach.
	Vars(w io.Writer) error
	// Released says why the evaluator can serve no more evals ("" while
	// it can).
	Released() string
	Close() error
}

// inProcess adapts an interpreter in this process to evaluator.
type inProcess struct{ *interp.Interpreter }

func (p inProcess) Vars(w io.Writer) error { p.Interpreter.Vars(w); return nil }
func (p inProcess) Close() error           { return nil }
func (p inProcess) Released() string {
	if p.Spent() {
		return "the interpreter was recycled after its evaluation limit"
	}
	return ""
}

// newEvaluators decides where the sessions' Go runs: in child processes
// when the program calls sandbox.Main (the default), in this process when
// Options.InProcessEval says so, and nowhere otherwise, with an error for
// every eval that says what to add.
func (s *Server) newEvaluators() {
	if s.opts.InProcessEval {
		s.log.Warn("console: Go evaluation runs inside this process (Options.InProcessEval): an evaluation can crash or exhaust the service")
		return
	}
	so := s.opts.Sandbox
	so.Exports, so.Interp, so.Logger = s.opts.Exports, s.opts.Interp, s.log
	pool, err := sandbox.New(so)
	switch {
	case err == nil:
		s.pool = pool
		return
	case errors.Is(err, sandbox.ErrNotInstalled):
		s.evalOff = wire.Errorf(wire.CodeUnavailable, "Go evaluation is off: this program does not call sandbox.Main() first in its main function, so it cannot run the interpreter in a child process. Add that line (see the ops-repl README, Embedding), or set console.Options.InProcessEval to evaluate inside the service, which is unsafe")
	case errors.Is(err, sandbox.ErrUnsupported):
		s.evalOff = wire.Errorf(wire.CodeUnavailable, "Go evaluation is off: interpreter child processes are supported on Linux only; set console.Options.InProcessEval to evaluate inside the service, which is unsafe")
	default:
		s.evalOff = wire.Errorf(wire.CodeUnavailable, "Go evaluation is off: %v", err)
	}
	s.log.Error("console: Go evaluation is off", "why", s.evalOff.Message)
}

// evaluate runs authorized Go source for the run r in the session's
// interpreter.
func (s *session) evaluate(ctx context.Context, r *run, line, src string) (string, error) {
	in, err := s.interpreter(ctx, r.req.ID)
	if err != nil {
		return "", err
	}
	ew := r.out
	value, err := in.Eval(ctx, src, ew)
	if errors.Is(err, interp.ErrReset) {
		// Its process was released (idle, or to make room) between the
		// check and the eval: nothing ran; start again, once.
		if in, err = s.interpreter(ctx, r.req.ID); err != nil {
			return "", err
		}
		value, err = in.Eval(ctx, src, ew)
	}
	if err != nil && !errors.Is(err, interp.ErrIncomplete) && !isEvalError(err) {
		// Stopped mid-run (yaegi may resume stopped code), or its process
		// ended: either way its state is gone.
		why := "the interpreter was stopped mid-eval and has been reset"
		var ee *sandbox.ExitError
		if errors.As(err, &ee) {
			why = "the interpreter was reset (its process ended: " + string(ee.Cause) + ")"
			r.rec.Detail = "interpreter process: " + string(ee.Cause)
			if ee.Detail != "" {
				r.rec.Detail += ": " + ee.Detail
			}
		}
		s.dropInterp(r.req.ID, why)
	}
	if err != nil && isWord(line) && strings.Contains(err.Error(), "undefined: "+line) {
		err = wire.Errorf(wire.CodeEval, "undefined: %s (it is not a command either; type help)", line)
	}
	return value, err
}

// dropInterp discards the session's interpreter and, if why is not "",
// tells the client (for request id) that its Go state is gone.
func (s *session) dropInterp(id uint64, why string) {
	if s.interp == nil {
		return
	}
	s.interp.Close()
	s.interp = nil
	if why != "" {
		s.sendEvent(wire.Event{Type: wire.EventNotice, ID: id, Message: why + ": your Go variables and imports are gone"})
	}
}

// interpreter returns the session's interpreter, building it on first use
// with the exported packages this subject may import, and replacing it
// (with a notice for request id) when the policy changed those packages or
// it can serve no more evals. The worker holds imu.
func (s *session) interpreter(ctx context.Context, id uint64) (evaluator, error) {
	if s.srv.evalOff != nil {
		return nil, s.srv.evalOff
	}
	pkgs := s.grantedPackages()
	if s.interp != nil && !slices.Equal(pkgs, s.interpPkgs) {
		// The policy changed what this subject may import: a package
		// taken away must be gone now, not when the session ends.
		s.dropInterp(id, "the packages you may import changed (policy reload): the interpreter was rebuilt")
	}
	if s.interp != nil {
		if why := s.interp.Released(); why != "" {
			s.dropInterp(id, why)
		}
	}
	if s.interp != nil {
		return s.interp, nil
	}
	if s.srv.pool == nil {
		opts := s.srv.opts.Interp
		opts.Exports, opts.Packages = s.srv.opts.Exports, pkgs
		in, err := interp.New(opts)
		if err != nil {
			return nil, fmt.Errorf("console: build interpreter: %w", err)
		}
		s.interp, s.interpPkgs = inProcess{in}, pkgs
		return s.interp, nil
	}
	in, err := s.srv.pool.Start(ctx, sandbox.Spec{Packages: pkgs, Allow: func(pkg string) bool {
		// Every exported call is checked against the policy in force now.
		return s.allowed(access.PackagePrefix + pkg)
	}})
	if errors.Is(err, sandbox.ErrBusy) {
		return nil, wire.Errorf(wire.CodeBusy, "every interpreter process this console allows (%d) is in use; try again when a session ends", s.srv.pool.Options().MaxChildren)
	}
	if err != nil {
		s.srv.log.Error("console: cannot start an interpreter process", "session", s.id, "err", err)
		return nil, wire.Errorf(wire.CodeUnavailable, "the interpreter process could not start (see the server log): %v", err)
	}
	s.interp, s.interpPkgs = in, pkgs
	return in, nil
}

// completeGo completes a Go identifier or pkg.Member: from the session's
// interpreter when it has one and no request is running, else from the
// packages it would have. It never waits for the worker.
func (s *session) completeGo(word string) []string {
	if s.srv.evalOff != nil {
		return nil
	}
	if s.imu.TryLock() {
		defer s.imu.Unlock()
		if s.interp != nil && s.interp.Released() == "" {
			return s.interp.Complete(word)
		}
	}
	return interp.Completions(s.srv.opts.Exports, s.grantedPackages(), word)
}

// grantedPackages returns the exported packages the subject may import
// now.
func (s *session) grantedPackages() []string {
	var pkgs []string
	for _, p := range s.srv.opts.Exports.Packages() {
		if s.allowed(access.PackagePrefix + p) {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

func isEvalError(err error) bool {
	var ce *interp.CheckError
	var ee *interp.EvalError
	return errors.As(err, &ce) || errors.As(err, &ee)
}
