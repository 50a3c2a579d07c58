package client

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
)

// Request is one request in flight: a stream of events read with Next,
// ending with its final event. Its events queue until read, so read every
// request you send, or Close it.
type Request struct {
	ID uint64

	c    *Conn
	file FileFunc

	mu     sync.Mutex
	queue  []item
	queued int64         // bytes of the events in queue
	ended  bool          // the last item is queued
	endErr error         // the connection's end, once Next has seen it
	signal chan struct{} // has a value when queue is not empty
}

type item struct {
	ev   wire.Event
	err  error
	last bool
}

// ErrBacklog ends a request whose unread events passed
// Options.MaxQueuedBytes: the client cancelled it.
var ErrBacklog = errors.New("the request's unread events passed the client's limit (Options.MaxQueuedBytes); it was cancelled")

// size is what an event holds in memory, roughly.
func size(ev wire.Event) int64 {
	n := len(ev.Data) + len(ev.Value) + len(ev.Message) + len(ev.Name) + 64
	for _, it := range ev.Items {
		n += len(it) + 16
	}
	return int64(n)
}

func (r *Request) push(it item) {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	n := size(it.ev)
	if !it.last && r.queued+n > r.c.opts.MaxQueuedBytes {
		it = item{err: ErrBacklog, last: true} // read as the request's end
		go r.Cancel()                          // not on the reading goroutine
	}
	r.queue = append(r.queue, it)
	r.queued += n
	r.ended = it.last
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// pop returns the next queued item, if any; ended says, in the same
// look, that no item will come: the queue is empty and the last item was
// taken (checked apart, a final item pushed between the two looks would
// be lost).
func (r *Request) pop() (it item, ok, ended bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return item{}, false, r.ended
	}
	it = r.queue[0]
	r.queue[0] = item{}
	r.queue = r.queue[1:]
	r.queued -= size(it.ev)
	if len(r.queue) > 0 {
		select {
		case r.signal <- struct{}{}:
		default:
		}
	}
	if it.last && it.ev.Type == "" {
		r.endErr = it.err
	}
	return it, true, false
}

// Next returns the request's next event, waiting for it. After the final
// event it returns io.EOF. Other errors: ctx's, the connection's end (a
// *ClosedError, or ErrClosed), and a transferred file that failed its
// checks or could not be saved, which comes with the file_end event (the
// stream goes on to the final event).
func (r *Request) Next(ctx context.Context) (wire.Event, error) {
	for {
		it, ok, ended := r.pop()
		switch {
		case ok:
			return it.ev, it.err
		case ended:
			r.mu.Lock()
			endErr := r.endErr
			r.mu.Unlock()
			if endErr != nil {
				return wire.Event{}, endErr
			}
			return wire.Event{}, io.EOF
		}
		select {
		case <-r.signal:
		case <-ctx.Done():
			return wire.Event{}, ctx.Err()
		}
	}
}

// Cancel asks the server to stop the request; it then ends with error
// canceled, or with its own final event if that won the race.
func (r *Request) Cancel() error {
	return r.c.write(wire.Request{Type: wire.TypeCancel, ID: r.c.newID(), Target: r.ID})
}

// Close gives up on the request: if it has not ended, it is cancelled, and
// its remaining events are dropped.
func (r *Request) Close() {
	r.c.mu.Lock()
	_, open := r.c.reqs[r.ID]
	delete(r.c.reqs, r.ID)
	r.c.mu.Unlock()
	r.mu.Lock()
	r.ended, r.queue = true, nil
	r.mu.Unlock()
	if open {
		r.Cancel()
	}
}

// newID returns an id no request in flight has.
func (c *Conn) newID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.freeID()
}

// freeID is newID with c.mu held.
func (c *Conn) freeID() uint64 {
	for {
		c.nextID++
		if c.nextID > wire.MaxID {
			c.nextID = 1
		}
		if _, busy := c.reqs[c.nextID]; !busy {
			return c.nextID
		}
	}
}

// Send sends a run or complete request and returns at once; its events
// are read with Next. req.ID is chosen when zero. file says where the
// request's file transfers go; nil discards them (after their checks).
func (c *Conn) Send(req wire.Request, file FileFunc) (*Request, error) {
	r := &Request{c: c, file: file, signal: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	if req.ID == 0 {
		req.ID = c.freeID()
	}
	if _, dup := c.reqs[req.ID]; dup {
		c.mu.Unlock()
		return nil, errors.New("client: that request id is in flight")
	}
	r.ID = req.ID
	c.reqs[req.ID] = r
	c.mu.Unlock()
	if err := c.write(req); err != nil {
		c.mu.Lock()
		delete(c.reqs, req.ID)
		c.mu.Unlock()
		return nil, err
	}
	return r, nil
}

// Handler receives the events of a request run with Run.
type Handler struct {
	// Event is called with each event of the request, in order, the final
	// one included (except a throttled error Run will retry). An error
	// gives up on the request (it is cancelled) and Run returns it.
	Event func(wire.Event) error
	// File says where the request's file transfers go. Nil: discarded,
	// after their checks.
	File FileFunc
	// Cancel, each time it delivers, sends a cancel for the request; Run
	// then goes on waiting for its final event (error canceled, usually).
	// To stop waiting, end ctx.
	Cancel <-chan struct{}
}

// Run runs one line (a command, or Go source) and feeds its events to h
// until the final one, which it returns. The error is a *wire.Error when
// the request ended in an error event, ErrIncomplete for unfinished Go
// source, a file error (the request's final event is then returned too),
// or the connection's end. When ctx ends, Run cancels the request and
// returns ctx's error at once. A request refused as throttled is sent
// again for up to Options.ThrottleWait.
func (c *Conn) Run(ctx context.Context, line string, h Handler) (wire.Event, error) {
	return c.do(ctx, wire.Request{Type: wire.TypeRun, Line: line, Fleet: c.opts.Fleet}, h)
}

// Complete asks for completions of line with the cursor at byte offset pos
// (negative: the end). The final event's Items replace line[Start:pos].
func (c *Conn) Complete(ctx context.Context, line string, pos int) (wire.Event, error) {
	req := wire.Request{Type: wire.TypeComplete, Line: line}
	if pos >= 0 {
		req.Pos = &pos
	}
	return c.do(ctx, req, Handler{})
}

func (c *Conn) do(ctx context.Context, req wire.Request, h Handler) (wire.Event, error) {
	deadline := time.Now().Add(c.opts.ThrottleWait)
	for {
		final, err := c.once(ctx, req, h, time.Now().Before(deadline))
		if !errors.Is(err, errRetry) {
			return final, err
		}
		// The session's rate: a token comes back every 50 ms by default.
		select {
		case <-ctx.Done():
			return wire.Event{}, ctx.Err()
		case <-c.done:
			return wire.Event{}, c.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var errRetry = errors.New("throttled: send again")

// once sends req and waits for its final event.
func (c *Conn) once(ctx context.Context, req wire.Request, h Handler, retry bool) (wire.Event, error) {
	r, err := c.Send(req, h.File)
	if err != nil {
		return wire.Event{}, err
	}
	var fileErr error
	for {
		var (
			ev  wire.Event
			err error
		)
		if it, ok, _ := r.pop(); ok {
			ev, err = it.ev, it.err
			if it.last && ev.Type == "" {
				return wire.Event{}, err // the connection ended
			}
		} else {
			select {
			case <-r.signal:
				continue
			case <-h.Cancel:
				if err := r.Cancel(); err != nil {
					return wire.Event{}, err
				}
				continue
			case <-ctx.Done():
				r.Close()
				return wire.Event{}, ctx.Err()
			}
		}
		if err != nil && fileErr == nil {
			fileErr = err
		}
		if retry && ev.Type == wire.EventError && ev.Code == wire.CodeThrottled {
			return ev, errRetry
		}
		if h.Event != nil {
			if err := h.Event(ev); err != nil {
				r.Close()
				return ev, err
			}
		}
		if !ev.Final() {
			continue
		}
		switch {
		case ev.Type == wire.EventError:
			return ev, &wire.Error{Code: ev.Code, Message: ev.Message}
		case ev.Type == wire.EventIncomplete:
			return ev, ErrIncomplete
		}
		return ev, fileErr
	}
}
