package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/opsrepl/opsrepl/console/wire"
)

// Exit codes. They are part of the CLI contract (README, --help).
const (
	exitOK      = 0 // every request succeeded
	exitFailed  = 1 // a command or eval failed
	exitUsage   = 2 // bad command line
	exitDenied  = 3 // not authenticated, or not permitted
	exitConnect = 4 // cannot connect, connection lost, or protocol error
)

// exitError carries the exit code for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// remoteError is an error event for a request.
type remoteError struct{ ev wire.Event }

func (e *remoteError) Error() string { return string(e.ev.Code) + ": " + e.ev.Message }

var errIncomplete = errors.New("incomplete input")

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var re *remoteError
	if errors.As(err, &re) {
		switch re.ev.Code {
		case wire.CodeForbidden, wire.CodeUnauthenticated:
			return exitDenied
		}
		return exitFailed
	}
	if errors.Is(err, errIncomplete) {
		return exitFailed
	}
	return exitConnect
}

type inMsg struct {
	typ  int
	data []byte
}

// conn is a client session.
type conn struct {
	ws    *websocket.Conn
	hello wire.Event
	in    chan inMsg
	// stale is set while the binary chunks of an abandoned request's file
	// transfer are still arriving; they are dropped.
	stale bool
	dead  chan struct{} // closed when the connection is gone
	why   error         // set before dead is closed

	mu     sync.Mutex // one request at a time; serializes writes
	nextID uint64
}

// dial connects and authenticates. Errors carry exit codes 3 or 4.
func dial(ctx context.Context, rawURL, token string, tlsConf *tls.Config) (*conn, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	d := websocket.Dialer{
		Proxy:             http.ProxyFromEnvironment,
		HandshakeTimeout:  10 * time.Second,
		Subprotocols:      []string{wire.Subprotocol},
		EnableCompression: false,
		TLSClientConfig:   tlsConf,
	}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := d.DialContext(ctx, u.String(), h)
	for try := 0; err != nil && resp != nil && resp.StatusCode == http.StatusTooManyRequests && try < 3; try++ {
		// Throttled (too many attempts from this address): wait as told,
		// at most 2s, and try again a few times.
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		resp.Body.Close()
		select {
		case <-ctx.Done():
			return nil, errTerminated
		case <-time.After(min(time.Duration(max(wait, 1))*time.Second, 2*time.Second)):
		}
		ws, resp, err = d.DialContext(ctx, u.String(), h)
	}
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			msg := strings.TrimSpace(string(body))
			if msg == "" {
				msg = resp.Status
			}
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				if ra := resp.Header.Get("Retry-After"); ra != "" {
					msg += " (retry after " + ra + "s)"
				}
			case http.StatusUnauthorized, http.StatusForbidden:
				return nil, exitf(exitDenied, "%s refused the connection: %s", u.Host, msg)
			}
			return nil, exitf(exitConnect, "%s refused the connection: %s", u.Host, msg)
		}
		return nil, exitf(exitConnect, "cannot connect to %s: %v", u.Redacted(), err)
	}
	if ws.Subprotocol() != wire.Subprotocol {
		ws.Close()
		return nil, exitf(exitConnect, "%s does not speak %s", u.Host, wire.Subprotocol)
	}
	ws.SetReadLimit(8 << 20)
	c := &conn{ws: ws, in: make(chan inMsg, 64), dead: make(chan struct{})}
	go c.read()
	// The first frame is hello.
	select {
	case m, ok := <-c.in:
		if !ok {
			return nil, exitf(exitConnect, "connection closed before the session started: %v", c.why)
		}
		ev, err := wire.DecodeEvent(m.data)
		if err != nil || ev.Type != wire.EventHello {
			ws.Close()
			return nil, exitf(exitConnect, "protocol error: expected hello")
		}
		c.hello = ev
	case <-time.After(10 * time.Second):
		ws.Close()
		return nil, exitf(exitConnect, "no hello from the server within 10s")
	}
	return c, nil
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad --url: %v", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("bad --url %q: want ws://HOST:PORT/PATH or wss://…", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad --url %q: no host", raw)
	}
	if u.User != nil || u.RawQuery != "" {
		return nil, errors.New("bad --url: credentials and query strings are not sent in URLs; use --token-file or OPS_REPL_TOKEN")
	}
	return u, nil
}

// isLoopback reports whether host (from a URL) is a loopback name or address.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (c *conn) read() {
	defer close(c.in)
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			c.why = describeClose(err)
			close(c.dead)
			return
		}
		c.in <- inMsg{typ: typ, data: data}
	}
}

func describeClose(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case websocket.CloseMessageTooBig:
			return errors.New("the server closed the connection: a request was larger than its limit")
		case websocket.CloseGoingAway:
			return errors.New("the server is shutting down")
		case websocket.CloseNormalClosure:
			if ce.Text != "" {
				return fmt.Errorf("the server closed the session: %s", safeText(ce.Text))
			}
			return errors.New("the server closed the session")
		}
		return fmt.Errorf("the server closed the connection (%d %s)", ce.Code, ce.Text)
	}
	return fmt.Errorf("connection lost: %v", err)
}

func (c *conn) close() {
	c.mu.Lock()
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.mu.Unlock()
	c.ws.Close()
}

func (c *conn) write(req wire.Request) error {
	b, _ := json.Marshal(req)
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return exitf(exitConnect, "send: %v", err)
	}
	return nil
}

// handler receives the events of one request.
type handler interface {
	event(ev wire.Event) error // every JSON event
	chunk(data []byte) error   // binary file chunks
	done()                     // the request is over: drop anything unfinished
}

// errTerminated is returned when the client is told to stop (SIGTERM).
var errTerminated = exitf(exitFailed, "terminated")

// do sends one request and feeds its events to h until the final one.
// cancel, when it fires, sends a cancel request for it; a second one stops
// waiting. When ctx ends, do cancels the request and returns.
func (c *conn) do(ctx context.Context, req wire.Request, h handler, cancel <-chan struct{}) (wire.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer h.done()
	c.nextID++
	req.ID = c.nextID
	if err := c.write(req); err != nil {
		return wire.Event{}, err
	}
	canceled := false
	for {
		select {
		case <-ctx.Done():
			c.nextID++
			c.write(wire.Request{Type: wire.TypeCancel, ID: c.nextID, Target: req.ID})
			return wire.Event{}, errTerminated
		case <-cancel:
			if canceled {
				// A second interrupt: stop waiting for the server.
				return wire.Event{}, exitf(exitFailed, "interrupted")
			}
			canceled = true
			c.nextID++
			c.write(wire.Request{Type: wire.TypeCancel, ID: c.nextID, Target: req.ID})
			continue
		case m, ok := <-c.in:
			if !ok {
				return wire.Event{}, &exitError{code: exitConnect, err: c.why}
			}
			if m.typ == websocket.BinaryMessage {
				if c.stale {
					continue
				}
				if err := h.chunk(m.data); err != nil {
					return wire.Event{}, err
				}
				continue
			}
			ev, err := wire.DecodeEvent(m.data)
			if err != nil {
				return wire.Event{}, exitf(exitConnect, "protocol error: %v", err)
			}
			if ev.ID != req.ID && ev.ID != 0 {
				// A late event of an earlier, abandoned request. Transfers
				// are sequential, so its chunks come between its file and
				// its file_end (or its final event).
				switch {
				case ev.Type == wire.EventFile:
					c.stale = true
				case ev.Type == wire.EventFileEnd || ev.Final():
					c.stale = false
				}
				continue
			}
			c.stale = false
			if err := h.event(ev); err != nil {
				return ev, err
			}
			if ev.ID == req.ID && ev.Final() {
				switch ev.Type {
				case wire.EventError:
					return ev, &remoteError{ev: ev}
				case wire.EventIncomplete:
					return ev, errIncomplete
				}
				return ev, nil
			}
		}
	}
}
