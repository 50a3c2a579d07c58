package console

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/opsrepl/opsrepl/access"

	"github.com/gorilla/websocket"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/sandbox"
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
	// Authenticator identifies clients by their credentials (a bearer
	// token). Required, unless TLS has ClientCAs (certificates only). If it
	// has a method OnRevoke(func(subjects []string)), as *auth.Tokens does,
	// New registers the console's own: when credentials are revoked (a
	// token file reloaded without a subject's token), that subject's open
	// sessions end, with a notice and an audit record. A subject with
	// several tokens that loses one has all its sessions closed.
	Authenticator Authenticator
	// Authorizer decides every command, eval and package import. Required.
	Authorizer Authorizer
	// Audit receives, for every request, an intent record synced to disk
	// before it runs (if that write fails, the request is refused with
	// "internal") and an outcome record after; and records of sessions,
	// refused handshakes (aggregated, see RefusalInterval) and settings
	// that revert. Required: audit.Discard runs the console unaudited, on
	// purpose.
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

	// TLS, if set, is the configuration ListenAndServe serves HTTPS with.
	// When it has ClientCAs, a client certificate that verifies against
	// them (for client authentication) identifies the client: the subject
	// is the certificate's Subject Common Name, which must be 1 to 64
	// letters, digits and . _ @ - (certificates and tokens share one
	// subject namespace). A client without a certificate may still use a
	// bearer token if Authenticator is set; a certificate and a token
	// together are refused as ambiguous. The console verifies
	// certificates itself (ClientAuth becomes RequestClientCert), so a
	// bad one is an HTTP 401 with its reason (unknown authority, expired,
	// not yet valid, not for client authentication), counted against the
	// source's failed authentications and audited. Mounted on the
	// application's own TLS server, the console checks certificates
	// against these ClientCAs the same way, provided that server asks for
	// them without verifying them (tls.RequestClientCert); with
	// VerifyClientCertIfGiven its TLS layer refuses bad ones first, and
	// the console never sees them. The version floor is TLS 1.2, with
	// only AEAD cipher suites for TLS 1.2, whatever the config says
	// (see LegacyTLS). Default: none (plain HTTP, tokens only).
	TLS *tls.Config
	// LegacyTLS takes TLS.MinVersion and TLS.CipherSuites as given, below
	// the console's floor (TLS 1.0 and 1.1, CBC suites): only for clients
	// that cannot do better. Default: false.
	LegacyTLS bool
	// TranscriptDir, if set, keeps a recording of each session, everything
	// its operator saw, as an asciicast v2 file named <session id>.cast
	// (0600), which ops-repl replay and asciinema play. The session's
	// audit records name the file. Default: none (no recording).
	TranscriptDir string
	// MaxTranscriptBytes caps one recording; past it, recording stops with
	// a note in the file and an audit record, and the session goes on.
	// Default: 64 MiB.
	MaxTranscriptBytes int64
	// MaxTranscriptBytesPerSubject caps what one subject's recordings
	// write in all, over the console's life. Default: 256 MiB.
	MaxTranscriptBytesPerSubject int64
	// MaxTranscriptBytesTotal caps what all recordings write, over the
	// console's life. Default: 1 GiB.
	MaxTranscriptBytesTotal int64
	// DiskReserve is the free space recordings leave on TranscriptDir's
	// file system, for the audit log: below it, they stop. Default:
	// 256 MiB.
	DiskReserve int64

	// Sandbox holds the limits of the child processes Go evaluation runs
	// in, one per session: memory (MaxMemory, default 1 GiB), CPU over a
	// child's life (MaxCPU, 10m), spares kept started (Spares, 1), idle
	// time before a session's child is stopped (IdleTimeout, 10m); see
	// sandbox.Options. Its Exports, Interp and Logger are set from this
	// struct's. Children need the program to call sandbox.Main() first in
	// main; without it (and without InProcessEval) every eval is refused
	// with an error that says so.
	Sandbox sandbox.Options
	// InProcessEval runs Go evaluation inside this process instead of in
	// child processes. UNSAFE: the interpreter's guards are then all that
	// stands between an evaluation and the service, and they are known to
	// be incomplete; one evaluation can exhaust its memory or crash it.
	// Use it only where a child cannot be started. Default: false.
	InProcessEval bool
	// Web serves the web console: a plain GET of the console's path with
	// a trailing slash (…/ops-repl/) returns a page that opens sessions
	// on the same endpoint, with the browser's own token or client
	// certificate; a plain GET without the slash is redirected there. The
	// page and its script are part of this package (nothing is fetched
	// from elsewhere) and are served with a Content-Security-Policy that
	// lets them talk to this origin only. Mount the Server on both paths:
	//
	//	mux.Handle("/ops-repl", srv)
	//	mux.Handle("/ops-repl/", srv)
	//
	// Default: false; a plain GET gets 400 saying what the endpoint is.
	Web bool
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
	// MaxSessions caps concurrent sessions (HTTP 503, code limit).
	// Default: 64.
	MaxSessions int
	// ReservedSessions of MaxSessions are kept for the subjects the
	// policy lets use ReservedFor, so that whoever must get in during an
	// incident can while lower roles fill theirs. Default: 4.
	ReservedSessions int
	// ReservedFor is the policy object (action run) that entitles a
	// subject to the reserved sessions. Default: eval (admins, with the
	// shipped policy).
	ReservedFor string
	// MaxSessionsPerSubject caps one subject's concurrent sessions (HTTP
	// 429, code limit). Default: 8.
	MaxSessionsPerSubject int
	// HandshakeRate limits the connection attempts of one authenticated
	// subject: past it, HTTP 429 with code throttled and Retry-After.
	// Default: 10 per second, bursts of 20.
	HandshakeRate Rate
	// FailedAuthRate limits failed authentications per source address (an
	// IPv4 address, or an IPv6 /64): past it, bad credentials get HTTP 429
	// (code throttled) instead of 401, and their audit records are
	// aggregated. Credentials are checked first (a hash and a
	// constant-time compare), so a valid one is never refused because
	// others failed from the same address. Default: 1 per second, bursts
	// of 10.
	FailedAuthRate Rate
	// RefusalInterval is the window over which refused handshakes are
	// aggregated in the audit log: per source and code, the first is
	// written at once and the rest as one record with a count.
	// Default: 10s.
	RefusalInterval time.Duration
	// RequestRate limits the run and complete requests of one session:
	// past it, a request is refused with code throttled. Default: 20 per
	// second, bursts of 50.
	RequestRate Rate
	// MaxQueued caps the requests a session may have waiting to run (code
	// busy). Default: 16.
	MaxQueued int
	// MaxOutputBytes caps the text output of one request; past it the
	// request is stopped with code limit. (Go evaluation is capped lower,
	// by Interp.MaxOutput; file transfers have their own limits.)
	// Default: 16 MiB.
	MaxOutputBytes int64
	// IdleTimeout closes a session that has sent no request for this long
	// and has none running (WebSocket status 1000, "idle timeout").
	// Default: 30m.
	IdleTimeout time.Duration
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
// Go evaluation, in a child process per session that can call the
// exported functions. Every connection must present a bearer token
// (never in the URL); browsers' cross-origin requests are refused; every
// request is authorized and audited. Prefer a loopback listener
// (ListenAndServe binds 127.0.0.1 unless told otherwise).
type Server struct {
	opts     Options
	log      *slog.Logger
	commands map[string]*Command
	names    []string // sorted command names
	upgrader websocket.Upgrader

	castBudget *castBudget   // what the transcripts may write
	pool       *sandbox.Pool // where sessions' Go runs; nil in process or off
	evalOff    *wire.Error   // why Go evaluation is off, if it is

	handshakes *sourceLimiter // per source, every attempt
	failedAuth *sourceLimiter // per source, failed authentications
	refused    refusals       // aggregated audit of refused handshakes

	mu        sync.Mutex
	sessions  map[string]*session
	bySubject map[string]int
	closed    bool
	wg        sync.WaitGroup
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	certs := opts.TLS != nil && opts.TLS.ClientCAs != nil
	if opts.Authenticator == nil && !certs {
		return nil, errors.New("console: Options.Authenticator is required (or TLS with ClientCAs)")
	}
	if opts.TLS != nil {
		opts.TLS = opts.TLS.Clone()
		if certs {
			// The TLS layer asks for a certificate; the console verifies it
			// (certSubject), so that a bad one is refused with a reason,
			// counted against its source and audited like a bad token.
			opts.TLS.ClientAuth = tls.RequestClientCert
		}
		if !opts.LegacyTLS {
			tlsFloor(opts.TLS)
		}
	}
	if opts.Authorizer == nil {
		return nil, errors.New("console: Options.Authorizer is required")
	}
	if opts.Audit == nil {
		return nil, errors.New("console: Options.Audit is required: give it an audit log (audit.Open), or audit.Discard to run the console unaudited on purpose")
	}
	if err := opts.Exports.Err(); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	opts.Interp = opts.Interp.WithDefaults()
	setDefault(&opts.MaxMessageBytes, 1<<20)
	setDefault(&opts.MaxSessions, 64)
	if opts.ReservedSessions == 0 {
		opts.ReservedSessions = 4
	}
	opts.ReservedSessions = min(max(opts.ReservedSessions, 0), opts.MaxSessions-1)
	if opts.ReservedFor == "" {
		opts.ReservedFor = access.Eval
	}
	setDefault(&opts.MaxSessionsPerSubject, 8)
	setDefault(&opts.MaxQueued, 16)
	setDefault(&opts.MaxOutputBytes, 16<<20)
	setDefault(&opts.MaxTranscriptBytes, 64<<20)
	setDefault(&opts.MaxTranscriptBytesPerSubject, 256<<20)
	setDefault(&opts.MaxTranscriptBytesTotal, 1<<30)
	setDefault(&opts.DiskReserve, 256<<20)
	setDefault(&opts.IdleTimeout, 30*time.Minute)
	setDefault(&opts.RefusalInterval, 10*time.Second)
	opts.HandshakeRate = opts.HandshakeRate.withDefault(Rate{PerSecond: 10, Burst: 20})
	opts.FailedAuthRate = opts.FailedAuthRate.withDefault(Rate{PerSecond: 1, Burst: 10})
	opts.RequestRate = opts.RequestRate.withDefault(Rate{PerSecond: 20, Burst: 50})
	setDefault(&opts.WriteTimeout, 10*time.Second)
	setDefault(&opts.PingInterval, 30*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		commands:   map[string]*Command{},
		sessions:   map[string]*session{},
		bySubject:  map[string]int{},
		handshakes: newSourceLimiter(opts.HandshakeRate),
		failedAuth: newSourceLimiter(opts.FailedAuthRate),
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
		for _, o := range c.Requires {
			if name, ok := strings.CutPrefix(o, access.CommandPrefix); !ok || !isWord(name) {
				return nil, fmt.Errorf("console: command %q requires %q: further objects are cmd:NAME, with a name of letters, digits and dashes", c.Name, o)
			}
		}
		s.commands[c.Name] = c
		s.names = append(s.names, c.Name)
	}
	sort.Strings(s.names)
	s.refused = refusals{srv: s, interval: opts.RefusalInterval}
	s.castBudget = &castBudget{dir: opts.TranscriptDir, maxSubject: opts.MaxTranscriptBytesPerSubject,
		maxTotal: opts.MaxTranscriptBytesTotal, reserve: uint64(opts.DiskReserve), bySubject: map[string]int64{}}
	if err := s.checkPolicy(); err != nil {
		return nil, err
	}
	s.newEvaluators()
	if r, ok := opts.Authenticator.(interface{ OnRevoke(func(subjects []string)) }); ok {
		r.OnRevoke(s.revoke) // a revoked token's sessions end (auth.Tokens.Watch)
	}
	if opts.Audit == audit.Discard {
		s.log.Warn("console: audit.Discard: requests will not be audited")
	}
	return s, nil
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// checkPolicy refuses a policy that names a command that does not exist,
// when the Authorizer can list the objects its policy names.
func (s *Server) checkPolicy() error {
	lister, ok := s.opts.Authorizer.(interface{ Objects() []string })
	if !ok {
		return nil
	}
	return s.CheckObjects(lister.Objects())
}

// CheckObjects returns an error naming the first object the console
// would never ask about: a cmd: object that is no command and no
// command's Requires, or an object that is none of cmd:NAME, eval, pkg:PATH (a typo there would
// silently never match). Pass it as the validator of a policy reload
// (policy.WatchOptions.Validate) so that a new policy is checked like the
// one New was given.
func (s *Server) CheckObjects(objects []string) error {
	declared := map[string]bool{} // the further objects commands ask for
	for _, cmd := range s.commands {
		for _, o := range cmd.Requires {
			declared[o] = true
		}
	}
	for _, obj := range objects {
		name, isCmd := strings.CutPrefix(obj, access.CommandPrefix)
		switch {
		case isCmd && !strings.HasSuffix(name, "*") && s.commands[name] == nil && !declared[obj]:
			return fmt.Errorf("console: the policy names %s, but there is no command %q (commands: %s)", obj, name, strings.Join(s.names, ", "))
		case !isCmd && obj != access.Eval && obj != access.Any && !strings.HasPrefix(obj, access.PackagePrefix):
			return fmt.Errorf("console: the policy names the object %q, which the console never asks about (objects are cmd:NAME, eval and pkg:IMPORT/PATH)", obj)
		}
	}
	return nil
}

// ServeHTTP runs the guard pipeline, in this order: shutting down,
// credentials (never from the URL), authentication (failures limited per
// source), the subject's handshake rate, a policy that grants it
// something, the session counts (with the reserve), origin, subprotocol,
// upgrade. Nothing but a
// per-source rate bucket is kept for a request that fails a guard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	source := sourceKey(r.RemoteAddr)
	refuse := func(status int, code wire.Code, msg, subject string, retry time.Duration) {
		rec := audit.Record{Kind: audit.KindHandshake, Remote: r.RemoteAddr, Subject: subject,
			Outcome: string(code), Message: msg, DurationMS: ms(time.Since(start))}
		if s.refused.add(rec, source) {
			s.log.Info("console: handshake refused", "remote", r.RemoteAddr, "code", code, "reason", msg)
		}
		switch status {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="ops-repl"`)
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			secs := max(1, int((retry+time.Second-1)/time.Second))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
		}
		http.Error(w, string(code)+": "+strings.TrimPrefix(msg, string(code)+": "), status)
	}

	// 1. Shutting down; credentials never in the URL (no query string at
	// all).
	if s.isClosed() {
		refuse(http.StatusServiceUnavailable, wire.CodeUnavailable, "the console is shutting down", "", 5*time.Second)
		return
	}
	if credentialsInURL(r.URL) {
		refuse(http.StatusBadRequest, wire.CodeBadRequest, "the console takes no query parameters, and credentials never travel in URLs; send the header \"Authorization: Bearer TOKEN\"", "", 0)
		return
	}
	if r.Method != http.MethodGet && websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Allow", http.MethodGet)
		refuse(http.StatusMethodNotAllowed, wire.CodeBadRequest, "a WebSocket upgrade is a GET request, not "+r.Method, "", 0)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) && s.opts.Web && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		serveWeb(w, r)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		refuse(http.StatusBadRequest, wire.CodeBadRequest, "this is the ops-repl console, a WebSocket endpoint: connect with the ops-repl client (ops-repl --url URL), or a WebSocket client offering the subprotocol "+wire.Subprotocol+" (see PROTOCOL.md)", "", 0)
		return
	}
	// 2. Origin, before credentials: a page on another site may not drive
	// the console, and a browser would send a client certificate for it,
	// so its attempts must not count against the operator's own.
	if !sameOrigin(r) {
		refuse(http.StatusForbidden, wire.CodeForbidden, "cross-origin request refused", "", 0)
		return
	}
	// 3. Authenticate first (a hash and a constant-time compare, or a
	// certificate check): failures are limited per source address, so
	// that a flood from an address (on loopback, everyone's) never refuses
	// a valid credential; a subject's own attempts are limited per
	// subject.
	subject, err := s.authenticate(r)
	if err != nil || subject == "" {
		msg := "no valid credentials"
		if err != nil {
			msg = err.Error()
		}
		if ok, wait := s.failedAuth.allow(source); !ok {
			refuse(http.StatusTooManyRequests, wire.CodeThrottled, fmt.Sprintf("too many failed authentications from %s; retry later", source), "", wait)
			return
		}
		refuse(http.StatusUnauthorized, wire.CodeUnauthenticated, msg, "", 0)
		return
	}
	if ok, wait := s.handshakes.allow(subject); !ok {
		refuse(http.StatusTooManyRequests, wire.CodeThrottled, fmt.Sprintf("too many connection attempts by %s (limit %g per second); retry later", subject, s.opts.HandshakeRate.PerSecond), subject, wait)
		return
	}
	// 4. A subject the policy grants nothing gets no session; the session
	// limits keep ReservedSessions for those who may use ReservedFor.
	if !s.grantsAnything(subject) {
		refuse(http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf("%s may do nothing here: the policy grants it no command", subject), subject, 0)
		return
	}
	if limit := s.sessionLimit(subject); s.sessionCount() >= limit {
		refuse(http.StatusServiceUnavailable, wire.CodeLimit, fmt.Sprintf("too many sessions (limit %d for %s)", limit, subject), subject, 5*time.Second)
		return
	}
	if s.subjectCount(subject) >= s.opts.MaxSessionsPerSubject {
		refuse(http.StatusTooManyRequests, wire.CodeLimit, fmt.Sprintf("%s has too many sessions open (limit %d); close one", subject, s.opts.MaxSessionsPerSubject), subject, 5*time.Second)
		return
	}
	// 5. Subprotocol.
	if !offers(r, wire.Subprotocol) {
		refuse(http.StatusBadRequest, wire.CodeBadRequest, "offer the WebSocket subprotocol "+wire.Subprotocol, subject, 0)
		return
	}

	// 6. Upgrade. The response never echoes a bearer subprotocol.
	hw := &hijacker{ResponseWriter: w}
	conn, err := s.upgrader.Upgrade(hw, r, nil)
	if err != nil { // gorilla has answered the client
		s.refused.add(audit.Record{Kind: audit.KindHandshake, Remote: r.RemoteAddr, Subject: subject,
			Outcome: string(wire.CodeBadRequest), Message: "upgrade failed: " + err.Error(), DurationMS: ms(time.Since(start))}, source)
		s.log.Info("console: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	sess := newSession(s, conn, subject, r.RemoteAddr)
	sess.batch = hw.conn
	sess.client = clientName(r.UserAgent())
	sess.limit = s.sessionLimit(subject)
	if ok, why := s.register(sess); !ok {
		code, outcome := websocket.CloseTryAgainLater, wire.CodeLimit
		if why == "" {
			code, outcome, why = websocket.CloseGoingAway, wire.CodeUnavailable, "server shutting down"
		}
		s.refused.add(audit.Record{Kind: audit.KindHandshake, Remote: r.RemoteAddr, Subject: subject,
			Outcome: string(outcome), Message: why, DurationMS: ms(time.Since(start))}, source)
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, why), time.Now().Add(time.Second))
		conn.Close()
		sess.cancel()
		return
	}
	sess.serve()
}

// clientName is a User-Agent as the audit keeps it: printable, at most
// 200 bytes.
func clientName(ua string) string {
	ua = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, ua)
	if len(ua) > 200 {
		ua = strings.ToValidUTF8(ua[:200], "")
	}
	return ua
}

// grantsAnything reports whether the policy lets subject run any command
// (the ones everyone may run aside) or evaluate Go.
func (s *Server) grantsAnything(subject string) bool {
	probe := &session{srv: s, subject: subject}
	for _, name := range s.names {
		if cmd := s.commands[name]; !cmd.open && probe.allowed(cmd.object()) {
			return true
		}
	}
	return probe.allowed(access.Eval)
}

// sessionLimit is how many sessions there may be in all when subject
// opens one: MaxSessions for those the policy lets use ReservedFor,
// ReservedSessions fewer for everyone else.
func (s *Server) sessionLimit(subject string) int {
	probe := &session{srv: s, subject: subject}
	if probe.allowed(s.opts.ReservedFor) {
		return s.opts.MaxSessions
	}
	return s.opts.MaxSessions - s.opts.ReservedSessions
}

// authenticate identifies the client: by its certificate when TLS has
// ClientCAs and one was presented, else by the Authenticator.
func (s *Server) authenticate(r *http.Request) (string, error) {
	if s.opts.TLS != nil && s.opts.TLS.ClientCAs != nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if hasToken(r) {
			return "", errors.New("both a client certificate and a bearer token: present one")
		}
		return certSubject(r.TLS.PeerCertificates, s.opts.TLS.ClientCAs)
	}
	if s.opts.Authenticator == nil {
		return "", errors.New("present a client certificate")
	}
	return s.opts.Authenticator.Authenticate(r)
}

// hasToken reports whether r carries a bearer token, in the header or a
// subprotocol.
func hasToken(r *http.Request) bool {
	if len(r.Header.Values("Authorization")) > 0 {
		return true
	}
	for _, p := range websocket.Subprotocols(r) {
		if strings.HasPrefix(p, wire.BearerProtocolPrefix) {
			return true
		}
	}
	return false
}

// certSubject verifies a client certificate chain against roots and
// returns its leaf's Subject Common Name.
func certSubject(chain []*x509.Certificate, roots *x509.CertPool) (string, error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", fmt.Errorf("the client certificate does not verify: %s", certProblem(leaf, err))
	}
	var cns []string
	for _, n := range leaf.Subject.Names {
		if n.Type.Equal(oidCommonName) {
			cns = append(cns, fmt.Sprint(n.Value))
		}
	}
	if len(cns) != 1 {
		return "", fmt.Errorf("the client certificate has %d Common Names; it must have exactly one", len(cns))
	}
	cn := cns[0]
	if !wire.IsSubject(cn) {
		return "", fmt.Errorf("the client certificate's Common Name %.70q cannot name a subject (1 to 64 letters, digits and . _ @ -)", cn)
	}
	return cn, nil
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// certProblem says why a certificate did not verify, in words an operator
// can act on.
func certProblem(leaf *x509.Certificate, err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return "signed by an unknown authority"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		if now := time.Now(); now.Before(leaf.NotBefore) {
			return "not valid yet (from " + leaf.NotBefore.UTC().Format(time.RFC3339) + ")"
		}
		return "expired (" + leaf.NotAfter.UTC().Format(time.RFC3339) + ")"
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return "not issued for client authentication"
	}
	return "invalid"
}

// tlsFloor raises c to TLS 1.2 at least, with only AEAD cipher suites for
// TLS 1.2 (TLS 1.3's are all AEAD).
func tlsFloor(c *tls.Config) {
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	suites := c.CipherSuites
	if suites == nil {
		for _, cs := range tls.CipherSuites() {
			suites = append(suites, cs.ID)
		}
	}
	var aead []uint16
	for _, id := range suites {
		if aeadSuites[id] {
			aead = append(aead, id)
		}
	}
	c.CipherSuites = aead
}

// aeadSuites are the TLS 1.2 suites with ECDHE and an AEAD cipher.
var aeadSuites = map[uint16]bool{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       true,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       true,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: true,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         true,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         true,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   true,
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

func (s *Server) subjectCount(subject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bySubject[subject]
}

// register adds a session; when it cannot, it says why ("" when the
// server is closing).
func (s *Server) register(sess *session) (ok bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return false, ""
	case len(s.sessions) >= sess.limit:
		return false, fmt.Sprintf("too many sessions (limit %d for %s)", sess.limit, sess.subject)
	case s.bySubject[sess.subject] >= s.opts.MaxSessionsPerSubject:
		return false, fmt.Sprintf("%s has too many sessions open (limit %d)", sess.subject, s.opts.MaxSessionsPerSubject)
	}
	s.sessions[sess.id] = sess
	s.bySubject[sess.subject]++
	s.wg.Add(1)
	return true, ""
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess.id]; ok {
		delete(s.sessions, sess.id)
		if s.bySubject[sess.subject]--; s.bySubject[sess.subject] <= 0 {
			delete(s.bySubject, sess.subject)
		}
		s.wg.Done()
	}
}

// Close ends every session (each client gets WebSocket status 1001) and
// refuses new ones. It waits for sessions to finish, about a second when
// a client has stopped reading (its blocked write is cut short), and for
// requests to stop (Go evaluation and the built-in commands stop at once;
// an application command that ignores its context holds Close until it
// returns). It is idempotent.
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
	if s.pool != nil {
		s.pool.Close()
	}
	process.tuning.revertOwned(s)
	s.refused.close()
	return nil
}

// revoke ends the sessions of subjects whose credentials were revoked:
// each gets a notice and WebSocket status 1008, and an audit record.
func (s *Server) revoke(subjects []string) {
	gone := map[string]bool{}
	for _, sub := range subjects {
		gone[sub] = true
	}
	s.mu.Lock()
	var ended []*session
	for _, sess := range s.sessions {
		if gone[sess.subject] {
			ended = append(ended, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range ended {
		s.log.Info("console: closing a session whose credentials were revoked", "session", sess.id, "subject", sess.subject)
		s.auditWrite(audit.Record{Kind: audit.KindSession, Session: sess.id, Subject: sess.subject, Remote: sess.remote,
			Outcome: audit.OutcomeRevoked, Message: "the subject's credentials were revoked (token file reloaded); the session is closed"})
		sess.sendEvent(wire.Event{Type: wire.EventNotice, Message: "your credentials were revoked: this session ends"})
		sess.shutdown(websocket.ClosePolicyViolation, "credentials revoked")
	}
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
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10,
		// TLS handshakes that fail (an old protocol, garbage) are logged
		// here, not on the process's default logger.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelInfo)}
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
