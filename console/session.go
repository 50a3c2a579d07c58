package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/opsrepl/opsrepl/access"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/sandbox"
)

const (
	chunkBytes = 32 << 10 // output event size
	fileChunk  = 32 << 10 // file transfer chunk size (bounds memory while streaming)
	outQueue   = 64       // frames waiting for the writer
)

var errCanceled = errors.New("canceled by the client")

// queued is a run request waiting for the worker, with its own context so
// a cancel reaches it whether it is waiting or running.
type queued struct {
	req wire.Request
	ctx context.Context
}

type frame struct {
	typ    int // websocket.TextMessage or BinaryMessage
	data   []byte
	pooled bool    // data came from chunkPool; the writer returns it
	more   []frame // text frames sent after it in the same write
}

// chunkPool recycles file-transfer chunks: streaming a large file then
// allocates next to nothing, instead of a heap's worth of garbage that a
// process with a large live heap would only collect much later.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, fileChunk); return &b }}

// session is one authenticated connection. Goroutines: serve (the reader),
// writer (the only one that writes to conn) and worker (runs requests one
// at a time, in order).
type session struct {
	srv     *Server
	conn    *websocket.Conn
	batch   *batchConn // conn's connection; nil in tests that build sessions by hand
	id      string
	subject string
	roles   []string
	remote  string
	client  string // User-Agent, for the audit
	start   time.Time
	limit   int // the session count it may open within (MaxSessions, less the reserve for others)

	ctx        context.Context
	cancel     context.CancelFunc
	out        chan frame
	wmu        sync.Mutex    // held while a frame is written
	queued     atomic.Int64  // frames sent to out and not yet written
	writerDone chan struct{} // closed when the writer has returned
	workerDone chan struct{} // closed when the worker has returned
	queue      chan queued
	closeOnce  sync.Once
	closeCode  int
	closeText  string
	closeBy    time.Time // guarded by mu

	mu      sync.Mutex
	pending map[uint64]context.CancelCauseFunc // queued or running requests
	reason  string                             // the operator's justification (reason command)

	limiter    *rate.Limiter // run and complete requests
	throttled  int64         // requests refused by limiter in a row (reader only)
	lastActive atomic.Int64  // unix nanoseconds of the last request
	idle       *time.Timer
	cast       *transcript // nil unless Options.TranscriptDir

	imu        sync.Mutex // held by the worker while it runs a request
	interp     evaluator  // guarded by imu; built on first eval
	interpPkgs []string   // the packages it was built with
}

func newSession(srv *Server, conn *websocket.Conn, subject, remote string) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		srv: srv, conn: conn, id: newID(), subject: subject, remote: remote, start: time.Now(),
		ctx: ctx, cancel: cancel,
		out:        make(chan frame, outQueue),
		writerDone: make(chan struct{}),
		workerDone: make(chan struct{}),
		queue:      make(chan queued, srv.opts.MaxQueued),
		pending:    map[uint64]context.CancelCauseFunc{},
		closeCode:  websocket.CloseNormalClosure,
		limiter:    srv.opts.RequestRate.limiter(),
	}
	s.lastActive.Store(s.start.UnixNano())
	if rl, ok := srv.opts.Authorizer.(interface{ Roles(string) []string }); ok {
		s.roles = rl.Roles(subject)
	}
	return s
}

// serve runs the session until the client leaves or the server closes it.
func (s *session) serve() {
	defer s.srv.unregister(s)
	open := audit.Record{Kind: audit.KindSession, Session: s.id, Subject: s.subject, Remote: s.remote, Client: s.client, Outcome: audit.OutcomeOpen}
	if dir := s.srv.opts.TranscriptDir; dir != "" {
		cast, err := openTranscript(dir, s.id, s.subject, s.remote, s.srv.opts.MaxTranscriptBytes, s.srv.castBudget)
		if err != nil {
			// The session was to be recorded: without its recording it
			// does not start.
			s.srv.log.Error("console: cannot record the session; refusing it", "session", s.id, "err", err)
			open.Outcome, open.Message = string(wire.CodeInternal), "transcript unavailable: "+err.Error()
			s.srv.auditWrite(open)
			s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "session recording unavailable"), time.Now().Add(time.Second))
			s.conn.Close()
			s.cancel()
			return
		}
		s.cast, open.Transcript = cast, cast.path
		cast.onStop = func(why string) {
			// A budget stopped the recording; the session goes on.
			s.srv.log.Warn("console: session recording stopped", "session", s.id, "why", why)
			s.srv.auditWrite(audit.Record{Kind: audit.KindNote, Session: s.id, Subject: s.subject, Remote: s.remote,
				Outcome: string(wire.CodeLimit), Transcript: cast.path, Message: "the session recording stopped: " + why})
		}
		cast.onFail = func(err error) {
			// The recording broke mid-session: say so where it is looked for.
			s.srv.log.Error("console: session recording stopped", "session", s.id, "err", err)
			s.srv.auditWrite(audit.Record{Kind: audit.KindNote, Session: s.id, Subject: s.subject, Remote: s.remote,
				Outcome: string(wire.CodeInternal), Transcript: cast.path, Message: "the session recording stopped: " + err.Error()})
		}
		defer cast.close()
	}
	s.srv.auditWrite(open)
	if s.srv.pool != nil && s.allowed(access.Eval) {
		s.srv.pool.Warm() // a spare interpreter process for the first eval
	}
	s.srv.log.Info("console: session open", "session", s.id, "subject", s.subject, "remote", s.remote)
	s.idle = time.AfterFunc(time.Hour, s.checkIdle)
	s.idle.Reset(s.srv.opts.IdleTimeout) // after the assignment checkIdle reads
	defer s.idle.Stop()

	var wg sync.WaitGroup
	readerDone := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); defer close(s.writerDone); s.writer(readerDone) }()
	go func() { defer wg.Done(); defer close(s.workerDone); s.worker() }()

	s.sendEvent(wire.Event{Type: wire.EventHello, Session: s.id, Subject: s.subject, Roles: s.roles, Server: wire.Subprotocol})
	s.reader()
	close(readerDone)
	s.flushThrottled()

	s.cancel()
	wg.Wait()
	if s.interp != nil {
		s.interp.Close() // its child process, if any, ends with the session
	}
	s.conn.Close()
	s.mu.Lock()
	why := s.closeText
	s.mu.Unlock()
	s.srv.auditWrite(audit.Record{Kind: audit.KindSession, Session: s.id, Subject: s.subject, Remote: s.remote,
		Outcome: audit.OutcomeClosed, Message: why, Transcript: open.Transcript, DurationMS: ms(time.Since(s.start))})
	s.srv.log.Info("console: session closed", "session", s.id, "subject", s.subject)
}

// flushThrottled audits, as one record with a count, the throttled
// requests after the first of a run of them. Reader goroutine only.
func (s *session) flushThrottled() {
	if s.throttled > 1 {
		s.srv.auditWrite(audit.Record{Kind: audit.KindOutcome, Session: s.id, Subject: s.subject, Remote: s.remote,
			Outcome: string(wire.CodeThrottled), Count: s.throttled - 1,
			Message: fmt.Sprintf("%d more requests refused: the session's request rate", s.throttled-1)})
	}
	s.throttled = 0
}

// checkIdle closes the session once it has been idle for IdleTimeout with
// no request running; otherwise it checks again when that could be.
func (s *session) checkIdle() {
	if s.ctx.Err() != nil {
		return
	}
	timeout := s.srv.opts.IdleTimeout
	s.mu.Lock()
	busy := len(s.pending) > 0
	s.mu.Unlock()
	since := time.Since(time.Unix(0, s.lastActive.Load()))
	if busy || since < timeout {
		s.idle.Reset(max(timeout-since, time.Second))
		return
	}
	s.srv.log.Info("console: closing an idle session", "session", s.id, "subject", s.subject, "idle", timeout)
	s.shutdown(websocket.CloseNormalClosure, fmt.Sprintf("idle timeout (%s without a request)", timeout))
}

// shutdown ends the session from the server side with a close frame. A
// write blocked on a client that stopped reading is cut short after
// closeGrace, so that no client holds a closing session (or Server.Close)
// longer.
func (s *session) shutdown(code int, text string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closeCode, s.closeText = code, text
		s.closeBy = time.Now().Add(closeGrace)
		s.mu.Unlock()
		s.cancel() // the writer sends the close frame, then closes
		s.conn.NetConn().SetWriteDeadline(s.closeBy)
	})
}

func (s *session) reader() {
	wait := 2 * s.srv.opts.PingInterval
	s.conn.SetReadLimit(s.srv.opts.MaxMessageBytes)
	s.conn.SetReadDeadline(time.Now().Add(wait))
	s.conn.SetPongHandler(func(string) error {
		if s.ctx.Err() == nil { // a closing session is not kept alive by pongs
			s.conn.SetReadDeadline(time.Now().Add(wait))
		}
		return nil
	})
	for {
		typ, msg, err := s.conn.ReadMessage()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				s.srv.log.Info("console: frame over the size limit", "session", s.id, "limit", s.srv.opts.MaxMessageBytes)
			case errors.As(err, &ne) && ne.Timeout():
				s.shutdown(websocket.CloseGoingAway, fmt.Sprintf("keepalive timeout: nothing from the client for %s", wait))
			}
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		s.conn.SetReadDeadline(time.Now().Add(wait))
		req, err := wire.DecodeRequest(msg)
		if typ != websocket.TextMessage {
			req, err = wire.Request{}, wire.Errorf(wire.CodeBadRequest, "binary frames are not accepted from clients; send JSON text frames")
		}
		if err != nil {
			// Refused before it could run: audited like any refusal (the
			// frame as its line, clipped), within the session's request
			// rate like any request.
			if req.Line == "" {
				req.Line = string(msg)
			}
			req.Type = wire.TypeRun
			if s.limiter.Allow() {
				s.flushThrottled()
				s.refuse(req, publicError(err))
				continue
			}
		}
		if req.Type == wire.TypeRun || req.Type == wire.TypeComplete {
			s.lastActive.Store(time.Now().UnixNano())
			if err != nil || !s.limiter.Allow() {
				we := wire.Errorf(wire.CodeThrottled, "more than %g requests per second in this session (bursts of %d); slow down", s.srv.opts.RequestRate.PerSecond, s.srv.opts.RequestRate.Burst)
				if req.Type == wire.TypeRun && s.throttled == 0 {
					s.refuse(req, we) // the first of a run of refusals is audited in full
				} else {
					s.cast.input(s.subject, clipText(req.Line))
					s.answer(req.ID, we)
				}
				s.throttled++
				continue
			}
			s.flushThrottled()
		}
		switch req.Type {
		case wire.TypeRun:
			s.enqueue(req)
		case wire.TypeComplete:
			if s.inFlight(req.ID) {
				s.answer(req.ID, wire.Errorf(wire.CodeBadRequest, "a complete must not use the id of a request in flight"))
				continue
			}
			s.complete(req)
		case wire.TypeCancel:
			s.mu.Lock()
			if stop := s.pending[req.Target]; stop != nil {
				stop(errCanceled)
			}
			s.mu.Unlock()
		}
	}
}

func (s *session) enqueue(req wire.Request) {
	ctx, stop := context.WithCancelCause(s.ctx)
	s.mu.Lock()
	if _, dup := s.pending[req.ID]; dup {
		s.mu.Unlock()
		stop(nil)
		s.refuse(req, wire.Errorf(wire.CodeBadRequest, "a run must not reuse it"))
		return
	}
	s.pending[req.ID] = stop
	s.mu.Unlock()
	select {
	case s.queue <- queued{req: req, ctx: ctx}:
	default:
		s.finish(req.ID)
		s.refuse(req, wire.Errorf(wire.CodeBusy, "%d requests are already waiting in this session; wait for them or cancel one", cap(s.queue)))
	}
}

// refuse answers a run request that was not queued, and audits it: its
// intent (never run) and its outcome.
func (s *session) refuse(req wire.Request, we *wire.Error) {
	s.cast.input(s.subject, clipText(req.Line))
	id, we := s.answer(req.ID, we)
	rec := s.record(req)
	rec.Request = id // 0 for an id in flight: its own records keep that id
	clipLine(&rec)
	s.srv.auditWrite(rec)
	s.srv.auditWrite(s.outcome(rec, string(we.Code), clipText(we.Message), nil, 0))
}

// inFlight reports whether a run with id waits or runs.
func (s *session) inFlight(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	return ok
}

// answer sends the error that refuses a frame to the frame's id, unless a
// request in flight has that id: that request's one final event is still
// to come, so the refusal goes to id 0 and names the id. It returns the id
// and the error it answered with.
func (s *session) answer(id uint64, we *wire.Error) (uint64, *wire.Error) {
	if id != 0 && s.inFlight(id) {
		we = wire.Errorf(we.Code, "a frame with id %d, the id of a request in flight: %s", id, we.Message)
		id = 0
	}
	s.sendError(id, we)
	return id, we
}

// clipKeep is how much of a refused request's line its record keeps.
const clipKeep = 4 << 10

// clipLine shortens the line of a request that did not run (refused or
// denied) to its start, and records its length and SHA-256: a flood of
// large refused lines cannot fill the audit log.
func clipLine(r *audit.Record) {
	if len(r.Line) <= clipKeep {
		return
	}
	cut := clipKeep
	for cut > 0 && !utf8.RuneStart(r.Line[cut]) {
		cut--
	}
	r.LineBytes, r.LineSHA256 = int64(len(r.Line)), sha256Hex([]byte(r.Line))
	r.Line = r.Line[:cut]
}

// clipText is a refused line as a transcript keeps it: its start, then
// its length (the audit record has its hash).
func clipText(line string) string {
	if len(line) <= clipKeep {
		return line
	}
	cut := clipKeep
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… [%d bytes in all]", line[:cut], len(line))
}

// record is the intent record of a request, before any decision.
func (s *session) record(req wire.Request) audit.Record {
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	return audit.Record{Time: time.Now(), Kind: audit.KindIntent, Session: s.id, Subject: s.subject, Remote: s.remote,
		Request: req.ID, Fleet: req.Fleet, Line: req.Line, Reason: reason}
}

// outcome is the outcome record that goes with intent.
func (s *session) outcome(intent audit.Record, code, msg string, t *tally, d time.Duration) audit.Record {
	r := audit.Record{Kind: audit.KindOutcome, Session: s.id, Subject: s.subject, Remote: s.remote, Request: intent.Request,
		Object: intent.Object, Decision: intent.Decision, Outcome: code, Message: msg, Detail: intent.Detail, DurationMS: ms(d)}
	if t != nil {
		if t.n > 0 {
			r.OutputBytes, r.OutputSHA256 = t.n, hex.EncodeToString(t.h.Sum(nil))
		}
		r.Files = t.files
	}
	return r
}

// tally counts and hashes the text output a request sends back, and
// lists its files. A file's bytes are not hashed again: its SHA-256 is
// announced with it, and the client checks the bytes against it.
type tally struct {
	n     int64 // text output, for Options.MaxOutputBytes
	h     hash.Hash
	files []audit.File
}

func newTally() *tally { return &tally{h: sha256.New()} }

func (t *tally) add(b []byte) {
	t.n += int64(len(b))
	t.h.Write(b)
}

// intent writes a request's intent record and syncs it to disk before the
// request may run. When that fails the request is refused: nothing runs
// unaudited.
func (s *session) intent(rec audit.Record) error {
	if err := s.srv.opts.Audit.WriteSync(rec); err != nil {
		s.srv.log.Error("console: cannot write the audit record; refusing the request", "session", s.id, "request", rec.Request, "err", err)
		return wire.Errorf(wire.CodeInternal, "the audit log cannot be written, so the request was refused (see the server log)")
	}
	return nil
}

func (s *session) finish(id uint64) {
	s.mu.Lock()
	if stop := s.pending[id]; stop != nil {
		stop(nil)
	}
	delete(s.pending, id)
	s.mu.Unlock()
}

func (s *session) worker() {
	for {
		select {
		case <-s.ctx.Done():
			// Every request still waiting gets its final event too.
			for {
				select {
				case q := <-s.queue:
					s.finish(q.req.ID)
					s.refuse(q.req, wire.Errorf(wire.CodeUnavailable, "session closing: the request did not run"))
				default:
					return
				}
			}
		case q := <-s.queue:
			s.imu.Lock()
			s.handle(q.ctx, q.req)
			s.imu.Unlock()
		}
	}
}

// closeGrace is how long a closing session waits for the client to answer
// its close frame before dropping the connection.
const closeGrace = time.Second

// writer is the only goroutine that writes to the connection. It also
// ends the connection: at once when a write fails (a client that does not
// read), and closeGrace after the close frame otherwise, so that no client
// can keep a closed session, or Server.Close, waiting.
func (s *session) writer(readerDone <-chan struct{}) {
	ping := time.NewTicker(s.srv.opts.PingInterval)
	defer ping.Stop()
	wt := s.srv.opts.WriteTimeout
	// write sends one frame by deadline; it reports false when the
	// connection failed.
	write := func(f frame, deadline time.Time) bool {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		defer s.queued.Add(-1)
		return s.writeFrame(f, deadline)
	}
	for {
		select {
		case f := <-s.out:
			deadline := time.Now().Add(wt)
			if s.ctx.Err() != nil {
				deadline = s.closeDeadline() // closing: frames only until the grace ends
			}
			if !write(f, deadline) {
				s.cancel()
				s.conn.Close()
				return
			}
		case <-ping.C:
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wt)); err != nil {
				s.cancel()
				s.conn.Close()
				return
			}
		case <-s.ctx.Done():
			// What is queued, and the final events of the requests under
			// way (the worker stops them), go first, within the grace;
			// then the close frame.
			deadline := s.closeDeadline()
			grace := time.NewTimer(time.Until(deadline))
		drain:
			for {
				select {
				case f := <-s.out:
					if !write(f, deadline) {
						break drain
					}
				case <-s.workerDone: // its last frames are queued: send them, then close
					for {
						select {
						case f := <-s.out:
							if !write(f, deadline) {
								break drain
							}
						default:
							break drain
						}
					}
				case <-grace.C:
					break drain
				}
			}
			grace.Stop()
			s.mu.Lock()
			code, text := s.closeCode, s.closeText
			s.mu.Unlock()
			s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), deadline.Add(closeGrace/2))
			select {
			case <-readerDone:
			case <-time.After(closeGrace):
			}
			s.conn.Close()
			return
		}
	}
}

// writeFrame writes f, and the frames that go with it in one write, by
// deadline; it reports false when the connection failed. Under wmu.
func (s *session) writeFrame(f frame, deadline time.Time) bool {
	s.conn.SetWriteDeadline(deadline)
	gather := len(f.more) > 0 && s.batch != nil
	if gather {
		s.batch.gather()
	}
	err := s.conn.WriteMessage(f.typ, f.data)
	if f.pooled {
		b := f.data[:cap(f.data)]
		chunkPool.Put(&b)
	}
	for _, m := range f.more {
		if err == nil {
			err = s.conn.WriteMessage(m.typ, m.data)
		}
	}
	if gather {
		if rerr := s.batch.release(); err == nil {
			err = rerr
		}
	}
	return err == nil
}

// send queues a frame for the writer; it blocks while the queue is full
// and gives up once the writer is gone. A closing session's writer still
// takes frames until its worker is done or the close grace ends, so the
// requests under way get their final events.
func (s *session) send(f frame) bool {
	s.queued.Add(1)
	select {
	case s.out <- f:
		return true
	case <-s.writerDone:
		s.queued.Add(-1)
		return false
	}
}

// sendNow is send for the worker's output and final events: a text frame
// goes straight to the connection, on the worker's goroutine, when
// nothing is queued or being written before it and the session is not
// closing, so that a request's events reach the client without waking
// the writer. Other goroutines (the reader, the token watcher) always
// queue: they must not wait on a client that does not read.
func (s *session) sendNow(f frame) bool {
	if f.typ == websocket.TextMessage && s.ctx.Err() == nil && s.wmu.TryLock() {
		if s.queued.Load() == 0 {
			ok := s.writeFrame(f, time.Now().Add(s.srv.opts.WriteTimeout))
			s.wmu.Unlock()
			if !ok { // a client that does not read: end the session, as the writer would
				s.cancel()
				s.conn.Close()
			}
			return ok
		}
		s.wmu.Unlock()
	}
	return s.send(f)
}

// sendEvent records an event in the transcript and queues it.
func (s *session) sendEvent(e wire.Event) bool {
	s.cast.event(e)
	return s.send(event(e))
}

// closeDeadline is when a closing session stops writing: closeGrace
// after shutdown (or now, when the session ended otherwise).
func (s *session) closeDeadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeBy.IsZero() {
		s.closeBy = time.Now().Add(closeGrace)
	}
	return s.closeBy
}

// stopRequest cancels request id with cause.
func (s *session) stopRequest(id uint64, cause error) {
	s.mu.Lock()
	if stop := s.pending[id]; stop != nil {
		stop(cause)
	}
	s.mu.Unlock()
}

func event(e wire.Event) frame {
	b, err := jsonMarshal(e)
	if err != nil {
		panic(err) // Event always encodes
	}
	return frame{typ: websocket.TextMessage, data: b}
}

func (s *session) sendError(id uint64, err error) {
	we := publicError(err)
	s.sendEvent(wire.Event{Type: wire.EventError, ID: id, Code: we.Code, Message: we.Message})
}

// publicError turns any error into what the client may see.
func publicError(err error) *wire.Error {
	var we *wire.Error
	if errors.As(err, &we) {
		return we
	}
	return &wire.Error{Code: wire.CodeInternal, Message: "internal error (see the server log)"}
}

// mayRun reports whether the subject may run cmd.
func (s *session) mayRun(cmd *Command) bool { return cmd.open || s.allowed(cmd.object()) }

// allowed asks the policy, failing closed.
func (s *session) allowed(object string) bool {
	act := access.Run
	if strings.HasPrefix(object, access.PackagePrefix) {
		act = access.Import
	}
	ok, err := s.srv.opts.Authorizer.Authorize(s.subject, object, act)
	if err != nil {
		s.srv.log.Error("console: authorizer failed; denying", "subject", s.subject, "object", object, "err", err)
		return false
	}
	return ok
}

// run is the state of one request as it goes through handle.
type run struct {
	req   wire.Request
	rec   audit.Record // the intent record, completed as decisions are made
	tally *tally
	out   *eventWriter // the request's output; what it still holds leaves with the final event
}

// decide records a policy decision for obj and writes the intent record,
// synced. A deny is returned as err (after the record is written); so is
// a failed write.
func (s *session) decide(r *run, obj string, allowed bool, deny *wire.Error) error {
	r.rec.Object, r.rec.Decision = obj, audit.DecisionAllow
	if allowed {
		s.cast.input(s.subject, r.req.Line) // before anything it prints
	} else {
		r.rec.Decision, r.rec.Message = audit.DecisionDeny, deny.Message
		s.cast.input(s.subject, clipText(r.req.Line))
		clipLine(&r.rec)
	}
	if err := s.intent(r.rec); err != nil {
		return err
	}
	if !allowed {
		return deny
	}
	return nil
}

// authorize checks obj for the run: the policy's decision, then whether
// the policy wants a reason first, then the intent record, synced.
func (s *session) authorize(r *run, obj string, deny *wire.Error) error {
	if !s.allowed(obj) {
		return s.decide(r, obj, false, deny)
	}
	if r.rec.Reason == "" && s.needsReason(obj) {
		return s.decide(r, obj, false, wire.Errorf(wire.CodeReasonRequired,
			"the policy wants a reason before %s: say why with the command  reason TEXT  (or start the client with --reason TEXT), then run it again", obj))
	}
	return s.decide(r, obj, true, nil)
}

// target is what a line asks for: a command with the rest of the line,
// or Go source; and the policy object that decides it.
type target struct {
	cmd    *Command // nil for Go
	rest   string   // the line after the command's name
	src    string   // Go source
	object string
	open   bool        // a command that grants nothing: no policy check
	deny   *wire.Error // the refusal if the policy says no
}

// resolve reads a (non-blank) line: a command's name first, "eval
// SOURCE", or else Go.
func (s *session) resolve(line string) (target, error) {
	word, rest := firstWord(strings.TrimSpace(line))
	if cmd := s.srv.commands[word]; cmd != nil {
		return target{cmd: cmd, rest: rest, object: cmd.object(), open: cmd.open,
			deny: wire.Errorf(wire.CodeForbidden, "%s may not run %s (policy object %s, action run)", s.subject, cmd.Name, cmd.object())}, nil
	}
	src := line
	if word == evalWord {
		if src = rest; src == "" {
			return target{}, wire.Errorf(wire.CodeBadRequest, "eval: give Go source to evaluate, e.g. eval gc := 1")
		}
	}
	t := target{src: src, object: access.Eval,
		deny: wire.Errorf(wire.CodeForbidden, "%s may not evaluate Go (policy object eval, action run); type help for the commands you may run", s.subject)}
	if trimmed := strings.TrimSpace(line); isWord(trimmed) && !s.allowed(access.Eval) {
		t.deny = wire.Errorf(wire.CodeBadRequest, "unknown command %.40q; type help for the commands you may run", trimmed)
	}
	return t, nil
}

// handle is the request pipeline, top to bottom: resolve the line to a
// command or Go; authorize its policy object (and the reason the policy
// may want), writing the intent record, allowed or denied, and syncing it
// before anything runs; run it within its limits; send its one final
// event; write the outcome record. A blank line does nothing and leaves
// no record.
func (s *session) handle(ctx context.Context, req wire.Request) {
	start := time.Now()
	r := &run{req: req, rec: s.record(req), tally: newTally()}
	r.out = &eventWriter{s: s, id: req.ID, tally: r.tally}
	r.rec.Time = start
	blank := strings.TrimSpace(req.Line) == ""

	var (
		t       target
		decided bool // the intent record is written (with the decision)
		value   string
	)
	err := context.Cause(ctx) // cancelled while it waited
	if err == nil && !blank {
		t, err = s.resolve(req.Line)
	}
	if err == nil && !blank {
		decided = true
		if t.open {
			err = s.decide(r, t.object, true, nil)
		} else {
			err = s.authorize(r, t.object, t.deny)
		}
	}
	if err == nil && !blank {
		if t.cmd != nil {
			value, err = s.command(ctx, r, t)
		} else {
			value, err = s.evaluate(ctx, r, strings.TrimSpace(req.Line), t.src)
		}
	}
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}

	final, code, msg := s.final(ctx, req.ID, value, err)
	s.finish(req.ID) // the id is free again once its final event is out
	s.sendFinal(r.out, final)
	if blank {
		return
	}
	if !decided { // ended before its decision (cancelled while waiting, a bad eval)
		s.cast.input(s.subject, clipText(req.Line))
		s.srv.auditWrite(r.rec)
	}
	s.srv.auditWrite(s.outcome(r.rec, code, msg, r.tally, time.Since(start)))
}

// final is the request's final event for its value or error, with the
// outcome's code and message for the audit record.
func (s *session) final(ctx context.Context, id uint64, value string, err error) (ev wire.Event, code, msg string) {
	switch {
	case errors.Is(err, interp.ErrIncomplete):
		return wire.Event{Type: wire.EventIncomplete, ID: id}, audit.OutcomeIncomplete, ""
	case err != nil:
		we := s.classify(ctx, err)
		if we.Code == wire.CodeInternal {
			s.srv.log.Error("console: request failed", "session", s.id, "request", id, "err", err)
		}
		return wire.Event{Type: wire.EventError, ID: id, Code: we.Code, Message: we.Message}, string(we.Code), we.Message
	}
	return wire.Event{Type: wire.EventResult, ID: id, Value: value}, audit.OutcomeOK, ""
}

// classify maps an execution error to its public form.
func (s *session) classify(ctx context.Context, err error) *wire.Error {
	var ce *interp.CheckError
	var ee *interp.EvalError
	var xe *sandbox.ExitError
	switch {
	case errors.Is(context.Cause(ctx), errCanceled) || errors.Is(err, errCanceled):
		return wire.Errorf(wire.CodeCanceled, "canceled")
	case errors.Is(context.Cause(ctx), errOutputCap) || errors.Is(err, errOutputCap):
		return wire.Errorf(wire.CodeLimit, "output passed the %d-byte limit; stopped", s.srv.opts.MaxOutputBytes)
	case errors.Is(err, context.DeadlineExceeded):
		return wire.Errorf(wire.CodeTimeout, "stopped after the %s time limit", s.srv.opts.Interp.Timeout)
	case errors.Is(err, interp.ErrOutputLimit):
		return wire.Errorf(wire.CodeLimit, "output passed the %d-byte limit; stopped", s.srv.opts.Interp.MaxOutput)
	case errors.Is(err, interp.ErrMemoryLimit):
		return wire.Errorf(wire.CodeLimit, "the interpreter's heap passed its limit (%d bytes in one eval, or what the session keeps); stopped", s.srv.opts.Interp.MaxHeapGrowth)
	case s.ctx.Err() != nil:
		return wire.Errorf(wire.CodeUnavailable, "session closing")
	case errors.As(err, &xe):
		switch xe.Cause {
		case sandbox.CauseMemory, sandbox.CauseCPU:
			return wire.Errorf(wire.CodeLimit, "%s", xe.Error())
		case sandbox.CauseClosed:
			return wire.Errorf(wire.CodeUnavailable, "session closing")
		case sandbox.CauseCallTimeout:
			return wire.Errorf(wire.CodeTimeout, "%s", xe.Error())
		}
		return wire.Errorf(wire.CodeEval, "%s", xe.Error())
	case errors.As(err, &ce):
		return wire.Errorf(wire.CodeEval, "%s", ce.Msg)
	case errors.As(err, &ee):
		return wire.Errorf(wire.CodeEval, "%s", ee.Msg)
	}
	return publicError(err)
}

// command runs an authorized command: its arguments, the confirmation of
// a StopsTheWorld command, the process's heavy slot for a Heavy one, then
// its Run, which may ask for the further objects it declares.
func (s *session) command(ctx context.Context, r *run, t target) (string, error) {
	cmd := t.cmd
	args, err := splitArgs(t.rest)
	if err != nil {
		return "", wire.Errorf(wire.CodeBadRequest, "%s: %v", cmd.Name, err)
	}
	args, yes, err := confirm(cmd, args)
	if err != nil {
		return "", err
	}
	if cmd.Cost != Cheap {
		release, err := process.flight.acquire(fmt.Sprintf("%s (run by %s)", cmd.Name, s.subject))
		if err != nil {
			return "", err
		}
		defer release()
	}
	c := &Request{Args: args, Subject: s.subject, Out: r.out, s: s, id: r.req.ID, cmd: cmd, run: r, raw: t.rest, yes: yes}
	err = runCommand(ctx, cmd, c)
	r.rec.Detail = c.detail
	return c.value, err
}

// needsReason reports whether the policy wants a reason before subject
// uses object (action require-reason); an error counts as yes.
func (s *session) needsReason(object string) bool {
	ok, err := s.srv.opts.Authorizer.Authorize(s.subject, object, access.RequireReason)
	if err != nil {
		s.srv.log.Error("console: authorizer failed; requiring a reason", "subject", s.subject, "object", object, "err", err)
		return true
	}
	return ok
}

// runCommand runs a command, turning a panic (an application command's
// bug) into an internal error instead of a crash of the host process.
func runCommand(ctx context.Context, cmd *Command, c *Request) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("console: command %s panicked: %v\n%s", cmd.Name, r, debug.Stack())
		}
	}()
	return cmd.Run(ctx, c)
}

// complete answers a completion request with the command names this
// subject may run that start with the word under the cursor.
func (s *session) complete(req wire.Request) {
	pos := len(req.Line)
	if req.Pos != nil {
		pos = *req.Pos
	}
	prefix := req.Line[:pos]
	trimmed := strings.TrimLeft(prefix, " \t")
	var items []string
	if !strings.ContainsAny(trimmed, " \t") {
		for _, name := range s.srv.names {
			if strings.HasPrefix(name, trimmed) && s.mayRun(s.srv.commands[name]) {
				items = append(items, name)
			}
		}
		if strings.HasPrefix(evalWord, trimmed) && s.allowed(access.Eval) {
			items = append(items, evalWord)
		}
		sort.Strings(items)
	} else if word, _ := firstWord(trimmed); word == "help" {
		arg := strings.TrimLeft(trimmed[len(word):], " \t")
		if !strings.ContainsAny(arg, " \t") {
			for _, name := range s.srv.names {
				if strings.HasPrefix(name, arg) && s.mayRun(s.srv.commands[name]) {
					items = append(items, "help "+name)
				}
			}
		}
	}
	start := len(prefix) - len(trimmed)
	if len(items) == 0 && s.allowed(access.Eval) {
		// Go: complete the identifier or pkg.Member under the cursor.
		i := len(prefix)
		for i > 0 && isIdentByte(prefix[i-1]) {
			i--
		}
		if word := prefix[i:]; word != "" && !(word[0] >= '0' && word[0] <= '9') {
			// A completion never waits for the worker, and starts no
			// interpreter (see completeGo).
			items, start = s.completeGo(word), i
		}
	}
	s.sendEvent(wire.Event{Type: wire.EventCompletions, ID: req.ID, Items: items, Start: start})
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// sendFile streams data as a file transfer.
func (s *session) sendFile(ctx context.Context, id uint64, name string, data []byte, t *tally) error {
	return s.sendStream(ctx, id, name, int64(len(data)), sha256Hex(data), bytes.NewReader(data), t)
}

// sendStream streams size bytes from r as a file transfer: a file event,
// binary chunks, a file_end event. It holds at most one chunk, plus the
// writer's queue, in memory, whatever the size.
func (s *session) sendStream(ctx context.Context, id uint64, name string, size int64, sha string, r io.Reader, t *tally) error {
	if !s.sendEvent(wire.Event{Type: wire.EventFile, ID: id, Name: name, Size: size, SHA256: sha}) {
		return s.ctx.Err()
	}
	t.files = append(t.files, audit.File{Name: name, Size: size, SHA256: sha})
	f := &t.files[len(t.files)-1]
	for f.Sent < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		bp := chunkPool.Get().(*[]byte)
		chunk := (*bp)[:min(int64(fileChunk), size-f.Sent)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			chunkPool.Put(bp)
			return fmt.Errorf("console: read %s: %w", name, err)
		}
		if !s.send(frame{typ: websocket.BinaryMessage, data: chunk, pooled: true}) {
			chunkPool.Put(bp)
			return s.ctx.Err()
		}
		f.Sent += int64(len(chunk))
	}
	s.sendEvent(wire.Event{Type: wire.EventFileEnd, ID: id, Name: name})
	return nil
}

// eventWriter turns writes into output events. It batches small writes
// (a table is written cell by cell) and sends when it holds chunkBytes
// bytes, when flushAfter has passed since the last send (so slow output
// still streams), and at the end of the request. Events are split at rune
// boundaries so no event carries half a UTF-8 character.
type eventWriter struct {
	s     *session
	id    uint64
	tally *tally
	buf   []byte
	last  time.Time
}

// errOutputCap stops a request whose output passed Options.MaxOutputBytes.
var errOutputCap = errors.New("output limit reached")

const flushAfter = 50 * time.Millisecond

func (w *eventWriter) Write(p []byte) (int, error) {
	if w.s.ctx.Err() != nil {
		return 0, w.s.ctx.Err()
	}
	if w.last.IsZero() {
		w.last = time.Now()
	}
	if w.tally.n+int64(len(w.buf)+len(p)) > w.s.srv.opts.MaxOutputBytes {
		w.s.stopRequest(w.id, errOutputCap)
		return 0, errOutputCap
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= chunkBytes || time.Since(w.last) >= flushAfter {
		w.send(false)
	}
	return len(p), nil
}

// flush sends everything buffered.
func (w *eventWriter) flush() { w.send(true) }

// sendFinal sends what w still holds and the final event in one write.
func (s *session) sendFinal(w *eventWriter, final wire.Event) bool {
	var fs []frame
	w.events(true, func(ev wire.Event) bool {
		s.cast.event(ev)
		fs = append(fs, event(ev))
		return true
	})
	s.cast.event(final)
	f := event(final)
	if len(fs) > 0 {
		first := fs[0]
		first.more = append(fs[1:], f)
		f = first
	}
	return s.sendNow(f)
}

func (w *eventWriter) send(all bool) {
	w.events(all, func(ev wire.Event) bool {
		w.s.cast.event(ev)
		return w.s.sendNow(event(ev))
	})
}

// events turns what w holds (all of it, or up to its last whole rune)
// into output events, tallied, and gives each to emit until it fails.
func (w *eventWriter) events(all bool, emit func(wire.Event) bool) {
	cut := len(w.buf)
	if !all {
		// Hold back a rune whose last bytes have not been written yet.
		for i := len(w.buf) - 1; i >= 0 && i >= len(w.buf)-utf8.UTFMax; i-- {
			if utf8.RuneStart(w.buf[i]) {
				if !utf8.FullRune(w.buf[i:]) {
					cut = i
				}
				break
			}
		}
	}
	for off := 0; off < cut; {
		end := min(off+chunkBytes, cut)
		for end < cut && end > off+1 && !utf8.RuneStart(w.buf[end]) {
			end--
		}
		w.tally.add(w.buf[off:end])
		if !emit(wire.Event{Type: wire.EventOutput, ID: w.id, Data: string(w.buf[off:end])}) {
			break
		}
		off = end
	}
	w.buf = append(w.buf[:0], w.buf[cut:]...)
	w.last = time.Now()
}
