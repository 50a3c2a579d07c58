package client

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
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/opsrepl/opsrepl/console/wire"
)

// Options configures Dial. The zero value dials without credentials, with
// the defaults below.
type Options struct {
	// Token is the bearer token, sent in the Authorization header (never in
	// the URL). Empty: no token, e.g. for a client certificate in TLS.
	Token string
	// TLS configures wss:// connections: a client certificate
	// (Certificates) for mutual TLS, the CAs to verify the server with
	// (RootCAs). Nil: the system's roots, no client certificate.
	TLS *tls.Config
	// Header holds extra handshake headers (User-Agent, Origin). It may not
	// set Authorization or Sec-WebSocket-Protocol.
	Header http.Header
	// Proxy chooses a proxy for a URL. Nil: connect directly
	// (http.ProxyFromEnvironment follows the usual variables).
	Proxy func(*http.Request) (*url.URL, error)
	// NetDialContext dials the TCP connection. Nil: a net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds connecting, the upgrade and the server's
	// hello. Default 10 s.
	HandshakeTimeout time.Duration
	// HandshakeRetries is how many times a handshake refused with 429
	// throttled is tried again, after the server's Retry-After (at most
	// 2 s each). Default 3; negative: never.
	HandshakeRetries int
	// ThrottleWait is how long Run and Complete keep sending a request
	// again while the server answers it with error throttled (the session's
	// request rate). Default 10 s; negative: never.
	ThrottleWait time.Duration
	// MaxFrameBytes is the largest server frame read. Default 8 MiB.
	MaxFrameBytes int64
	// MaxQueuedBytes bounds the events of one request that arrived and
	// were not read yet (by Next, or by Run's handler). Past it, the
	// request is cancelled and ends with ErrBacklog, rather than the
	// client's memory growing with a server that outpaces its reader.
	// Default 64 MiB.
	MaxQueuedBytes int64
	// Notice receives the events that answer no request (id 0): a notice
	// such as a revocation of your credentials, or an error for a frame the
	// server could not read. It is called on the connection's reading
	// goroutine and must not block. Nil: they are dropped.
	Notice func(wire.Event)
	// Fleet, when set, is sent with every run: the id of a fleet request
	// (the same line sent to many consoles), which each console writes
	// into its audit record of the request. See wire.ValidFleet.
	Fleet string
}

func (o Options) withDefaults() Options {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.HandshakeRetries == 0 {
		o.HandshakeRetries = 3
	}
	if o.ThrottleWait == 0 {
		o.ThrottleWait = 10 * time.Second
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 8 << 20
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 64 << 20
	}
	return o
}

// writeTimeout bounds one frame's write.
const writeTimeout = 10 * time.Second

// Conn is a console session. Its methods may be called from several
// goroutines.
type Conn struct {
	ws     *websocket.Conn
	hello  wire.Event
	notice func(wire.Event)
	opts   Options

	wmu sync.Mutex // serializes writes

	mu       sync.Mutex
	nextID   uint64
	reqs     map[uint64]*Request // requests waiting for their final event
	transfer *transfer           // the open file transfer, or nil
	closing  bool                // Close was called
	err      error               // why the connection ended
	done     chan struct{}       // closed when the connection is gone
}

// ParseURL checks a console URL and returns it with a ws or wss scheme
// (http and https are accepted for them). It refuses credentials and query
// strings in the URL, and explains a missing scheme.
func ParseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("no URL: want ws://HOST:PORT/PATH (or wss:// for TLS)")
	}
	shown := withoutUserinfo(raw) // what errors quote: never a password
	if !strings.Contains(raw, "://") {
		return nil, fmt.Errorf("URL %q has no scheme: write ws://%s (or wss://%[2]s for TLS), with the console's path, such as /ops-repl", shown, strings.TrimPrefix(shown, "//"))
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		switch {
		case strings.Contains(raw, "@"):
			err = errors.New("it does not parse") // the parser's words may quote the password
		case errors.As(err, &ue):
			err = ue.Err // without the URL it quotes
		}
		return nil, fmt.Errorf("bad URL %q: %w", shown, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("bad URL %q: the scheme is ws:// (or wss:// for TLS), not %s://", shown, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad URL %q: no host", shown)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery {
		return nil, errors.New("bad URL: credentials and query strings are never sent in URLs; give the token separately")
	}
	u.Fragment = ""
	return u, nil
}

// withoutUserinfo replaces everything between the scheme and the last
// '@' of raw (a user and a password, which may hold '/', '?' or '#') with
// "…".
func withoutUserinfo(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + 3
	}
	return raw[:start] + "…" + raw[at:]
}

// Dial connects to the console at rawURL, authenticates and reads the
// session's hello. A refusal before the upgrade is a *RefusedError; a
// handshake refused as throttled is tried again (Options.HandshakeRetries).
func Dial(ctx context.Context, rawURL string, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	// gorilla's handshake heeds ctx's deadline but not its cancellation:
	// closing the connection when ctx ends stops the handshake and the
	// wait for hello at once.
	dial := opts.NetDialContext
	if dial == nil {
		dial = new(net.Dialer).DialContext
	}
	var rawMu sync.Mutex
	var raw net.Conn
	stopWatch := context.AfterFunc(ctx, func() {
		rawMu.Lock()
		defer rawMu.Unlock()
		if raw != nil {
			raw.Close()
		}
	})
	defer stopWatch()
	d := websocket.Dialer{
		Proxy: opts.Proxy,
		NetDialContext: func(dctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			rawMu.Lock()
			defer rawMu.Unlock()
			if ctx.Err() != nil { // cancelled before the watch could see c
				c.Close()
				return nil, ctx.Err()
			}
			raw = c
			return c, nil
		},
		HandshakeTimeout: opts.HandshakeTimeout,
		Subprotocols:     []string{wire.Subprotocol},
		TLSClientConfig:  opts.TLS,
	}
	h := http.Header{}
	for k, v := range opts.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Authorization", "Sec-Websocket-Protocol":
			return nil, fmt.Errorf("Options.Header may not set %s", k)
		}
		h[k] = v
	}
	if opts.Token != "" {
		h.Set("Authorization", "Bearer "+opts.Token)
	}
	var ws *websocket.Conn
	for try := 0; ; try++ {
		var resp *http.Response
		ws, resp, err = d.DialContext(ctx, u.String(), h)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if resp == nil {
			return nil, &DialError{URL: u.Redacted(), Err: err}
		}
		rerr := refused(u, resp)
		if rerr.Code != wire.CodeThrottled || try >= opts.HandshakeRetries {
			return nil, rerr
		}
		wait := min(max(rerr.RetryAfter, 100*time.Millisecond), 2*time.Second)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	if ws.Subprotocol() != wire.Subprotocol {
		ws.Close()
		return nil, fmt.Errorf("%s does not speak %s: %w", u.Host, wire.Subprotocol, ErrProtocol)
	}
	ws.SetReadLimit(opts.MaxFrameBytes)
	ws.SetReadDeadline(time.Now().Add(opts.HandshakeTimeout))
	typ, msg, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, closeError(err, false)
	}
	hello, err := wire.DecodeEvent(msg)
	if typ != websocket.TextMessage || err != nil || hello.Type != wire.EventHello {
		ws.Close()
		return nil, fmt.Errorf("the server's first frame is not hello: %w", ErrProtocol)
	}
	if err := checkHello(hello); err != nil {
		ws.Close()
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	ws.SetReadDeadline(time.Time{})
	if !stopWatch() { // ctx ended as hello came
		ws.Close()
		return nil, ctx.Err()
	}
	c := &Conn{
		ws:     ws,
		hello:  hello,
		notice: opts.Notice,
		opts:   opts,
		reqs:   map[uint64]*Request{},
		done:   make(chan struct{}),
	}
	go c.read()
	return c, nil
}

// checkHello refuses a hello whose fields could drive a terminal: they
// end up in prompts and banners. A subject or role may be any printable
// text up to 256 bytes (an Authenticator or a policy may name them as it
// likes); control and formatting characters are refused.
func checkHello(h wire.Event) error {
	plain := func(s string) bool {
		if s == "" || len(s) > 256 || !utf8.ValidString(s) {
			return false
		}
		for _, r := range s {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				return false
			}
		}
		return true
	}
	if !plain(h.Subject) || !plain(h.Session) {
		return fmt.Errorf("the hello's subject or session is not plain text")
	}
	for _, r := range h.Roles {
		if !plain(r) {
			return fmt.Errorf("the hello names a role that is not plain text")
		}
	}
	return nil
}

// refused describes a handshake the server answered with an HTTP status.
func refused(u *url.URL, resp *http.Response) *RefusedError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	e := &RefusedError{Host: u.Host, Path: u.EscapedPath(), Status: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	if code, msg, ok := strings.Cut(e.Message, ": "); ok && knownCode(wire.Code(code)) && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		e.Code, e.Message = wire.Code(code), msg
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

func knownCode(c wire.Code) bool {
	switch c {
	case wire.CodeUnauthenticated, wire.CodeForbidden, wire.CodeBadRequest, wire.CodeTimeout,
		wire.CodeCanceled, wire.CodeBusy, wire.CodeLimit, wire.CodeEval, wire.CodeUnavailable,
		wire.CodeInternal, wire.CodeThrottled, wire.CodeReasonRequired:
		return true
	}
	return false
}

// Hello returns the session's hello event: session id, subject, roles.
func (c *Conn) Hello() wire.Event { return c.hello }

// RemoteAddr is the server's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// Done is closed when the connection is gone; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (a *ClosedError, or ErrClosed after
// Close), or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the session with a normal close and waits, at most a second,
// for the server to answer it. Requests still waiting end with ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.wmu.Lock()
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	select {
	case <-c.done:
	case <-time.After(time.Second):
	}
	return c.ws.Close()
}

// write sends one request frame.
func (c *Conn) write(req wire.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.ws.Close() // the reader then reports the connection's end
		select {
		case <-c.done:
			return c.Err()
		case <-time.After(time.Second):
		}
		return &ClosedError{Err: err}
	}
	return nil
}

// read dispatches the server's frames until the connection ends.
func (c *Conn) read() {
	var why error
	for why == nil {
		typ, r, err := c.ws.NextReader()
		var data []byte
		if err == nil && typ != websocket.BinaryMessage {
			data, err = io.ReadAll(r)
		}
		if err == nil && typ == websocket.BinaryMessage {
			// A failure to read the frame's bytes is the connection's, as
			// for any frame; what the bytes break is a protocol error.
			if err = c.chunk(r); errors.Is(err, ErrProtocol) {
				why = err
				break
			}
			if err == nil {
				continue
			}
		}
		switch {
		case err != nil:
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			why = closeError(err, closing)
		default:
			ev, err := wire.DecodeEvent(data)
			if err != nil {
				why = fmt.Errorf("%w: %v", ErrProtocol, err)
				break
			}
			why = c.dispatch(ev)
		}
	}
	c.ws.Close()
	c.mu.Lock()
	c.err = why
	reqs := c.reqs
	c.reqs = map[uint64]*Request{}
	t := c.transfer
	c.transfer = nil
	c.mu.Unlock()
	if t != nil {
		t.abort(why)
	}
	for _, r := range reqs {
		r.push(item{err: why, last: true})
	}
	close(c.done)
}

// dispatch routes one event to its request.
func (c *Conn) dispatch(ev wire.Event) error {
	if ev.ID == 0 {
		if c.notice != nil {
			c.notice(ev)
		}
		return nil
	}
	c.mu.Lock()
	r := c.reqs[ev.ID]
	t := c.transfer
	var fileErr error
	switch {
	case ev.Type == wire.EventFile:
		if t != nil {
			c.mu.Unlock()
			return fmt.Errorf("%w: a file transfer started inside another", ErrProtocol)
		}
		c.mu.Unlock()
		t, fileErr = startTransfer(ev, r)
		if t == nil {
			return fileErr // a malformed file event
		}
		c.mu.Lock()
		c.transfer = t
	case ev.Type == wire.EventFileEnd:
		if t == nil || t.id != ev.ID {
			c.mu.Unlock()
			return fmt.Errorf("%w: file_end without its file", ErrProtocol)
		}
		c.transfer = nil
		c.mu.Unlock()
		fileErr = t.finish()
		c.mu.Lock()
	case ev.Final() && t != nil && t.id == ev.ID:
		c.transfer = nil
		c.mu.Unlock()
		why := errors.New("the request ended before the file was complete")
		t.abort(why)
		fileErr = &FileError{Name: t.name, Err: why}
		c.mu.Lock()
	}
	if r != nil && ev.Final() {
		delete(c.reqs, ev.ID)
	}
	c.mu.Unlock()
	if r != nil {
		r.push(item{ev: ev, err: fileErr, last: ev.Final()})
	}
	return nil
}

// chunk reads a binary frame into the open transfer.
func (c *Conn) chunk(r io.Reader) error {
	c.mu.Lock()
	t := c.transfer
	c.mu.Unlock()
	if t == nil {
		return fmt.Errorf("%w: a binary frame outside a file transfer", ErrProtocol)
	}
	return t.readFrom(r)
}
