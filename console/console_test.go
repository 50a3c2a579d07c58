package console

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/access"

	"github.com/gorilla/websocket"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/policy"
	"github.com/opsrepl/opsrepl/sandbox"
)

var testTokens = map[string]string{
	"viewer":   "viewer-token-0123456789abcdef0123456789",
	"operator": "operator-token-0123456789abcdef012345678",
	"admin":    "admin-token-0123456789abcdef0123456789ab",
}

// syncBuffer collects what the server's goroutines write (audit, logs).
type syncBuffer = lockedBuffer

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	srv   *Server
	hs    *httptest.Server
	url   string
	audit *syncBuffer
	logs  *syncBuffer
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	tokens, err := auth.NewTokens(testTokens)
	if err != nil {
		t.Fatal(err)
	}
	enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy +
		"g, viewer, role:viewer\ng, operator, role:operator\ng, admin, role:admin\n"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{audit: &syncBuffer{}, logs: &syncBuffer{}}
	var counter struct {
		sync.Mutex
		n int
	}
	opts := Options{
		Authenticator: tokens,
		Authorizer:    enf,
		Audit:         audit.New(f.audit),
		Logger:        slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Exports: new(interp.Exports).
			Func("shop/cache", "Len", func() int { return 42 }).
			Func("shop/cache", "Bump", func() int { counter.Lock(); defer counter.Unlock(); counter.n++; return counter.n }),
		Interp: interp.Options{Timeout: 5 * time.Second},
	}
	if mod != nil {
		mod(&opts)
	}
	f.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.hs = httptest.NewServer(f.srv)
	f.url = "ws" + strings.TrimPrefix(f.hs.URL, "http")
	t.Cleanup(func() {
		f.srv.Close()
		f.hs.Close()
	})
	return f
}

// tconn is a test session, through package client: the console's tests
// drive it as any Go client would. Tests of the wire itself use rawConn
// (conformance_test.go).
type tconn struct {
	t       *testing.T
	c       *client.Conn
	hello   wire.Event
	netConn net.Conn        // the TCP connection, to drop it without a close frame
	notices chan wire.Event // events with id 0

	mu    sync.Mutex
	reqs  map[uint64]*client.Request
	files map[uint64]*bytes.Buffer
	next  uint64
}

func (f *fixture) dial(t *testing.T, subject string) *tconn {
	t.Helper()
	tc := &tconn{t: t, notices: make(chan wire.Event, 64), reqs: map[uint64]*client.Request{}, files: map[uint64]*bytes.Buffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, f.url, client.Options{
		Token:            testTokens[subject],
		HandshakeRetries: -1, // the tests see throttling as it is
		ThrottleWait:     -1,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := new(net.Dialer).DialContext(ctx, network, addr)
			tc.netConn = nc
			return nc, err
		},
		Notice: func(ev wire.Event) {
			select {
			case tc.notices <- ev:
			default:
			}
		},
	})
	if err != nil {
		t.Fatalf("dial as %s: %v", subject, err)
	}
	t.Cleanup(func() { tc.drop() })
	tc.c = c
	tc.hello = c.Hello()
	if tc.hello.Subject != subject {
		t.Fatalf("hello: got %+v", tc.hello)
	}
	return tc
}

// drop ends the connection at once, without a close frame.
func (tc *tconn) drop() { tc.netConn.Close() }

// closed waits for the server to end the connection and returns why.
func (tc *tconn) closed() *client.ClosedError {
	tc.t.Helper()
	select {
	case <-tc.c.Done():
	case <-time.After(15 * time.Second):
		tc.t.Fatal("the connection is still open after 15s")
	}
	var ce *client.ClosedError
	if !errors.As(tc.c.Err(), &ce) {
		tc.t.Fatalf("connection ended with %v; want a close from the server", tc.c.Err())
	}
	return ce
}

// send sends a request and returns its id; read collects its events. A
// cancel is sent for its target.
func (tc *tconn) send(req wire.Request) uint64 {
	tc.t.Helper()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if req.Type == wire.TypeCancel {
		if r := tc.reqs[req.Target]; r != nil {
			r.Cancel()
		}
		return 0
	}
	if req.ID == 0 {
		tc.next++
		req.ID = tc.next
	}
	buf := new(bytes.Buffer)
	r, err := tc.c.Send(req, func(wire.Event) (client.Sink, error) { buf.Reset(); return client.WriterSink(buf), nil })
	if err != nil {
		tc.t.Fatalf("send: %v", err)
	}
	tc.reqs[req.ID], tc.files[req.ID] = r, buf
	return req.ID
}

// read collects the events of request id until its final one, with the
// bytes of its file transfer; for id 0, it waits for one event with id 0.
func (tc *tconn) read(id uint64) (evs []wire.Event, file []byte) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if id == 0 {
		select {
		case ev := <-tc.notices:
			return []wire.Event{ev}, nil
		case <-ctx.Done():
			tc.t.Fatal("no event with id 0 within 15s")
		}
	}
	tc.mu.Lock()
	r, buf := tc.reqs[id], tc.files[id]
	tc.mu.Unlock()
	if r == nil {
		tc.t.Fatalf("read %d: no such request", id)
	}
	for {
		ev, err := r.Next(ctx)
		var fe *client.FileError
		switch {
		case errors.Is(err, io.EOF):
			tc.mu.Lock()
			delete(tc.reqs, id)
			tc.mu.Unlock()
			return evs, buf.Bytes()
		case errors.As(err, &fe):
			evs = append(evs, ev) // the file_end of a file that failed its checks
		case err != nil:
			tc.t.Fatalf("read %d: %v (events so far: %+v)", id, err, evs)
		default:
			evs = append(evs, ev)
		}
	}
}

func (tc *tconn) run(line string) (final wire.Event, output string, file []byte, all []wire.Event) {
	tc.t.Helper()
	id := tc.send(wire.Request{Type: wire.TypeRun, Line: line})
	evs, file := tc.read(id)
	var out strings.Builder
	for _, ev := range evs {
		if ev.Type == wire.EventOutput {
			out.WriteString(ev.Data)
		}
	}
	return evs[len(evs)-1], out.String(), file, evs
}

func TestRequests(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		subject, line string
		typ           string    // final event type
		code          wire.Code // for errors
		out           string    // substring of output, value or message
	}{
		{"viewer", "memstats", wire.EventResult, "", "/gc/heap/live:bytes"},
		{"viewer", "help", wire.EventResult, "", "memstats"},
		{"viewer", "whoami", wire.EventResult, "", "role:viewer"},
		{"viewer", "goroutines", wire.EventResult, "", "goroutines"},
		{"viewer", "buildinfo", wire.EventResult, "", "go"},
		{"viewer", "heapdump", wire.EventError, wire.CodeForbidden, "heapdump"},
		{"viewer", "gc", wire.EventError, wire.CodeForbidden, "cmd:gc"},
		{"viewer", "1+2", wire.EventError, wire.CodeForbidden, "may not evaluate Go"},
		{"viewer", "heapdumpp", wire.EventError, wire.CodeBadRequest, "unknown command"},
		{"viewer", "memstats --bogus", wire.EventError, wire.CodeBadRequest, "flag provided but not defined"},
		{"viewer", "memstats extra", wire.EventError, wire.CodeBadRequest, "eval memstats"},
		{"viewer", "help 'unterminated", wire.EventError, wire.CodeBadRequest, "unterminated quote"},
		{"viewer", "help nosuch", wire.EventError, wire.CodeBadRequest, "unknown command"},
		{"viewer", "help <script>alert(1)</script>", wire.EventError, wire.CodeBadRequest, "unknown command"},
		{"viewer", "   ", wire.EventResult, "", ""},
		{"operator", "gc", wire.EventResult, "", "took "},
		{"operator", "heapdump --gc", wire.EventResult, "", ""},
		{"operator", "heapdump --full", wire.EventError, wire.CodeForbidden, "cmd:heapdump-full"},
		{"operator", "1+2", wire.EventError, wire.CodeForbidden, "eval"},
		{"admin", "1+2", wire.EventResult, "", "3"},
		{"admin", `fmt.Println("hi")`, wire.EventResult, "", "hi\n"},
		{"admin", "cache.Len() * 2", wire.EventResult, "", "84"},
		{"admin", "eval gc := 7; gc * 2", wire.EventResult, "", "14"},
		{"admin", "eval", wire.EventError, wire.CodeBadRequest, "give Go source"},
		{"admin", `import "os"`, wire.EventError, wire.CodeEval, "not available"},
		{"admin", `go func() { panic(1) }()`, wire.EventError, wire.CodeEval, "go statements"},
		{"admin", `func main() { panic(1) }`, wire.EventError, wire.CodeEval, "func main"},
		{"admin", `panic("boom")`, wire.EventError, wire.CodeEval, "panic: boom"},
		{"admin", `nosuchname`, wire.EventError, wire.CodeEval, "not a command either"},
		{"admin", `for {`, wire.EventIncomplete, "", ""},
		{"admin", `strings.Repeat("x", 1<<40)`, wire.EventError, wire.CodeEval, "limit"},
		{"admin", "reset", wire.EventResult, "", "interpreter"},
	}
	clients := map[string]*tconn{}
	for _, s := range []string{"viewer", "operator", "admin"} {
		clients[s] = f.dial(t, s)
	}
	for _, tt := range tests {
		t.Run(tt.subject+" "+tt.line, func(t *testing.T) {
			c := clients[tt.subject]
			c.t = t
			final, out, _, _ := c.run(tt.line)
			if final.Type != tt.typ || final.Code != tt.code {
				t.Fatalf("%q: got %s %s %q; want %s %s", tt.line, final.Type, final.Code, final.Message, tt.typ, tt.code)
			}
			text := out + final.Value + final.Message
			if !strings.Contains(text, tt.out) {
				t.Fatalf("%q: got %q; want it to contain %q", tt.line, text, tt.out)
			}
		})
	}
	// Every session is still usable after the failures above.
	for name, c := range clients {
		c.t = t
		if final, _, _, _ := c.run("whoami"); final.Type != wire.EventResult {
			t.Fatalf("%s session unusable after errors: %+v", name, final)
		}
	}
	// Every request above has an audit record, denials included; no token.
	// (An outcome record is written just after the request's final event.)
	waitFor(t, "an outcome record for every intent", func() bool {
		open := map[string]bool{}
		for _, r := range auditRecords(t, f.audit.String()) {
			key := fmt.Sprint(r.Session, r.Request)
			switch r.Kind {
			case audit.KindIntent:
				open[key] = true
			case audit.KindOutcome:
				delete(open, key)
			}
		}
		return len(open) == 0
	})
	recs := auditRecords(t, f.audit.String())
	byLine := map[string]audit.Record{}
	outcomes := map[string]audit.Record{}
	for _, r := range recs {
		key := fmt.Sprint(r.Session, r.Request)
		switch r.Kind {
		case audit.KindIntent:
			byLine[r.Subject+" "+r.Line] = r
		case audit.KindOutcome:
			outcomes[key] = r
		}
	}
	for _, tt := range tests {
		if strings.TrimSpace(tt.line) == "" {
			continue
		}
		r, ok := byLine[tt.subject+" "+tt.line]
		if !ok {
			t.Errorf("no audit record for %s %q", tt.subject, tt.line)
			continue
		}
		out, ok := outcomes[fmt.Sprint(r.Session, r.Request)]
		if !ok {
			t.Errorf("no outcome record for %s %q", tt.subject, tt.line)
		}
		if tt.code == wire.CodeForbidden && (r.Decision != "deny" || out.Outcome != "forbidden") {
			t.Errorf("audit of denied %q: got decision %q outcome %q", tt.line, r.Decision, out.Outcome)
		}
		if r.Session == "" || r.Remote == "" || r.Time.IsZero() {
			t.Errorf("audit record lacks session, remote or time: %+v", r)
		}
	}
	for name, tok := range testTokens {
		if strings.Contains(f.audit.String(), tok) {
			t.Fatalf("the %s token is in the audit log", name)
		}
	}
}

func auditRecords(t *testing.T, s string) []audit.Record {
	t.Helper()
	var out []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func TestHeapdumpTransfer(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dial(t, "operator")
	final, _, file, evs := c.run("heapdump")
	if final.Type != wire.EventResult {
		t.Fatalf("heapdump: %+v", final)
	}
	var hdr, end *wire.Event
	for i := range evs {
		switch evs[i].Type {
		case wire.EventFile:
			hdr = &evs[i]
		case wire.EventFileEnd:
			end = &evs[i]
		}
	}
	if hdr == nil || end == nil {
		t.Fatalf("no file/file_end events: %+v", evs)
	}
	if !strings.HasPrefix(hdr.Name, "heap-") || !strings.HasSuffix(hdr.Name, ".pb.gz") {
		t.Fatalf("file name: got %q; want heap-<time>.pb.gz", hdr.Name)
	}
	sum := sha256.Sum256(file)
	if int64(len(file)) != hdr.Size || hex.EncodeToString(sum[:]) != hdr.SHA256 {
		t.Fatalf("file: got %d bytes sha %x; header says %d bytes sha %s", len(file), sum, hdr.Size, hdr.SHA256)
	}
	zr, err := gzip.NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatalf("heap profile is not gzip: %v", err)
	}
	if _, err := io.ReadAll(zr); err != nil {
		t.Fatalf("heap profile gzip stream: %v", err)
	}
}

func TestCancelAndReset(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dial(t, "admin")
	if final, _, _, _ := c.run("x := 41"); final.Type != wire.EventResult {
		t.Fatalf("x := 41: %+v", final)
	}
	id := c.send(wire.Request{Type: wire.TypeRun, Line: "time.Sleep(time.Minute)"})
	time.Sleep(100 * time.Millisecond)
	c.send(wire.Request{Type: wire.TypeCancel, Target: id})
	evs, _ := c.read(id)
	final := evs[len(evs)-1]
	if final.Code != wire.CodeCanceled {
		t.Fatalf("cancelled request: got %+v; want error canceled", final)
	}
	noticed := false
	for _, ev := range evs {
		noticed = noticed || (ev.Type == wire.EventNotice && strings.Contains(ev.Message, "reset"))
	}
	if !noticed {
		t.Fatalf("no reset notice after a cancelled eval: %+v", evs)
	}
	// State is gone, and the session evaluates again.
	if final, _, _, _ := c.run("x"); final.Code != wire.CodeEval {
		t.Fatalf("x after reset: got %+v; want an eval error", final)
	}
	if final, _, _, _ := c.run("1+2"); final.Value != "3" {
		t.Fatalf("1+2 after reset: got %+v", final)
	}
}

func TestTimeout(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Interp.Timeout = 200 * time.Millisecond })
	c := f.dial(t, "admin")
	if final, _, _, _ := c.run("for {}"); final.Code != wire.CodeTimeout {
		t.Fatalf("for {}: got %+v; want timeout", final)
	}
	if final, _, _, _ := c.run("1+2"); final.Value != "3" {
		t.Fatalf("1+2 after a timeout: got %+v", final)
	}
}

func TestOutputLimit(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Interp.MaxOutput = 1000 })
	c := f.dial(t, "admin")
	final, out, _, _ := c.run(`for i := 0; i < 100000; i++ { fmt.Println("flood flood flood") }`)
	if final.Code != wire.CodeLimit {
		t.Fatalf("flood: got %+v; want limit", final)
	}
	if len(out) > 1000 {
		t.Fatalf("flood: %d bytes of output passed a 1000-byte cap", len(out))
	}
}

func TestComplete(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		subject, line string
		want          string
	}{
		{"viewer", "mem", "memstats"},
		{"viewer", "he", "help"}, // heapdump is not the viewer's
		{"operator", "he", "heapdump,help"},
		{"admin", "ev", "eval"},
		{"viewer", "ev", ""},
		{"viewer", "help me", "help memstats"},
		{"viewer", "help ", "help buildinfo,help gcwatch,help goroutines,help help,help memstats,help reason,help whoami"},
		{"operator", "help h", "help heapdump,help help"},
		{"viewer", "zz", ""},
		{"admin", "strings.ToU", "strings.ToUpper,strings.ToUpperSpecial"},
		{"admin", "x := cache.L", "cache.Len"},
		{"admin", "fmt.Println(strconv.Ito", "strconv.Itoa"},
		{"viewer", "strings.ToU", ""}, // no eval, no Go completion
	}
	for _, tt := range tests {
		t.Run(tt.subject+" "+tt.line, func(t *testing.T) {
			c := f.dial(t, tt.subject)
			id := c.send(wire.Request{Type: wire.TypeComplete, Line: tt.line})
			evs, _ := c.read(id)
			if got := strings.Join(evs[len(evs)-1].Items, ","); got != tt.want {
				t.Fatalf("complete %q: got %q; want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dial(t, "admin")
	_, out, _, _ := c.run("help")
	for _, name := range f.srv.names {
		if !strings.Contains(out, "\n  "+name) {
			t.Errorf("help does not list %q:\n%s", name, out)
		}
		if _, o, _, _ := c.run("help " + name); !strings.Contains(o, "usage: "+name) {
			t.Errorf("help %s: got %q", name, o)
		}
	}
}

func TestPolicyNamesOnlyKnownCommands(t *testing.T) {
	enf, err := policy.New(policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, c := range builtinCommands() {
		known[c.object()] = true
	}
	for _, obj := range enf.Objects() {
		if strings.HasPrefix(obj, access.CommandPrefix) && !strings.Contains(obj, "*") && !known[obj] {
			t.Errorf("policy.csv names %s, which is not a command", obj)
		}
	}
	bad, err := policy.New(policy.Options{PolicyText: "p, role:viewer, cmd:heapdmp, run, allow\n"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Authenticator: AuthenticatorFunc(func(*http.Request) (string, error) { return "", nil }), Authorizer: bad, Audit: audit.Discard})
	if err == nil || !strings.Contains(err.Error(), "cmd:heapdmp") {
		t.Fatalf("New with a policy naming an unknown command: got %v; want an error naming it", err)
	}
}

func TestAuthorizerErrorDenies(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Authorizer = AuthorizerFunc(func(sub, obj, act string) (bool, error) {
			if obj == "cmd:memstats" {
				return true, errors.New("policy backend down")
			}
			return obj == "cmd:whoami" && act == "run", nil
		})
	})
	c := f.dial(t, "viewer")
	if final, _, _, _ := c.run("memstats"); final.Code != wire.CodeForbidden {
		t.Fatalf("memstats with a failing authorizer: got %+v; want forbidden", final)
	}
	if final, _, _, _ := c.run("whoami"); final.Type != wire.EventResult {
		t.Fatalf("whoami: got %+v", final)
	}
	if !strings.Contains(f.logs.String(), "policy backend down") {
		t.Fatal("the authorizer error was not logged")
	}
}

func TestNewRequiresAuth(t *testing.T) {
	allow := AuthorizerFunc(func(string, string, string) (bool, error) { return true, nil })
	authn := AuthenticatorFunc(func(*http.Request) (string, error) { return "x", nil })
	for _, o := range []Options{{}, {Authorizer: allow}, {Authenticator: authn}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): got no error", o)
		}
	}
	bad := new(interp.Exports).Func("x", "F", 42)
	if _, err := New(Options{Authenticator: authn, Authorizer: allow, Audit: audit.Discard, Exports: bad}); err == nil {
		t.Error("New with an invalid export: got no error")
	}
}

func TestCloseEndsSessions(t *testing.T) {
	before := runtime.NumGoroutine()
	f := newFixture(t, nil)
	var cs []*tconn
	for i := 0; i < 5; i++ {
		cs = append(cs, f.dial(t, "viewer"))
	}
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, c := range cs {
		if ce := c.closed(); ce.Code != websocket.CloseGoingAway {
			t.Fatalf("after Close: got %v; want close 1001", ce)
		}
	}
	// A new connection is refused.
	if got, _ := f.handshake(t, testTokens["viewer"]); got != http.StatusServiceUnavailable {
		t.Fatalf("dial after Close: got %d; want 503", got)
	}
	f.hs.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("goroutines: %d before, %d after Close", before, n)
	}
}

// TestMaxSessions: lower roles fill MaxSessions less the reserve; the
// reserve stays for whoever may use ReservedFor (admins), up to the
// limit.
func TestMaxSessions(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxSessions = 4; o.ReservedSessions = 2 })
	f.dial(t, "viewer")
	f.dial(t, "operator")
	if got, _ := f.handshake(t, testTokens["viewer"]); got != http.StatusServiceUnavailable {
		t.Fatalf("a third low-role session: got %d; want 503", got)
	}
	f.dial(t, "admin")
	f.dial(t, "admin")
	if got, _ := f.handshake(t, testTokens["admin"]); got != http.StatusServiceUnavailable {
		t.Fatalf("past MaxSessions: got %d; want 503", got)
	}
}

// TestNoGrantNoSession: a subject the policy grants nothing gets no
// session (403), and the refusal is audited.
func TestNoGrantNoSession(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Authenticator = AuthenticatorFunc(func(r *http.Request) (string, error) { return "nobody", nil })
	})
	if got, _ := f.handshake(t, "x"); got != http.StatusForbidden {
		t.Fatalf("a subject with no grant: got %d; want 403", got)
	}
	waitFor(t, "the refusal's audit record", func() bool { return strings.Contains(f.audit.String(), `"subject":"nobody"`) })
}

func TestQueueLimit(t *testing.T) {
	// A command that holds the worker until cancelled: one request runs,
	// one waits, so whatever the timing the fourth is refused. (An eval
	// would not do: one that fails fast, a busy machine's child refused,
	// frees the worker.)
	hold := Command{Name: "hold", Summary: "waits until cancelled", Run: func(ctx context.Context, _ *Request) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	f := newFixture(t, func(o *Options) { o.MaxQueued = 1; o.Commands = []Command{hold} })
	c := f.dial(t, "admin")
	first := c.send(wire.Request{Type: wire.TypeRun, Line: "hold"})
	c.send(wire.Request{Type: wire.TypeRun, Line: "1"})
	c.send(wire.Request{Type: wire.TypeRun, Line: "2"})
	third := c.send(wire.Request{Type: wire.TypeRun, Line: "3"})
	busy := false
	for _, ev := range func() []wire.Event { e, _ := c.read(third); return e }() {
		busy = busy || ev.Code == wire.CodeBusy
	}
	if !busy {
		t.Fatal("no busy error with a full queue")
	}
	c.send(wire.Request{Type: wire.TypeCancel, Target: first})
	if !strings.Contains(f.audit.String(), `"outcome":"busy"`) {
		t.Fatal("a request refused as busy was not audited")
	}
}

// TestIDReuse: an id is free again as soon as its final event arrives.
func TestIDReuse(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.RequestRate = Rate{PerSecond: 1e6, Burst: 1000} })
	c := f.dial(t, "viewer")
	for i := 0; i < 300; i++ {
		c.send(wire.Request{Type: wire.TypeRun, ID: 7, Line: "whoami"})
		evs, _ := c.read(7)
		if final := evs[len(evs)-1]; final.Type != wire.EventResult {
			t.Fatalf("round %d: reusing id 7 after its result: %+v", i, final)
		}
	}
}

// TestMemstatsNoStopTheWorld proves memstats reads runtime/metrics only:
// runtime.ReadMemStats would add stop-the-world pauses.
func TestMemstatsNoStopTheWorld(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dial(t, "viewer")
	pauses := func() uint64 {
		s := []metrics.Sample{{Name: "/sched/pauses/total/other:seconds"}}
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindFloat64Histogram {
			t.Skip("this Go has no /sched/pauses/total/other:seconds")
		}
		var n uint64
		for _, b := range s[0].Value.Float64Histogram().Counts {
			n += b
		}
		return n
	}
	before := pauses()
	for i := 0; i < 200; i++ {
		c.run("memstats")
	}
	if after := pauses(); after != before {
		t.Fatalf("200 memstats caused %d non-GC stop-the-world pauses; want 0", after-before)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms) // the control: this one does pause
	if pauses() == before {
		t.Skip("the pause metric does not count ReadMemStats on this Go; the test proves nothing here")
	}
}

func TestListenLoopbackDefault(t *testing.T) {
	tests := map[string]string{
		"":               DefaultAddr,
		":0":             "127.0.0.1:0",
		":7227":          "127.0.0.1:7227",
		"0.0.0.0:7227":   "0.0.0.0:7227",
		"[::1]:7227":     "[::1]:7227",
		"localhost:7227": "localhost:7227",
	}
	for in, want := range tests {
		if got := loopbackDefault(in); got != want {
			t.Errorf("loopbackDefault(%q): got %q; want %q", in, got, want)
		}
	}
	f := newFixture(t, nil)
	ctx, cancel := contextWithCancel()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- f.srv.ListenAndServe(ctx, ":0", func(a netAddr) { addrc <- a.String() })
	}()
	addr := <-addrc
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("ListenAndServe(\":0\") bound %s; want 127.0.0.1", addr)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
}

func TestAuditFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("audit file mode: got %v; want 0600", st.Mode().Perm())
	}
}

func TestVars(t *testing.T) {
	f := newFixture(t, nil)
	admin := f.dial(t, "admin")
	admin.run("answer := 42")
	_, out, _, _ := admin.run("vars")
	for _, want := range []string{"shop/cache (as cache)", "Len", "func() int", "strings", "answer", "int"} {
		if !strings.Contains(out, want) {
			t.Errorf("vars lacks %q:\n%s", want, out)
		}
	}
	viewer := f.dial(t, "viewer")
	if final, _, _, _ := viewer.run("vars"); final.Code != wire.CodeForbidden {
		t.Fatalf("vars as viewer: got %+v; want forbidden", final)
	}
}

// TestPackagesPerSubject: a subject's interpreter contains only the
// exported packages the policy lets it import.
func TestPackagesPerSubject(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		base := o.Authorizer
		o.Authorizer = AuthorizerFunc(func(sub, obj, act string) (bool, error) {
			if sub == "operator" && obj == "eval" && act == "run" {
				return true, nil // operator may eval; pkg:shop/cache stays denied
			}
			return base.Authorize(sub, obj, act)
		})
	})
	op := f.dial(t, "operator")
	if final, _, _, _ := op.run("cache.Len()"); final.Code != wire.CodeEval {
		t.Fatalf("operator reaching cache: got %+v; want eval error", final)
	}
	admin := f.dial(t, "admin")
	if final, _, _, _ := admin.run("cache.Len()"); final.Value != "42" {
		t.Fatalf("admin reaching cache: got %+v", final)
	}
}

func TestRecycle(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Interp.MaxEvals = 3 })
	c := f.dial(t, "admin")
	c.run("x := 1")
	c.run("x")
	c.run("x")
	final, _, _, evs := c.run("1+2")
	noticed := false
	for _, ev := range evs {
		noticed = noticed || (ev.Type == wire.EventNotice && strings.Contains(ev.Message, "recycled"))
	}
	if !noticed || final.Value != "3" {
		t.Fatalf("after MaxEvals: notice %v, final %+v", noticed, final)
	}
}

func TestMemoryLimit(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Interp.MaxHeapGrowth = 32 << 20 })
	c := f.dial(t, "admin")
	final, _, _, _ := c.run("var keep [][]byte; for { keep = append(keep, make([]byte, 1<<20)) }")
	// The make past the limit is refused as it happens (an eval error
	// that keeps the session's state), or the watchdog stops the eval.
	if (final.Code != wire.CodeLimit && final.Code != wire.CodeEval) || !strings.Contains(final.Message, "heap") {
		t.Fatalf("heap growth: got %+v; want a heap limit", final)
	}
	if final, _, _, _ := c.run("1+2"); final.Value != "3" {
		t.Fatalf("1+2 after the memory limit: %+v", final)
	}
}

// TestLazyInterpreter: sessions that never evaluate Go build no
// interpreter; completion and vars build one only for subjects that may.
func TestLazyInterpreter(t *testing.T) {
	f := newFixture(t, nil)
	viewer := f.dial(t, "viewer")
	admin := f.dial(t, "admin")
	viewer.run("memstats")
	admin.run("memstats")
	id := viewer.send(wire.Request{Type: wire.TypeComplete, Line: "strings.To"})
	viewer.read(id)
	built := func(subject string) bool {
		f.srv.mu.Lock()
		defer f.srv.mu.Unlock()
		for _, s := range f.srv.sessions {
			if s.subject == subject {
				return s.interp != nil
			}
		}
		t.Fatalf("no %s session", subject)
		return false
	}
	if built("viewer") || built("admin") {
		t.Fatal("an interpreter was built for a session that did not evaluate")
	}
	// An admin's Go completion names the packages' members, and starts no
	// interpreter (nor its process) either.
	id = admin.send(wire.Request{Type: wire.TypeComplete, Line: "cache.L"})
	evs, _ := admin.read(id)
	if items := evs[len(evs)-1].Items; !slices.Contains(items, "cache.Len") {
		t.Fatalf("completion of cache.L: %v", items)
	}
	if built("admin") {
		t.Fatal("a completion built an interpreter")
	}
	admin.run("1+2")
	if !built("admin") {
		t.Fatal("no interpreter after an eval")
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(noHookEnv) == "" { // TestEvalWithoutHook runs this binary without it
		sandbox.Main()
	}
	os.Exit(m.Run())
}

const noHookEnv = "OPSREPL_TEST_NO_SANDBOX_HOOK"

// TestEvalWithoutHook: in a program that does not call sandbox.Main (and
// did not opt in to in-process evaluation), commands work and every eval
// is refused with an error that says what to add; nothing is evaluated in
// the service.
func TestEvalWithoutHook(t *testing.T) {
	if os.Getenv(noHookEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEvalWithoutHook$", "-test.v")
		cmd.Env = append(os.Environ(), noHookEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestEvalWithoutHook") {
			t.Fatalf("without the hook: %v\n%s", err, out)
		}
		return
	}
	f := newFixture(t, nil)
	if !strings.Contains(f.logs.String(), "sandbox.Main") {
		t.Errorf("New logged nothing about Go evaluation being off:\n%s", f.logs.String())
	}
	c := f.dial(t, "admin")
	if final, _, _, _ := c.run("whoami"); final.Type != wire.EventResult {
		t.Fatalf("whoami: %+v", final)
	}
	for _, line := range []string{"1+2", "vars"} {
		final, _, _, _ := c.run(line)
		if final.Code != wire.CodeUnavailable || !strings.Contains(final.Message, "sandbox.Main()") || !strings.Contains(final.Message, "InProcessEval") {
			t.Errorf("%s: got %+v; want unavailable, saying to add sandbox.Main() or set InProcessEval", line, final)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCloseBoundedWithStalledReader: a client that stops reading while
// the server streams to it (its socket buffers full, a write blocked)
// holds Close no longer than the close grace, plus scheduling.
func TestCloseBoundedWithStalledReader(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Interp.MaxOutput = 256 << 20; o.MaxOutputBytes = 256 << 20 })
	c := f.dial(t, "admin")
	c.send(wire.Request{Type: wire.TypeRun, Line: `for { fmt.Print(strings.Repeat("x", 1<<20)) }`})
	time.Sleep(time.Second) // the writer fills the socket; the client reads nothing
	start := time.Now()
	f.srv.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %s with a client that stopped reading; want about %s", d, closeGrace)
	}
}

// TestShutdownFinalEvents: on server shutdown, the request under way and
// the ones waiting each get their final event before the close frame.
func TestShutdownFinalEvents(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dial(t, "admin")
	running := c.send(wire.Request{Type: wire.TypeRun, Line: "gcwatch"})
	waiting := c.send(wire.Request{Type: wire.TypeRun, Line: "whoami"})
	waitFor(t, "gcwatch running", func() bool {
		return strings.Contains(f.audit.String(), `"line":"gcwatch","object":"cmd:gcwatch","decision":"allow"`)
	})
	// The server reads frames in order and answers a completion at once:
	// once one sent after whoami is answered, whoami is waiting there (not
	// still in flight on the wire, where a shutdown would only close it).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.c.Complete(ctx, "who", -1); err != nil {
		t.Fatalf("complete: %v", err)
	}
	go f.srv.Close()
	all := map[uint64][]wire.Event{}
	for _, id := range []uint64{running, waiting} {
		all[id], _ = c.read(id)
	}
	if ce := c.closed(); ce.Code != websocket.CloseGoingAway {
		t.Errorf("then: %v; want close 1001", ce)
	}
	for _, id := range []uint64{running, waiting} {
		evs := all[id]
		if ev := evs[len(evs)-1]; ev.Type != wire.EventError || ev.Code != wire.CodeUnavailable {
			t.Errorf("request %d: final %+v; want unavailable\nits events: %+v\naudit:\n%s", id, ev, evs, f.audit.String())
		}
	}
}
