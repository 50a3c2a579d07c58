package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
)

// Authenticator identifies the client of a WebSocket upgrade request. It
// returns the subject, or an error for no or bad credentials. *auth.Tokens
// implements it.
type Authenticator interface {
	Authenticate(r *http.Request) (subject string, err error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (string, error)

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (string, error) { return f(r) }

// Authorizer decides whether subject may perform action on object. An
// error counts as a denial. *policy.Enforcer implements it.
type Authorizer interface {
	Authorize(subject, object, action string) (bool, error)
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(subject, object, action string) (bool, error)

// Authorize calls f(subject, object, action).
func (f AuthorizerFunc) Authorize(subject, object, action string) (bool, error) {
	return f(subject, object, action)
}

// Options configures New.
type Options struct {
	// Authenticator identifies clients. Required.
	Authenticator Authenticator
	// Authorizer decides every command, eval and package import. Required.
	Authorizer Authorizer
	// Audit receives one record per request (written when it ends, stamped
	// with its start), per refused handshake, and per session start and
	// end. A failed write is logged; the request is not refused.
	// Default: none (a warning is logged at New).
	Audit *audit.Log
	// Exports are the application symbols the Go REPL can reach, each
	// package subject to the policy object pkg:<import path>. Default: none.
	Exports *interp.Exports
	// Logger receives operational logs; never tokens. Default: discard.
	Logger *slog.Logger
	// DumpDir is the folder heapdump --full writes its temporary file to
	// (removed after the transfer). Default: none (full dumps refused).
	DumpDir string
	// LogLevel is the application's log level, which the loglevel command
	// shows and sets. Default: none (loglevel reports that).
	LogLevel *slog.LevelVar
	// Commands are the application's own commands, added to the built-in
	// ones (a name may not repeat). Each is authorized as cmd:<Name> and
	// audited like the built-ins. Default: none.
	Commands []Command

	// Interp holds the limits of each session's Go interpreter: time
	// (Timeout, default 10s), output (MaxOutput, 1 MiB), heap growth
	// (MaxHeapGrowth, 256 MiB), one allocation (MaxAlloc, 256 MiB), call
	// depth (MaxDepth, 1000) and evals before the interpreter is replaced
	// (MaxEvals, 2000); see interp.Options. Its Exports and Packages are
	// ignored: the console sets them per subject from Exports and the
	// policy.
	Interp interp.Options
	// MaxMessageBytes is the largest frame a client may send; a larger one
	// closes the connection (WebSocket status 1009). Default: 1 MiB.
	MaxMessageBytes int64
	// MaxSessions caps concurrent sessions. Default: 64.
	MaxSessions int
	// MaxQueued caps the requests a session may have waiting to run.
	// Default: 16.
	MaxQueued int
	// WriteTimeout bounds each frame written to a client. Default: 10s.
	WriteTimeout time.Duration
	// PingInterval is how often the server pings; a client silent for two
	// intervals is disconnected. Default: 30s.
	PingInterval time.Duration
}

// Server is the console endpoint: an http.Handler that upgrades
// authenticated requests to WebSocket sessions.
//
// # Security
//
// Mount it only where you mean to: it gives whoever the policy allows
// commands that inspect and act on the process, and (admins by default)
// Go evaluation inside it. Every connection must present a bearer token
// (never in the URL); browsers' cross-origin requests are refused; every
// request is authorized and audited. Prefer a loopback listener
// (ListenAndServe binds 127.0.0.1 unless told otherwise).
type Server struct {
	opts     Options
	log      *slog.Logger
	commands map[string]*Command
	flight   flight   // one heavy command at a time
	tuning   tuning   // runtime settings waiting to be reverted
	names    []string // sorted command names
	upgrader websocket.Upgrader

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	wg       sync.WaitGroup
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Authenticator == nil {
		return nil, errors.New("console: Options.Authenticator is required")
	}
	if opts.Authorizer == nil {
		return nil, errors.New("console: Options.Authorizer is required")
	}
	if err := opts.Exports.Err(); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	opts.Interp = opts.Interp.WithDefaults()
	setDefault(&opts.MaxMessageBytes, 1<<20)
	setDefault(&opts.MaxSessions, 64)
	setDefault(&opts.MaxQueued, 16)
	setDefault(&opts.WriteTimeout, 10*time.Second)
	setDefault(&opts.PingInterval, 30*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		commands: map[string]*Command{},
		sessions: map[string]*session{},
		upgrader: websocket.Upgrader{
			HandshakeTimeout:  10 * time.Second,
			Subprotocols:      []string{wire.Subprotocol},
			EnableCompression: false,
			// CheckOrigin stays nil: gorilla's same-origin check.
		},
	}
	all := builtinCommands()
	for i := range opts.Commands {
		all = append(all, &opts.Commands[i])
	}
	for _, c := range all {
		switch {
		case !isWord(c.Name) || c.Name == evalWord:
			return nil, fmt.Errorf("console: command name %q: use letters, digits and dashes (and not %q)", c.Name, evalWord)
		case c.Run == nil || c.Summary == "":
			return nil, fmt.Errorf("console: command %q needs Run and Summary", c.Name)
		case s.commands[c.Name] != nil:
			return nil, fmt.Errorf("console: command %q is defined twice", c.Name)
		}
		s.commands[c.Name] = c
		s.names = append(s.names, c.Name)
	}
	sort.Strings(s.names)
	if err := s.checkPolicy(); err != nil {
		return nil, err
	}
	if opts.Audit == nil {
		s.log.Warn("console: no audit log configured; requests will not be audited")
	}
	return s, nil
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// checkPolicy refuses a policy that names a command that does not exist (a
// typo there would silently never match), when the Authorizer can list the
// objects its policy names.
func (s *Server) checkPolicy() error {
	lister, ok := s.opts.Authorizer.(interface{ Objects() []string })
	if !ok {
		return nil
	}
	for _, obj := range lister.Objects() {
		name, isCmd := strings.CutPrefix(obj, cmdPrefix)
		if isCmd && !strings.ContainsAny(name, "*?{}") && s.commands[name] == nil && obj != objHeapdumpFull {
			return fmt.Errorf("console: the policy names %s, but there is no command %q (commands: %s)", obj, name, strings.Join(s.names, ", "))
		}
	}
	return nil
}

// ServeHTTP runs the guard pipeline, in this order: limits, credentials
// (never from the URL), authentication, origin, subprotocol, upgrade.
// Nothing is allocated for a request that fails a guard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	refuse := func(status int, code wire.Code, msg, subject string) {
		s.auditWrite(audit.Record{Kind: audit.KindHandshake, Remote: r.RemoteAddr, Subject: subject,
			Outcome: string(code), Message: msg, DurationMS: ms(time.Since(start))})
		s.log.Info("console: handshake refused", "remote", r.RemoteAddr, "code", code, "reason", msg)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ops-repl"`)
		}
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		http.Error(w, string(code)+": "+strings.TrimPrefix(msg, string(code)+": "), status)
	}

	// 1. Limits.
	if s.isClosed() {
		refuse(http.StatusServiceUnavailable, wire.CodeUnavailable, "the console is shutting down", "")
		return
	}
	if s.sessionCount() >= s.opts.MaxSessions {
		refuse(http.StatusServiceUnavailable, wire.CodeLimit, fmt.Sprintf("too many sessions (limit %d)", s.opts.MaxSessions), "")
		return
	}
	// 2. Credentials never travel in the URL: no query string at all.
	if credentialsInURL(r.URL) {
		refuse(http.StatusBadRequest, wire.CodeBadRequest, "the console takes no query parameters, and credentials never travel in URLs; send the header \"Authorization: Bearer TOKEN\"", "")
		return
	}
	// 3. Authenticate.
	subject, err := s.opts.Authenticator.Authenticate(r)
	if err != nil || subject == "" {
		msg := "no valid credentials"
		if err != nil {
			msg = err.Error()
		}
		refuse(http.StatusUnauthorized, wire.CodeUnauthenticated, msg, "")
		return
	}
	// 4. Origin: browsers on other sites may not drive the console.
	if !sameOrigin(r) {
		refuse(http.StatusForbidden, wire.CodeForbidden, "cross-origin request refused", subject)
		return
	}
	// 5. Subprotocol.
	if !offers(r, wire.Subprotocol) {
		refuse(http.StatusBadRequest, wire.CodeBadRequest, "offer the WebSocket subprotocol "+wire.Subprotocol, subject)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		refuse(http.StatusBadRequest, wire.CodeBadRequest, "this endpoint speaks WebSocket only", subject)
		return
	}
	// 6. Upgrade. The response never echoes a bearer subprotocol.
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil { // gorilla has answered the client
		s.auditWrite(audit.Record{Kind: audit.KindHandshake, Remote: r.RemoteAddr, Subject: subject,
			Outcome: string(wire.CodeBadRequest), Message: "upgrade failed: " + err.Error(), DurationMS: ms(time.Since(start))})
		s.log.Info("console: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	sess := newSession(s, conn, subject, r.RemoteAddr)
	if ok, closing := s.register(sess); !ok {
		code, text, outcome := websocket.CloseTryAgainLater, "too many sessions", wire.CodeLimit
		if closing {
			code, text, outcome = websocket.CloseGoingAway, "server shutting down", wire.CodeUnavailable
		}
		s.auditWrite(audit.Record{Kind: audit.KindHandshake, Remote: r.RemoteAddr, Subject: subject,
			Outcome: string(outcome), Message: text, DurationMS: ms(time.Since(start))})
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
		conn.Close()
		return
	}
	sess.serve()
}

// credentialsInURL reports whether the URL carries a query string. The
// console takes no query parameters, so any query is refused: that rules
// out a token in the URL however it is spelled or encoded.
func credentialsInURL(u *url.URL) bool {
	return u.RawQuery != "" || u.ForceQuery
}

// sameOrigin mirrors gorilla/websocket's default check: no Origin header
// (a non-browser client), or an Origin whose host is the request's Host.
func sameOrigin(r *http.Request) bool {
	origin := r.Header["Origin"]
	if len(origin) == 0 {
		return true
	}
	u, err := url.Parse(origin[0])
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func offers(r *http.Request, proto string) bool {
	for _, p := range websocket.Subprotocols(r) {
		if p == proto {
			return true
		}
	}
	return false
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) sessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// register adds a session; it reports false when the server is closing
// (closing true) or full.
func (s *Server) register(sess *session) (ok, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.sessions) >= s.opts.MaxSessions {
		return false, s.closed
	}
	s.sessions[sess.id] = sess
	s.wg.Add(1)
	return true, false
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess.id]; ok {
		delete(s.sessions, sess.id)
		s.wg.Done()
	}
}

// Close ends every session (each client gets WebSocket status 1001) and
// refuses new ones. It waits for sessions to finish and is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		sess.shutdown(websocket.CloseGoingAway, "server shutting down")
	}
	s.wg.Wait()
	s.tuning.revertAll(s)
	return nil
}

// DefaultAddr is the address ListenAndServe uses when given "".
const DefaultAddr = "127.0.0.1:7227"

// ListenAndServe serves the console alone on addr until ctx is done, then
// closes it. An address without a host (":7227") binds 127.0.0.1, not
// every interface: to listen beyond loopback, name the host explicitly
// ("0.0.0.0:7227"). Default addr: DefaultAddr. ready, if not nil, is called
// with the bound address once the listener is open.
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", loopbackDefault(addr))
	if err != nil {
		return fmt.Errorf("console: listen: %w", err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("console: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	return s.Close()
}

func loopbackDefault(addr string) string {
	if addr == "" {
		return DefaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

func (s *Server) auditWrite(r audit.Record) {
	if s.opts.Audit == nil {
		return
	}
	if err := s.opts.Audit.Write(r); err != nil {
		s.log.Error("console: audit write failed", "err", err)
	}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
