package console

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"

	"github.com/gorilla/websocket"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/policy"
)

// handshake dials with a bearer token and returns the HTTP status (101
// for a session, which it closes) and the refusal's Retry-After.
func (f *fixture) handshake(t *testing.T, token string) (int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, f.url, client.Options{Token: token, HandshakeRetries: -1})
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols, 0
	}
	var re *client.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("dial: %v", err)
	}
	return re.Status, re.RetryAfter
}

// TestHandshakeRatePerSubject: one subject's connection attempts are
// limited; another's, from the same address, are not.
func TestHandshakeRatePerSubject(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.HandshakeRate = Rate{PerSecond: 0.001, Burst: 3} })
	for i := 0; i < 3; i++ {
		if got, _ := f.handshake(t, testTokens["viewer"]); got != 101 {
			t.Fatalf("attempt %d: got %d; want 101 within the burst", i+1, got)
		}
	}
	got, retry := f.handshake(t, testTokens["viewer"])
	if got != http.StatusTooManyRequests || retry <= 0 {
		t.Fatalf("past the burst: got %d (Retry-After %s); want 429 with Retry-After", got, retry)
	}
	if got, _ := f.handshake(t, testTokens["admin"]); got != 101 {
		t.Fatalf("another subject from the same address: got %d; want 101", got)
	}
	// The accepted handshakes' sessions end as their connections close;
	// the refused one never had one.
	waitFor(t, "no session left", func() bool { return f.srv.sessionCount() == 0 })
	if !strings.Contains(f.audit.String(), `"outcome":"throttled"`) {
		t.Fatal("the throttled handshake is not audited")
	}
	if got, want := sourceKey("[2001:db8:1:2:3::4]:5555"), "2001:db8:1:2::/64"; got != want {
		t.Fatalf("IPv6 source: got %q; want %q", got, want)
	}
	if got, want := sourceKey("[::ffff:10.1.2.3]:80"), "10.1.2.3"; got != want {
		t.Fatalf("mapped IPv4 source: got %q; want %q", got, want)
	}
}

// TestFailedAuthThrottleSparesValidCredentials: bad tokens from a source
// are throttled; the same source's valid token is never refused by it.
func TestFailedAuthThrottleSparesValidCredentials(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.FailedAuthRate = Rate{PerSecond: 0.001, Burst: 3}
		o.HandshakeRate = Rate{PerSecond: 1000, Burst: 1000}
		o.RefusalInterval = time.Hour
	})
	var codes []int
	for i := 0; i < 30; i++ {
		got, _ := f.handshake(t, "bad-token-0123456789")
		codes = append(codes, got)
		if i == 10 {
			if got, _ := f.handshake(t, testTokens["admin"]); got != 101 {
				t.Fatalf("valid token amid the failures: got %d; want 101", got)
			}
		}
	}
	if codes[0] != 401 || codes[2] != 401 || codes[3] != 429 || codes[29] != 429 {
		t.Fatalf("statuses: got %v; want 401 ×3, then 429", codes)
	}
	// One audit record per source and code while the interval lasts.
	f.srv.refused.close()
	var n, count int64
	for _, r := range auditRecords(t, f.audit.String()) {
		if r.Kind == audit.KindHandshake {
			n++
			count += r.Count
		}
	}
	if n != 4 || count != 30 {
		t.Fatalf("handshake records: got %d standing for %d attempts; want 4 (first and rest, per code) for 30", n, count)
	}
}

func TestSessionsPerSubject(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxSessionsPerSubject = 2 })
	f.dial(t, "viewer")
	f.dial(t, "viewer")
	if got, _ := f.handshake(t, testTokens["viewer"]); got != http.StatusTooManyRequests {
		t.Fatalf("third viewer session: got %d; want 429", got)
	}
	f.dial(t, "admin") // another subject is not affected
}

func TestRequestRate(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.RequestRate = Rate{PerSecond: 0.001, Burst: 3} })
	c := f.dial(t, "viewer")
	var codes []wire.Code
	for i := 0; i < 5; i++ {
		final, _, _, _ := c.run("whoami")
		codes = append(codes, final.Code)
	}
	if codes[2] != "" || codes[3] != wire.CodeThrottled || codes[4] != wire.CodeThrottled {
		t.Fatalf("codes: got %q; want 3 results, then throttled", codes)
	}
	if !strings.Contains(f.audit.String(), `"outcome":"throttled"`) {
		t.Fatal("a throttled request is not audited")
	}
}

func TestIdleTimeout(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	c := f.dial(t, "viewer")
	busy := f.dial(t, "viewer")
	id := busy.send(wire.Request{Type: wire.TypeRun, Line: "gcwatch"}) // runs until cancelled
	if ce := c.closed(); ce.Code != websocket.CloseNormalClosure || !strings.Contains(ce.Reason, "idle") {
		t.Fatalf("idle session: got %v; want close 1000 idle timeout", ce)
	}
	// The session with a request running is still there.
	busy.send(wire.Request{Type: wire.TypeCancel, Target: id})
	if evs, _ := busy.read(id); evs[len(evs)-1].Code != wire.CodeCanceled {
		t.Fatalf("busy session: got %+v", evs[len(evs)-1])
	}
}

func TestOutputCap(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.MaxOutputBytes = 10000
		o.Commands = []Command{{Name: "chatty", Summary: "writes a lot", Run: func(ctx context.Context, r *Request) error {
			for i := 0; i < 1000; i++ {
				if _, err := fmt.Fprintf(r.Out, "line %04d of output\n", i); err != nil {
					return err
				}
			}
			return nil
		}}}
		o.Authorizer = AuthorizerFunc(func(sub, obj, act string) (bool, error) { return act == "run", nil })
	})
	c := f.dial(t, "viewer")
	final, out, _, _ := c.run("chatty")
	if final.Code != wire.CodeLimit || len(out) > 10000 {
		t.Fatalf("got %s %q after %d bytes; want limit within 10000", final.Code, final.Message, len(out))
	}
}

type failingWriter struct{ fail atomic.Bool }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.fail.Load() {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestIntentBeforeRun: the intent record is on disk before the command
// runs, and a request whose intent cannot be written does not run.
func TestIntentBeforeRun(t *testing.T) {
	buf := &syncBuffer{}
	var ran atomic.Int32
	var sawIntent atomic.Bool
	f := newFixture(t, func(o *Options) {
		o.Audit = audit.New(buf)
		o.Authorizer = AuthorizerFunc(func(sub, obj, act string) (bool, error) { return act == "run", nil })
		o.Commands = []Command{{Name: "touch", Summary: "counts its runs", Run: func(ctx context.Context, r *Request) error {
			ran.Add(1)
			sawIntent.Store(strings.Contains(buf.String(), `"kind":"intent"`) && strings.Contains(buf.String(), `"line":"touch now"`))
			return nil
		}}}
	})
	c := f.dial(t, "viewer")
	if final, _, _, _ := c.run("touch now"); final.Type != wire.EventResult || !sawIntent.Load() {
		t.Fatalf("got %+v, intent seen before the run: %v", final, sawIntent.Load())
	}

	fw := &failingWriter{}
	f2 := newFixture(t, func(o *Options) {
		o.Audit = audit.New(fw)
		o.Authorizer = AuthorizerFunc(func(sub, obj, act string) (bool, error) { return act == "run", nil })
		o.Commands = []Command{{Name: "touch", Summary: "counts its runs", Run: func(ctx context.Context, r *Request) error {
			ran.Add(1)
			return nil
		}}}
	})
	c2 := f2.dial(t, "viewer")
	fw.fail.Store(true)
	before := ran.Load()
	final, _, _, _ := c2.run("touch")
	if final.Code != wire.CodeInternal || !strings.Contains(final.Message, "audit") || ran.Load() != before {
		t.Fatalf("with the audit log failing: got %s %q, ran %d times; want internal and no run", final.Code, final.Message, ran.Load()-before)
	}
}

// TestAuditChainFromConsole: what a session leaves in the log verifies,
// and outcome records carry the output's size and hash.
func TestAuditChainFromConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.Audit = l })
	c := f.dial(t, "admin")
	_, out, _, _ := c.run("whoami")
	c.run("heapdump")
	c.drop()
	f.srv.Close()
	l.Close()
	rep, err := audit.Verify(audit.VerifyOptions{}, path)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", err, rep.Broken)
	}
	var found bool
	audit.Scan(path, func(r audit.Record) error {
		if r.Kind == audit.KindOutcome && r.Object == "cmd:whoami" {
			found = r.OutputBytes == int64(len(out)) && r.OutputSHA256 == sha256Hex([]byte(out))
		}
		return nil
	})
	if !found {
		t.Fatal("no outcome record for whoami with the size and SHA-256 of its output")
	}
}

func TestReasonRequired(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy +
			"g, viewer, role:viewer\ng, operator, role:operator\np, role:viewer, cmd:memstats, require-reason, allow\np, operator, cmd:memstats, require-reason, deny\n"})
		if err != nil {
			t.Fatal(err)
		}
		o.Authorizer = enf
	})
	v := f.dial(t, "viewer")
	final, _, _, _ := v.run("memstats")
	if final.Code != wire.CodeReasonRequired || !strings.Contains(final.Message, "reason TEXT") {
		t.Fatalf("memstats without a reason: got %s %q", final.Code, final.Message)
	}
	if final, _, _, _ := v.run("whoami"); final.Type != wire.EventResult {
		t.Fatalf("whoami needs no reason: got %+v", final)
	}
	tests := []struct{ line, code string }{
		{"reason \x1b[2J", string(wire.CodeBadRequest)},
		{"reason " + strings.Repeat("x", 1001), string(wire.CodeBadRequest)},
		{"reason INC-7 heap growth", ""},
	}
	for _, tt := range tests {
		if final, _, _, _ := v.run(tt.line); string(final.Code) != tt.code {
			t.Fatalf("%.30q: got %s %q; want %q", tt.line, final.Code, final.Message, tt.code)
		}
	}
	if final, _, _, _ := v.run("memstats"); final.Type != wire.EventResult {
		t.Fatalf("memstats after a reason: got %+v", final)
	}
	// A deny on require-reason exempts (operator inherits the viewer rule).
	if final, _, _, _ := f.dial(t, "operator").run("memstats"); final.Type != wire.EventResult {
		t.Fatalf("exempt operator: got %+v", final)
	}
	var intents []audit.Record
	for _, r := range auditRecords(t, f.audit.String()) {
		if r.Kind == audit.KindIntent && r.Line == "memstats" && r.Subject == "viewer" {
			intents = append(intents, r)
		}
	}
	if len(intents) != 2 || intents[0].Decision != "deny" || intents[1].Reason != "INC-7 heap growth" {
		t.Fatalf("intents: got %+v; want a deny without reason, then an allow with it", intents)
	}
}

func TestTranscript(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, func(o *Options) { o.TranscriptDir = dir })
	c := f.dial(t, "viewer")
	_, out, _, _ := c.run("whoami")
	c.run("heapdump")
	c.drop()
	f.srv.Close()
	path := filepath.Join(dir, c.hello.Session+".cast")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v; want 0600", st.Mode().Perm())
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var h castHeader
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil || h.Version != 2 {
		t.Fatalf("header %q: %v", lines[0], err)
	}
	var shown strings.Builder
	last := -1.0
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 || ev[1] != "o" {
			t.Fatalf("event %q: %v", l, err)
		}
		if ts := ev[0].(float64); ts < last {
			t.Fatalf("time goes back at %q", l)
		} else {
			last = ts
		}
		shown.WriteString(ev[2].(string))
	}
	want := strings.ReplaceAll(out, "\n", "\r\n")
	for _, s := range []string{"viewer> whoami\r\n", want, "viewer> heapdump\r\n", "error: forbidden"} {
		if !strings.Contains(shown.String(), s) {
			t.Fatalf("transcript lacks %q:\n%s", s, shown.String())
		}
	}
	if !strings.Contains(f.audit.String(), `"transcript":"`+path+`"`) {
		t.Fatal("the session's audit records do not name its transcript")
	}
}

// TestGoroutinesBackToBaseline: sessions, refused handshakes and their
// timers leave no goroutine behind once closed.
func TestGoroutinesBackToBaseline(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.RefusalInterval = 50 * time.Millisecond
		o.HandshakeRate = Rate{PerSecond: 100, Burst: 100}
	})
	f.dial(t, "viewer").drop()  // warm up the HTTP server's goroutines
	admin := f.dial(t, "admin") // and the pool of interpreter processes
	admin.run("1+2")
	admin.drop()
	waitFor(t, "a spare interpreter process", func() bool {
		st := f.srv.pool.Stats()
		return st.Ready == 1 && st.Starting == 0 && st.Live == 1 && f.srv.sessionCount() == 0
	})
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	var clients []*tconn
	for i := 0; i < 20; i++ {
		c := f.dial(t, []string{"viewer", "operator", "admin"}[i%3])
		c.run("whoami")
		clients = append(clients, c)
	}
	for i := 0; i < 30; i++ {
		f.handshake(t, "bad-token-0123456789")
	}
	if n := f.srv.sessionCount(); n != 20 {
		t.Fatalf("got %d sessions; want 20 (refused attempts hold none)", n)
	}
	for _, c := range clients {
		c.drop()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base && f.srv.sessionCount() == 0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: got %d; want ≤ %d (sessions %d)\n%s", n, base, f.srv.sessionCount(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.srv.mu.Lock()
	left := len(f.srv.bySubject)
	f.srv.mu.Unlock()
	if left != 0 {
		t.Fatalf("per-subject counts left: %d", left)
	}
}

// testPKI is a CA with certificates issued by it.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: key, pool: pool}
}

func (p *testPKI) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	return p.issueFull(t, cn, usage, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// issueAt issues a client certificate valid from notBefore to notAfter.
func (p *testPKI) issueAt(t *testing.T, cn string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	return p.issueFull(t, cn, x509.ExtKeyUsageClientAuth, notBefore, notAfter)
}

func (p *testPKI) issueFull(t *testing.T, cn string, usage x509.ExtKeyUsage, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestMutualTLS(t *testing.T) {
	pki, other := newPKI(t), newPKI(t)
	serverCert := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pki.pool}

	for _, withTokens := range []bool{true, false} {
		f := newFixture(t, func(o *Options) {
			o.TLS = srvTLS
			if !withTokens {
				o.Authenticator = nil
			}
		})
		f.hs.Close()
		ctx, cancel := context.WithCancel(context.Background())
		addrc := make(chan net.Addr, 1)
		errc := make(chan error, 1)
		go func() { errc <- f.srv.ListenAndServe(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a }) }()
		url := "wss://" + (<-addrc).String() + "/"

		tests := []struct {
			name    string
			cert    *tls.Certificate
			token   string
			subject string // "" : refused with a 401 whose body says reason
			reason  string
		}{
			{name: "certificate", cert: ptr(pki.issue(t, "admin", x509.ExtKeyUsageClientAuth)), subject: "admin"},
			{name: "certificate and token together", cert: ptr(pki.issue(t, "viewer", x509.ExtKeyUsageClientAuth)), token: testTokens["admin"], reason: "both a client certificate and a bearer token"},
			{name: "token only", token: testTokens["operator"], subject: map[bool]string{true: "operator"}[withTokens]},
			{name: "other CA", cert: ptr(other.issue(t, "admin", x509.ExtKeyUsageClientAuth)), reason: "unknown authority"},
			{name: "server-auth certificate", cert: ptr(pki.issue(t, "admin", x509.ExtKeyUsageServerAuth)), reason: "not issued for client authentication"},
			{name: "expired", cert: ptr(pki.issueAt(t, "admin", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))), reason: "expired"},
			{name: "not yet valid", cert: ptr(pki.issueAt(t, "admin", time.Now().Add(time.Hour), time.Now().Add(2*time.Hour))), reason: "not valid yet"},
			{name: "role as common name", cert: ptr(pki.issue(t, "role:admin", x509.ExtKeyUsageClientAuth)), reason: "cannot name a subject"},
			{name: "empty common name", cert: ptr(pki.issue(t, "", x509.ExtKeyUsageClientAuth)), reason: "Common Name"},
			{name: "nothing", reason: map[bool]string{true: "credentials", false: "present a client certificate"}[withTokens]},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("tokens=%v/%s", withTokens, tt.name), func(t *testing.T) {
				conf := &tls.Config{RootCAs: pki.pool}
				if tt.cert != nil {
					conf.Certificates = []tls.Certificate{*tt.cert}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				c, err := client.Dial(ctx, url, client.Options{Token: tt.token, TLS: conf, HandshakeRetries: -1})
				if tt.subject == "" {
					if err == nil {
						c.Close()
						t.Fatal("got a session; want a refusal")
					}
					// The console, not the TLS layer, refuses: an HTTP 401
					// that says why.
					var re *client.RefusedError
					if !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
						t.Fatalf("got %v; want an HTTP 401", err)
					}
					if !strings.Contains(re.Message, tt.reason) {
						t.Fatalf("401 message %q; want it to say %q", re.Message, tt.reason)
					}
					return
				}
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				if got := c.Hello().Subject; got != tt.subject {
					t.Fatalf("subject: got %q; want %q", got, tt.subject)
				}
			})
		}
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	// Mounted on the application's own TLS server, whose pool trusts
	// another CA too: only certificates from the console's ClientCAs count.
	both := x509.NewCertPool()
	both.AddCert(pki.ca)
	both.AddCert(other.ca)
	f := newFixture(t, func(o *Options) { o.TLS = &tls.Config{ClientCAs: pki.pool} })
	hs := httptest.NewUnstartedServer(f.srv)
	hs.TLS = &tls.Config{ClientCAs: both, ClientAuth: tls.VerifyClientCertIfGiven}
	hs.StartTLS()
	defer hs.Close()
	conf := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{other.issue(t, "admin", x509.ExtKeyUsageClientAuth)}}
	if st := tlsStatus(t, "wss"+strings.TrimPrefix(hs.URL, "https"), "", conf); st != 401 {
		t.Fatalf("a certificate from the app's other CA: got %d; want 401", st)
	}
}

func ptr[T any](v T) *T { return &v }

// tlsStatus dials url over TLS and returns the HTTP status of the answer
// (101 for a session, which it closes), or 0 when there was none (the TLS
// handshake failed).
func tlsStatus(t *testing.T, url, token string, conf *tls.Config) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{Token: token, TLS: conf, HandshakeRetries: -1})
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols
	}
	var re *client.RefusedError
	if errors.As(err, &re) {
		return re.Status
	}
	return 0
}

// TestShippedReasonLines: the require-reason lines shipped commented out in
// policy.csv are valid and do what they say once uncommented.
func TestShippedReasonLines(t *testing.T) {
	var text strings.Builder
	n := 0
	for _, line := range strings.Split(opsrepl.DefaultPolicy, "\n") {
		if rest, ok := strings.CutPrefix(line, "# p, "); ok && strings.Contains(rest, "require-reason") {
			line, n = "p, "+rest, n+1
		}
		text.WriteString(line + "\n")
	}
	if n != 2 {
		t.Fatalf("found %d commented require-reason lines in policy.csv; want 2 (eval, cmd:heapdump-full)", n)
	}
	enf, err := policy.New(policy.Options{PolicyText: text.String() + "g, admin, role:admin\n"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.Authorizer = enf })
	c := f.dial(t, "admin")
	if final, _, _, _ := c.run("1+2"); final.Code != wire.CodeReasonRequired {
		t.Fatalf("eval without a reason: got %+v", final)
	}
	if final, _, _, _ := c.run("heapdump --full --yes"); final.Code != wire.CodeReasonRequired {
		t.Fatalf("heapdump --full without a reason: got %+v", final)
	}
	if final, _, _, _ := c.run("memstats"); final.Type != wire.EventResult {
		t.Fatalf("memstats needs no reason: got %+v", final)
	}
	c.run("reason checking the cache")
	if final, _, _, _ := c.run("1+2"); final.Value != "3" {
		t.Fatalf("eval with a reason: got %+v", final)
	}
}

func TestRefusedLinesClippedAndThrottledAggregated(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.RequestRate = Rate{PerSecond: 0.001, Burst: 3} })
	c := f.dial(t, "viewer")
	huge := strings.Repeat("<", 100<<10)
	if final, _, _, _ := c.run(huge); final.Code != wire.CodeBadRequest && final.Code != wire.CodeForbidden {
		t.Fatalf("huge line: got %+v", final)
	}
	for i := 0; i < 9; i++ {
		c.run("whoami") // 2 run, 7 throttled
	}
	c.drop()
	f.srv.Close()
	var clipped bool
	var throttledRecords, counted int64
	for _, r := range auditRecords(t, f.audit.String()) {
		if len(r.Line) > 5000 {
			t.Fatalf("a refused line of %d bytes is in the log whole", len(r.Line))
		}
		if strings.HasPrefix(r.Line, "<<<") && len(r.Line) <= clipKeep && r.LineBytes == 102400 && r.LineSHA256 == sha256Hex([]byte(huge)) {
			clipped = true
		}
		if r.Outcome == string(wire.CodeThrottled) && r.Kind == audit.KindOutcome {
			throttledRecords++
			counted += max(r.Count, 1)
		}
	}
	if !clipped {
		t.Fatal("the huge denied line is not recorded as its start, length and hash")
	}
	if throttledRecords != 2 || counted != 7 {
		t.Fatalf("throttled: %d outcome records standing for %d requests; want 2 for 7", throttledRecords, counted)
	}
}

func TestPackageGrantRevokedMidSession(t *testing.T) {
	var revoked atomic.Bool
	f := newFixture(t, func(o *Options) {
		base := o.Authorizer
		o.Authorizer = AuthorizerFunc(func(sub, obj, act string) (bool, error) {
			if obj == "pkg:shop/cache" && revoked.Load() {
				return false, nil
			}
			return base.Authorize(sub, obj, act)
		})
	})
	c := f.dial(t, "admin")
	if final, _, _, _ := c.run("cache.Len()"); final.Value != "42" {
		t.Fatalf("before: %+v", final)
	}
	revoked.Store(true)
	final, _, _, all := c.run("cache.Len()")
	if final.Type != wire.EventError {
		t.Fatalf("after the grant was taken away: got %+v; want an error", final)
	}
	if !strings.Contains(fmt.Sprint(all), "policy reload") {
		t.Fatalf("no notice that the interpreter was rebuilt: %+v", all)
	}
}

func TestCertificateWithTwoCommonNames(t *testing.T) {
	pki := newPKI(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7),
		Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: oidCommonName, Value: "viewer"}, {Type: oidCommonName, Value: "admin"}}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.ca, &key.PublicKey, pki.caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if sub, err := certSubject([]*x509.Certificate{cert}, pki.pool); err == nil {
		t.Fatalf("two Common Names: got subject %q; want a refusal", sub)
	}
}

// TestCompleteWhileEvalRuns: a completion during a running evaluation is
// answered at once and never touches the interpreter the eval is using.
func TestCompleteWhileEvalRuns(t *testing.T) {
	f := newFixture(t, nil)
	c := f.dial(t, "admin")
	c.run("x := 1")
	id := c.send(wire.Request{Type: wire.TypeRun, Line: "for i := 0; i < 1e15; i++ { x++ }"})
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cid := c.send(wire.Request{Type: wire.TypeComplete, Line: "str"})
	evs, _ := c.read(cid)
	if last := evs[len(evs)-1]; last.Type != wire.EventCompletions || time.Since(start) > 2*time.Second {
		t.Fatalf("completion during an eval: got %+v after %s", last, time.Since(start))
	}
	// What the packages offer is known without the interpreter.
	if items := evs[len(evs)-1].Items; !slices.Contains(items, "strings") {
		t.Fatalf("completion of str during an eval: %v; want the package names", items)
	}
	c.send(wire.Request{Type: wire.TypeCancel, Target: id})
	if evs, _ := c.read(id); evs[len(evs)-1].Code != wire.CodeCanceled {
		t.Fatalf("eval: got %+v", evs[len(evs)-1])
	}
}

// TestFullSourceTableEvicts: with the table full, a new source gets its own
// fresh bucket (one old bucket is forgotten), never a shared one another
// source has drained.
func TestFullSourceTableEvicts(t *testing.T) {
	l := newSourceLimiter(Rate{PerSecond: 0.001, Burst: 1})
	for i := 0; i < maxSources; i++ {
		l.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.allow(fmt.Sprintf("192.0.2.%d", i)); !ok {
			t.Fatalf("new source %d with the table full: refused", i)
		}
	}
	if len(l.m) > maxSources {
		t.Fatalf("table grew to %d; bound %d", len(l.m), maxSources)
	}
}

// TestRefusalsAfterClose: once the server is closed no timer would write
// an aggregation window, so each refusal is written as it comes.
func TestRefusalsAfterClose(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.RefusalInterval = time.Hour })
	f.srv.Close()
	for i := 0; i < 3; i++ {
		f.handshake(t, testTokens["viewer"])
	}
	if n := strings.Count(f.audit.String(), `"outcome":"unavailable"`); n != 3 {
		t.Fatalf("refusals after Close: %d records; want 3", n)
	}
}

// TestTranscriptWriteFailure: a recording that breaks mid-session is
// logged and audited, not lost silently.
func TestTranscriptWriteFailure(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, func(o *Options) { o.TranscriptDir = dir })
	c := f.dial(t, "viewer")
	f.srv.mu.Lock()
	for _, s := range f.srv.sessions {
		s.cast.f.Close() // the next write fails
	}
	f.srv.mu.Unlock()
	c.run("whoami")
	if !strings.Contains(f.audit.String(), "the session recording stopped") || !strings.Contains(f.logs.String(), "session recording stopped") {
		t.Fatalf("a broken recording is not audited and logged:\n%s", f.audit.String())
	}
}

// TestTLSRefusalsAreTheConsoles: on the console's own listener, a flood of
// certificates from another CA (presenting an admin's name) gets 401s that
// say why, then 429s; the refusals are audited, aggregated; failed TLS
// handshakes (an old protocol version, CBC suites) are logged through the
// console's logger, never the process's default one. LegacyTLS lowers
// the floor.
func TestTLSRefusalsAreTheConsoles(t *testing.T) {
	var stdlog lockedBuffer
	log.SetOutput(&stdlog)
	defer log.SetOutput(os.Stderr)

	pki, other := newPKI(t), newPKI(t)
	serverCert := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
	serve := func(t *testing.T, legacy bool) (*fixture, string) {
		f := newFixture(t, func(o *Options) {
			o.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pki.pool, MinVersion: tls.VersionTLS10,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
			o.LegacyTLS = legacy
			o.RefusalInterval = time.Hour
		})
		f.hs.Close()
		ctx, cancel := context.WithCancel(context.Background())
		addrc := make(chan net.Addr, 1)
		done := make(chan struct{})
		go func() { f.srv.ListenAndServe(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a }); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return f, "wss://" + (<-addrc).String() + "/"
	}

	f, url := serve(t, false)
	impostor := other.issue(t, "admin", x509.ExtKeyUsageClientAuth)
	impostorTLS := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{impostor}}
	codes := map[int]int{}
	for i := 0; i < 30; i++ {
		st := tlsStatus(t, url, "", impostorTLS)
		if st == 101 {
			t.Fatal("an impostor's certificate got a session")
		}
		if st == 0 {
			t.Fatalf("attempt %d: want an HTTP refusal", i+1)
		}
		codes[st]++
	}
	if codes[http.StatusUnauthorized] == 0 || codes[http.StatusTooManyRequests] == 0 {
		t.Fatalf("status codes %v; want 401s, then 429s", codes)
	}
	f.srv.refused.close() // write the aggregated records now
	var refused, counted int64
	for _, r := range auditRecords(t, f.audit.String()) {
		if r.Kind == audit.KindHandshake {
			refused++
			counted += max(r.Count, 1)
		}
	}
	if counted != 30 || refused >= 30 {
		t.Fatalf("audit: %d handshake records standing for %d attempts; want 30 attempts, aggregated", refused, counted)
	}

	for _, tt := range []struct {
		name   string
		client *tls.Config
	}{
		{"TLS 1.1", &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}},
		{"CBC suite", &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := testTokens["admin"]
			if st := tlsStatus(t, url, tok, tt.client); st != 0 {
				t.Fatalf("connected below the floor: HTTP %d", st)
			}
			_, legacyURL := serve(t, true)
			if st := tlsStatus(t, legacyURL, tok, tt.client); st != 101 {
				t.Fatalf("with LegacyTLS: HTTP %d; want a session", st)
			}
		})
	}
	waitFor(t, "the failed handshakes in the console's log", func() bool { return strings.Contains(f.logs.String(), "TLS handshake error") })
	if stdlog.String() != "" {
		t.Fatalf("the process's default logger got: %s", stdlog.String())
	}
}

// TestEveryRefusalAudited: frames refused before they could run (a line
// over the limit, malformed JSON with a readable id, a binary frame) are
// audited, clipped, and a refused or denied line is clipped in the
// transcript too.
func TestEveryRefusalAudited(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, func(o *Options) { o.TranscriptDir = dir })
	c := f.raw(t, "viewer")
	big := strings.Repeat("y", 600<<10)
	frames := []struct {
		typ  int
		data string
	}{
		{websocket.TextMessage, `{"type":"run","id":1,"line":"` + big + `"}`},
		{websocket.TextMessage, `{"type":"run","id":2,"line":"whoami","extra":true}`},
		{websocket.BinaryMessage, "\x00\x01"},
		{websocket.TextMessage, `{"type":"run","id":3,"line":"heapdump ` + strings.Repeat("z", 300<<10) + `"}`}, // denied
	}
	for _, fr := range frames {
		if err := c.ws.WriteMessage(fr.typ, []byte(fr.data)); err != nil {
			t.Fatal(err)
		}
		c.event()
	}
	c.drop()
	waitFor(t, "four refusals in the audit", func() bool {
		n := 0
		for _, r := range auditRecords(t, f.audit.String()) {
			if r.Kind == audit.KindOutcome && r.Outcome != "ok" {
				n++
			}
		}
		return n >= 4
	})
	for _, r := range auditRecords(t, f.audit.String()) {
		if len(r.Line) > clipKeep+100 {
			t.Fatalf("a refused line of %d bytes is in the audit whole", len(r.Line))
		}
	}
	waitFor(t, "the session's end", func() bool { return f.srv.sessionCount() == 0 })
	casts, _ := filepath.Glob(filepath.Join(dir, "*.cast"))
	for _, p := range casts {
		if st, _ := os.Stat(p); st.Size() > 64<<10 {
			t.Fatalf("transcript %s is %d bytes: refused lines were recorded whole", p, st.Size())
		}
	}
}

// TestTranscriptBudgets: past a subject's transcript budget, or into the
// disk space kept for the audit log, recording stops with a note in the
// file and an audit record; the session goes on, and other subjects'
// recordings are not touched by one subject's budget.
func TestTranscriptBudgets(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Options)
		why  string
	}{
		{"subject budget", func(o *Options) { o.MaxTranscriptBytesPerSubject = 8 << 10 }, "budget"},
		{"disk reserve", func(o *Options) { o.DiskReserve = 1 << 62 }, "kept for the audit log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := newFixture(t, func(o *Options) { o.TranscriptDir = dir; tt.mod(o) })
			c := f.dial(t, "viewer")
			for i := 0; i < 5; i++ {
				if final, _, _, _ := c.run("goroutines"); final.Type != wire.EventResult {
					t.Fatalf("the session after its recording stopped: %+v", final)
				}
			}
			waitFor(t, "an audit record of the stop", func() bool {
				return strings.Contains(f.audit.String(), "the session recording stopped") && strings.Contains(f.audit.String(), tt.why)
			})
			casts, _ := filepath.Glob(filepath.Join(dir, "*.cast"))
			b, _ := os.ReadFile(casts[0])
			if !strings.Contains(string(b), "transcript stopped") || len(b) > 12<<10 {
				t.Fatalf("transcript of %d bytes, note %v", len(b), strings.Contains(string(b), "transcript stopped"))
			}
		})
	}
}

// TestRevokedTokenEndsSessions: when the token file loses a subject's
// token, its open sessions end with a notice and status 1008, audited;
// other subjects' sessions stay.
func TestRevokedTokenEndsSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	var lines string
	for _, sub := range []string{"viewer", "admin"} {
		lines += sub + " " + tokenHash(testTokens[sub]) + "\n"
	}
	os.WriteFile(path, []byte(lines), 0o600)
	tokens, err := auth.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) { o.Authenticator = tokens })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tokens.Watch(ctx, auth.WatchOptions{Interval: 10 * time.Millisecond, Quiet: 50 * time.Millisecond})
	viewer, admin := f.dial(t, "viewer"), f.dial(t, "admin")

	os.WriteFile(path, []byte("admin "+tokenHash(testTokens["admin"])+"\n"), 0o600)
	ce := viewer.closed()
	notice := false
	for len(viewer.notices) > 0 {
		ev := <-viewer.notices
		notice = notice || ev.Type == wire.EventNotice && strings.Contains(ev.Message, "revoked")
	}
	if ce.Code != websocket.ClosePolicyViolation || !notice {
		t.Fatalf("the revoked subject's session: %v (notice %v); want a notice, then status 1008", ce, notice)
	}
	if final, _, _, _ := admin.run("whoami"); final.Type != wire.EventResult {
		t.Fatalf("another subject's session: %+v", final)
	}
	waitFor(t, "the revocation's audit record", func() bool { return strings.Contains(f.audit.String(), `"outcome":"revoked"`) })
}

// tokenHash is a token as a token file stores it: its hex SHA-256.
func tokenHash(token string) string { return sha256Hex([]byte(token)) }

// TestCrossOriginCostsNothing: another site's attempts, with valid
// credentials (a browser sends a client certificate by itself), are
// refused before they are authenticated, so they never use up the
// subject's attempts.
func TestCrossOriginCostsNothing(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.HandshakeRate = Rate{PerSecond: 0.001, Burst: 3} })
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := client.Dial(ctx, f.url, client.Options{Token: testTokens["viewer"], HandshakeRetries: -1,
			Header: http.Header{"Origin": {"http://evil.example"}}})
		cancel()
		var re *client.RefusedError
		if !errors.As(err, &re) || re.Status != http.StatusForbidden {
			t.Fatalf("cross-origin attempt %d: %v; want 403", i+1, err)
		}
	}
	if got, _ := f.handshake(t, testTokens["viewer"]); got != http.StatusSwitchingProtocols {
		t.Fatalf("the subject's own attempt after another site's: got %d; want 101", got)
	}
}
