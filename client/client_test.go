package client_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/policy"
	"github.com/opsrepl/opsrepl/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.Main()
	os.Exit(m.Run())
}

var tokens = map[string]string{
	"viewer":   "viewer-token-0123456789abcdef0123456789",
	"operator": "operator-token-0123456789abcdef012345678",
	"admin":    "admin-token-0123456789abcdef0123456789ab",
}

// newConsole serves a real console; it returns its URL.
func newConsole(t *testing.T) string {
	t.Helper()
	toks, err := auth.NewTokens(tokens)
	if err != nil {
		t.Fatal(err)
	}
	enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy +
		"g, viewer, role:viewer\ng, operator, role:operator\ng, admin, role:admin\n"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := console.New(console.Options{
		Authenticator: toks,
		Authorizer:    enf,
		Audit:         audit.Discard,
		Exports:       new(interp.Exports).Func("shop/cache", "Len", func() int { return 42 }),
		Interp:        interp.Options{Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

func dial(t *testing.T, url, subject string) *client.Conn {
	t.Helper()
	c, err := client.Dial(context.Background(), url, client.Options{Token: tokens[subject]})
	if err != nil {
		t.Fatalf("dial as %s: %v", subject, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// output collects a request's text output.
func output(b *strings.Builder) client.Handler {
	return client.Handler{Event: func(ev wire.Event) error {
		b.WriteString(ev.Data)
		return nil
	}}
}

func TestRun(t *testing.T) {
	url := newConsole(t)
	tests := []struct {
		subject, line string
		typ           string    // the final event's type
		code          wire.Code // for an error
		value, out    string
		incomplete    bool
	}{
		{subject: "viewer", line: "whoami", typ: wire.EventResult, out: "viewer"},
		{subject: "viewer", line: "heapdump", typ: wire.EventError, code: wire.CodeForbidden},
		{subject: "viewer", line: "nosuchcommand --x", typ: wire.EventError, code: wire.CodeForbidden},
		{subject: "admin", line: "cache.Len() + 1", typ: wire.EventResult, value: "43"},
		{subject: "admin", line: "for {", typ: wire.EventIncomplete, incomplete: true},
		{subject: "admin", line: "undefinedThing", typ: wire.EventError, code: wire.CodeEval},
	}
	for _, tt := range tests {
		t.Run(tt.subject+" "+tt.line, func(t *testing.T) {
			c := dial(t, url, tt.subject)
			var out strings.Builder
			final, err := c.Run(context.Background(), tt.line, output(&out))
			if final.Type != tt.typ {
				t.Fatalf("final %+v (err %v); want %s", final, err, tt.typ)
			}
			var we *wire.Error
			switch {
			case tt.code != "":
				if !errors.As(err, &we) || we.Code != tt.code {
					t.Fatalf("err %v; want a *wire.Error %s", err, tt.code)
				}
			case tt.incomplete:
				if !errors.Is(err, client.ErrIncomplete) {
					t.Fatalf("err %v; want ErrIncomplete", err)
				}
			case err != nil:
				t.Fatal(err)
			}
			if final.Value != tt.value || !strings.Contains(out.String(), tt.out) {
				t.Fatalf("value %q, output %q; want %q and %q", final.Value, out.String(), tt.value, tt.out)
			}
		})
	}
}

// TestSendStream reads a request's events with Next, concurrently with
// other requests on the same connection.
func TestSendStream(t *testing.T) {
	c := dial(t, newConsole(t), "viewer")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Send(wire.Request{Type: wire.TypeRun, Line: "whoami"}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			var types []string
			for {
				ev, err := r.Next(context.Background())
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Error(err)
					return
				}
				if ev.ID != r.ID {
					t.Errorf("event for id %d in the stream of %d", ev.ID, r.ID)
				}
				types = append(types, ev.Type)
			}
			if len(types) == 0 || types[len(types)-1] != wire.EventResult {
				t.Errorf("events %v; want them to end with result", types)
			}
		}()
	}
	wg.Wait()
	got, err := c.Complete(context.Background(), "mem", -1)
	if err != nil || got.Type != wire.EventCompletions || len(got.Items) == 0 || got.Items[0] != "memstats" {
		t.Fatalf("complete: %+v, %v", got, err)
	}
}

func TestHeapdumpSaved(t *testing.T) {
	c := dial(t, newConsole(t), "operator")
	dir := filepath.Join(t.TempDir(), "downloads")
	var saved []*client.File
	final, err := c.Run(context.Background(), "heapdump", client.Handler{File: client.Save(dir, func(f *client.File) { saved = append(saved, f) })})
	if err != nil || final.Type != wire.EventResult {
		t.Fatalf("heapdump: %+v, %v", final, err)
	}
	if len(saved) != 1 {
		t.Fatalf("saved %d files; want 1", len(saved))
	}
	st, err := os.Stat(saved[0].Path())
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != saved[0].Size() {
		t.Fatalf("saved file: %v, %v (size want %d)", st, err, saved[0].Size())
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o700 {
		t.Fatalf("download folder mode %v; want 0700", d.Mode().Perm())
	}
	f, _ := os.Open(saved[0].Path())
	defer f.Close()
	if _, err := gzip.NewReader(f); err != nil {
		t.Fatalf("not a gzip profile: %v", err)
	}
	// A second one gets a new name instead of replacing the first.
	if _, err := c.Run(context.Background(), "heapdump", client.Handler{File: client.Save(dir, func(f *client.File) { saved = append(saved, f) })}); err != nil {
		t.Fatal(err)
	}
	if len(saved) != 2 || saved[0].Path() == saved[1].Path() {
		t.Fatalf("second heapdump: %v", saved)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".ops-repl-*")); len(left) != 0 {
		t.Fatalf("partial files left: %v", left)
	}
}

// fake serves a scripted server: it sends hello, then script talks.
func fake(t *testing.T, script func(ws *websocket.Conn)) string {
	t.Helper()
	return fakeHello(t, wire.Event{Type: wire.EventHello, Session: "5e55", Subject: "tester", Roles: []string{"role:viewer"}, Server: wire.Subprotocol}, script)
}

func fakeHello(t *testing.T, hello wire.Event, script func(ws *websocket.Conn)) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{wire.Subprotocol}}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.WriteJSON(hello)
		script(ws)
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

func readReq(ws *websocket.Conn) wire.Request {
	var req wire.Request
	ws.ReadJSON(&req)
	return req
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// TestFileChecks: a transfer that lies leaves nothing behind and fails the
// request; a protocol violation ends the connection.
func TestFileChecks(t *testing.T) {
	data := []byte("profile bytes")
	good := wire.Event{Type: wire.EventFile, Name: "heap-x.pb.gz", Size: int64(len(data)), SHA256: sum(data)}
	tests := []struct {
		name     string
		file     wire.Event
		chunks   [][]byte
		noEnd    bool // the result comes without file_end
		protocol bool // the connection ends with ErrProtocol
		says     string
	}{
		{name: "result before file_end", file: good, chunks: [][]byte{data[:4]}, noEnd: true, says: "ended before the file was complete"},
		{name: "larger than the free space", file: func() wire.Event { e := good; e.Size = 1 << 60; return e }(), says: "free"},
		{name: "bad checksum", file: func() wire.Event { e := good; e.SHA256 = strings.Repeat("0", 64); return e }(), chunks: [][]byte{data}},
		{name: "short", file: func() wire.Event { e := good; e.Size = 100; return e }(), chunks: [][]byte{data}},
		{name: "hostile name", file: func() wire.Event { e := good; e.Name = "../../x"; return e }(), chunks: [][]byte{data}},
		{name: "hidden name", file: func() wire.Event { e := good; e.Name = ".bashrc"; return e }(), chunks: [][]byte{data}},
		{name: "too long", file: func() wire.Event { e := good; e.Size = 3; return e }(), chunks: [][]byte{data}, protocol: true},
		{name: "no checksum", file: func() wire.Event { e := good; e.SHA256 = ""; return e }(), protocol: true},
		{name: "chunk outside a transfer", protocol: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fake(t, func(ws *websocket.Conn) {
				req := readReq(ws)
				if tt.file.Type != "" {
					ev := tt.file
					ev.ID = req.ID
					ws.WriteJSON(ev)
				}
				for _, c := range tt.chunks {
					ws.WriteMessage(websocket.BinaryMessage, c)
				}
				if tt.file.Type == "" {
					ws.WriteMessage(websocket.BinaryMessage, data)
				}
				if !tt.noEnd {
					ws.WriteJSON(wire.Event{Type: wire.EventFileEnd, ID: req.ID, Name: tt.file.Name})
				}
				ws.WriteJSON(wire.Event{Type: wire.EventResult, ID: req.ID})
				ws.ReadMessage() // until the client goes
			})
			c, err := client.Dial(context.Background(), url, client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			dir := t.TempDir()
			_, err = c.Run(context.Background(), "heapdump", client.Handler{File: client.Save(dir, nil)})
			var fe *client.FileError
			switch {
			case tt.protocol && !errors.Is(err, client.ErrProtocol):
				t.Fatalf("got %v; want ErrProtocol", err)
			case !tt.protocol && !errors.As(err, &fe):
				t.Fatalf("got %v; want a *FileError", err)
			case !strings.Contains(fmt.Sprint(err), tt.says):
				t.Fatalf("got %v; want it to say %q", err, tt.says)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("files left behind: %v", left)
			}
		})
	}
}

// TestAbandoned: requests given up mid-transfer (ctx ended) leave no
// partial file, and their late events do not reach the next request.
func TestAbandoned(t *testing.T) {
	c := dial(t, newConsole(t), "operator")
	dir := t.TempDir()
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		h := client.Handler{File: client.Save(dir, nil), Event: func(ev wire.Event) error {
			if ev.Type == wire.EventFile {
				cancel()
			}
			return nil
		}}
		if _, err := c.Run(ctx, "heapdump", h); err == nil {
			// The transfer may have finished before the cancel: fine.
			t.Logf("round %d: heapdump completed", i)
		}
		var out strings.Builder
		final, err := c.Run(context.Background(), "whoami", output(&out))
		if err != nil || final.Type != wire.EventResult || !strings.Contains(out.String(), "operator") {
			t.Fatalf("round %d: the request after an abandoned one: %+v %q %v", i, final, out.String(), err)
		}
	}
	// A cancelled transfer's sink is finished (and removed) when its request
	// ends; that may come after our last request.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(dir, ".ops-repl-*"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partial downloads left behind: %v", left)
		}
		c.Run(context.Background(), "whoami", client.Handler{})
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancel(t *testing.T) {
	c := dial(t, newConsole(t), "admin")
	cancel := make(chan struct{}, 1)
	h := client.Handler{Cancel: cancel, Event: func(ev wire.Event) error { return nil }}
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), `for i := 0; ; i++ { if i%1000 == 0 { fmt.Print("") } }`, h)
		done <- err
	}()
	cancel <- struct{}{}
	err := <-done
	var we *wire.Error
	if !errors.As(err, &we) || (we.Code != wire.CodeCanceled) {
		t.Fatalf("got %v; want canceled", err)
	}
}

func TestThrottledRetried(t *testing.T) {
	script := func(ws *websocket.Conn) {
		for n := 0; ; n++ {
			req := readReq(ws)
			if req.ID == 0 {
				return
			}
			if n < 3 {
				ws.WriteJSON(wire.Event{Type: wire.EventError, ID: req.ID, Code: wire.CodeThrottled, Message: "slow down"})
				continue
			}
			ws.WriteJSON(wire.Event{Type: wire.EventResult, ID: req.ID, Value: "ok"})
		}
	}
	var seen []string
	h := client.Handler{Event: func(ev wire.Event) error { seen = append(seen, ev.Type); return nil }}
	c, err := client.Dial(context.Background(), fake(t, script), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	final, err := c.Run(context.Background(), "whoami", h)
	if err != nil || final.Value != "ok" || len(seen) != 1 {
		t.Fatalf("got %+v, %v, events %v; want one result", final, err, seen)
	}
	c2, err := client.Dial(context.Background(), fake(t, script), client.Options{ThrottleWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	var we *wire.Error
	if _, err := c2.Run(context.Background(), "whoami", client.Handler{}); !errors.As(err, &we) || we.Code != wire.CodeThrottled {
		t.Fatalf("without retries: got %v; want throttled", err)
	}
}

func TestDialRefusals(t *testing.T) {
	url := newConsole(t)
	var attempts atomic.Int32
	throttled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, "throttled: too many attempts\n")
	}))
	defer throttled.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	}))
	defer app.Close()
	tests := []struct {
		name, url, token string
		status           int
		code             wire.Code
		denied           bool
		msg              string
	}{
		{name: "no token", url: url, status: 401, code: wire.CodeUnauthenticated, denied: true},
		{name: "bad token", url: url, token: "not-a-token-of-anyone-at-all", status: 401, code: wire.CodeUnauthenticated, denied: true},
		{name: "throttled", url: throttled.URL, status: 429, code: wire.CodeThrottled},
		{name: "not a console", url: app.URL, token: "x", status: 200, msg: "check the URL's path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Dial(context.Background(), tt.url, client.Options{Token: tt.token})
			var re *client.RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("got %v; want a *RefusedError", err)
			}
			if re.Status != tt.status || re.Code != tt.code || re.Denied() != tt.denied || !strings.Contains(re.Error(), tt.msg) {
				t.Fatalf("got %+v (%v)", re, re)
			}
		})
	}
	if n := attempts.Load(); n != 4 {
		t.Fatalf("throttled handshake tried %d times; want 1 + 3 retries", n)
	}
}

func TestConnectionEnds(t *testing.T) {
	url := fake(t, func(ws *websocket.Conn) {
		readReq(ws)
		ws.WriteJSON(wire.Event{Type: wire.EventNotice, Message: "your credentials were revoked"})
		ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "credentials revoked"))
		time.Sleep(100 * time.Millisecond)
	})
	notices := make(chan wire.Event, 1)
	c, err := client.Dial(context.Background(), url, client.Options{Notice: func(ev wire.Event) { notices <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Run(context.Background(), "sleep", client.Handler{})
	var ce *client.ClosedError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(err.Error(), "credentials revoked") {
		t.Fatalf("got %v; want the server's close", err)
	}
	<-c.Done()
	if ev := <-notices; ev.Type != wire.EventNotice {
		t.Fatalf("notice: %+v", ev)
	}
	if _, err := c.Send(wire.Request{Type: wire.TypeRun, Line: "x"}, nil); !errors.As(err, &ce) {
		t.Fatalf("Send after the end: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "ws://127.0.0.1:7227/ops-repl", want: "ws://127.0.0.1:7227/ops-repl"},
		{in: "https://h/x", want: "wss://h/x"},
		{in: "127.0.0.1:7227", err: "no scheme"},
		{in: "localhost:7227/ops-repl", err: "no scheme"},
		{in: "ftp://h/", err: "not ftp://"},
		{in: "ws:///x", err: "no host"},
		{in: "ws://u:p@h/", err: "never sent in URLs"},
		{in: "ws://h/?token=x", err: "never sent in URLs"},
		{in: "", err: "no URL"},
		// A password in a URL is never repeated in the error.
		{in: "ws://op:SECRET@host:badport/x", err: "does not parse"},
		{in: "ftp://op:SECRET@host/x", err: "not ftp://"},
		{in: "op:SECRET@host:1/x", err: "no scheme"},
		{in: "ws://op:SECRET@/x", err: "no host"},
		{in: "ws://alice:SECR/ET@host:1/x", err: "does not parse"},
		{in: "ws://alice:SECR#ET@host:1/x", err: "does not parse"},
		{in: "ws://alice:SECR?ET@host:badport/x", err: "does not parse"},
		{in: "alice:SECR/ET@host:1/x", err: "no scheme"},
	}
	for _, tt := range tests {
		u, err := client.ParseURL(tt.in)
		if err != nil && strings.Contains(err.Error(), "SECR") {
			t.Errorf("%q: the error repeats the password: %v", tt.in, err)
		}
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: got %v; want an error with %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || u.String() != tt.want):
			t.Errorf("%q: got %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

func TestSafeName(t *testing.T) {
	tests := map[string]bool{
		"heap-20261121T150405Z.pb.gz": true,
		"../../etc/passwd":            false,
		"/etc/passwd":                 false,
		".bashrc":                     false,
		"a/b":                         false,
		`a\b`:                         false,
		"":                            false,
		"name with space":             false,
		"x\x00y":                      false,
		strings.Repeat("a", 200):      false,
	}
	for name, ok := range tests {
		if _, err := client.SafeName(name); (err == nil) != ok {
			t.Errorf("SafeName(%q): got err %v; want ok=%v", name, err, ok)
		}
	}
}

// TestWriterSink keeps a file in memory.
func TestWriterSink(t *testing.T) {
	c := dial(t, newConsole(t), "operator")
	var buf bytes.Buffer
	final, err := c.Run(context.Background(), "heapdump", client.Handler{File: func(wire.Event) (client.Sink, error) { return client.WriterSink(&buf), nil }})
	if err != nil || final.Type != wire.EventResult {
		t.Fatal(final, err)
	}
	if _, err := gzip.NewReader(&buf); err != nil {
		t.Fatalf("the profile kept in memory: %v", err)
	}
}

// TestHelloChecked: a hello whose fields could drive a terminal (they end
// up in prompts) is a protocol error.
func TestHelloChecked(t *testing.T) {
	good := wire.Event{Type: wire.EventHello, Session: "5e55", Subject: "admin", Roles: []string{"role:admin"}, Server: wire.Subprotocol}
	for name, edit := range map[string]func(*wire.Event){
		"escape in subject":  func(h *wire.Event) { h.Subject = "adm\x1b]0;PWNED\x07" },
		"empty subject":      func(h *wire.Event) { h.Subject = "" },
		"escape in role":     func(h *wire.Event) { h.Roles = []string{"role:admin\x1b[2J"} },
		"newline in session": func(h *wire.Event) { h.Session = "5e55\nfake banner" },
		"bidi override":      func(h *wire.Event) { h.Subject = "adm\u202eni" },
	} {
		t.Run(name, func(t *testing.T) {
			h := good
			edit(&h)
			_, err := client.Dial(context.Background(), fakeHello(t, h, func(ws *websocket.Conn) { ws.ReadMessage() }), client.Options{})
			if !errors.Is(err, client.ErrProtocol) {
				t.Fatalf("got %v; want ErrProtocol", err)
			}
		})
	}
}

// TestHelloAccepted: names an Authenticator or a policy may use pass.
func TestHelloAccepted(t *testing.T) {
	h := wire.Event{Type: wire.EventHello, Session: "5e55", Subject: "system:serviceaccount:ns:bot", Roles: []string{"role:team/sre", "role:on call", "role:équipe"}, Server: wire.Subprotocol}
	c, err := client.Dial(context.Background(), fakeHello(t, h, func(ws *websocket.Conn) { ws.ReadMessage() }), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestBacklog: a server that sends faster than the request is read fills
// no more than MaxQueuedBytes: the request is cancelled and ends with
// ErrBacklog.
func TestBacklog(t *testing.T) {
	cancelled := make(chan wire.Request, 1)
	url := fake(t, func(ws *websocket.Conn) {
		req := readReq(ws)
		chunk := strings.Repeat("x", 1<<20)
		for i := 0; i < 32; i++ {
			ws.WriteJSON(wire.Event{Type: wire.EventOutput, ID: req.ID, Data: chunk})
		}
		for {
			r := readReq(ws)
			if r.Type == "" {
				return
			}
			if r.Type == wire.TypeCancel {
				cancelled <- r
				ws.WriteJSON(wire.Event{Type: wire.EventError, ID: req.ID, Code: wire.CodeCanceled, Message: "canceled"})
			}
		}
	})
	c, err := client.Dial(context.Background(), url, client.Options{MaxQueuedBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Send(wire.Request{Type: wire.TypeRun, Line: "flood"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	select { // nothing reads the request until the client has cancelled it
	case got := <-cancelled:
		if got.Target != r.ID {
			t.Fatalf("cancel for %d; want %d", got.Target, r.ID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no cancel within 30s")
	}
	n := 0
	for {
		_, err := r.Next(context.Background())
		if err == nil {
			n++
			continue
		}
		if !errors.Is(err, client.ErrBacklog) {
			t.Fatalf("after %d events: %v; want ErrBacklog", n, err)
		}
		break
	}
	if n > 4 {
		t.Fatalf("%d events of 1 MiB were queued; want at most 4", n)
	}
}

// TestDialCanceled: cancelling the context ends a handshake that the
// server never answers, and the wait for hello, at once (not after the
// handshake timeout).
func TestDialCanceled(t *testing.T) {
	for _, stage := range []string{"handshake", "hello"} {
		t.Run(stage, func(t *testing.T) {
			mute := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				up := websocket.Upgrader{Subprotocols: []string{"ops-repl.v1"}}
				c, err := up.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				defer c.Close()
				<-r.Context().Done() // upgraded, never says hello
			})
			if stage == "handshake" {
				mute = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }) // never answers
			}
			hs := httptest.NewServer(mute)
			defer hs.Close()
			defer hs.CloseClientConnections()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			_, err := client.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), client.Options{Token: "x", HandshakeTimeout: time.Minute})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v; want the context's cancellation", err)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Fatalf("Dial returned %v after the cancel", d)
			}
		})
	}
}

// TestDialCanceledAsConnected: a context cancelled just as the TCP
// connection is made leaves no connection open.
func TestDialCanceledAsConnected(t *testing.T) {
	closed := make(chan struct{}, 2) // the connection ended: before a request, or after an upgrade
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{"ops-repl.v1"}}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","id":0,"session":"s1","subject":"alice","roles":["role:viewer"],"server":"ops-repl.v1"}`))
		c.ReadMessage() // until the client's side is closed
		closed <- struct{}{}
	}))
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	}
	hs.Start()
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := new(net.Dialer).DialContext(dctx, network, addr)
		cancel() // a Ctrl-C, a fleet's silence timer
		// Let the cancellation's watcher run before the connection is
		// handed back (it then has nothing to close): the window this test
		// is about. On a busy machine it may run later; the test then
		// passes either way.
		time.Sleep(50 * time.Millisecond)
		return c, err
	}
	_, err := client.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), client.Options{NetDialContext: dial, HandshakeTimeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want the cancellation", err)
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the connection is still open")
	}
}

// failAfter is a Sink whose writes fail once it holds n bytes.
type failAfter struct {
	n, got   int
	finished error
}

func (s *failAfter) Write(p []byte) (int, error) {
	if s.got+len(p) > s.n {
		return 0, errors.New("disk on fire")
	}
	s.got += len(p)
	return len(p), nil
}

func (s *failAfter) Finish(err error) error { s.finished = err; return err }

// TestLargeFiles: files of many buffers' worth, in frames of every size
// (a frame may fill part of a buffer, or span several), arrive whole and
// in order; a byte changed anywhere, a frame past the announced size, or
// a sink that fails midway fail the file, and the connection goes on.
func TestLargeFiles(t *testing.T) {
	data := make([]byte, 5<<20+12345)
	for i := range data {
		data[i] = byte(i*31 + i>>12)
	}
	split := func(sizes ...int) [][]byte {
		var out [][]byte
		for off, i := 0, 0; off < len(data); i++ {
			n := min(sizes[i%len(sizes)], len(data)-off)
			out = append(out, data[off:off+n])
			off += n
		}
		return out
	}
	flipped := func(at int) [][]byte {
		b := bytes.Clone(data)
		b[at] ^= 1
		return [][]byte{b[:at+1], b[at+1:]}
	}
	tests := []struct {
		name     string
		frames   [][]byte
		sink     *failAfter // nil: kept in memory
		says     string     // "": the file is kept intact
		protocol bool
	}{
		{name: "32 KiB frames", frames: split(32 << 10)},
		{name: "odd frames", frames: split(1, 7, 100<<10, 3<<20, 1000)},
		{name: "one frame", frames: [][]byte{data}},
		{name: "empty frames between", frames: split(0, 64<<10)},
		{name: "a byte changed early", frames: flipped(10), says: "corrupt"},
		{name: "a byte changed late", frames: flipped(len(data) - 1), says: "corrupt"},
		{name: "a byte changed at a buffer's edge", frames: flipped(256 << 10), says: "corrupt"},
		{name: "more than announced", frames: append(split(32<<10), []byte("x")), protocol: true},
		{name: "sink fails midway", frames: split(32 << 10), sink: &failAfter{n: 3 << 20}, says: "disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fake(t, func(ws *websocket.Conn) {
				for {
					req := readReq(ws)
					if req.Type == "" {
						return
					}
					if req.Line == "heapdump" {
						ws.WriteJSON(wire.Event{Type: wire.EventFile, ID: req.ID, Name: "heap.dump", Size: int64(len(data)), SHA256: sum(data)})
						for _, f := range tt.frames {
							ws.WriteMessage(websocket.BinaryMessage, f)
						}
						ws.WriteJSON(wire.Event{Type: wire.EventFileEnd, ID: req.ID, Name: "heap.dump"})
					}
					ws.WriteJSON(wire.Event{Type: wire.EventResult, ID: req.ID})
				}
			})
			c, err := client.Dial(context.Background(), url, client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var got bytes.Buffer
			_, err = c.Run(context.Background(), "heapdump", client.Handler{File: func(wire.Event) (client.Sink, error) {
				if tt.sink != nil {
					return tt.sink, nil
				}
				return client.WriterSink(&got), nil
			}})
			switch {
			case tt.protocol:
				if !errors.Is(err, client.ErrProtocol) {
					t.Fatalf("got %v; want ErrProtocol", err)
				}
				if got.Len() > len(data) {
					t.Fatalf("the sink got %d bytes of a file announced at %d", got.Len(), len(data))
				}
				return
			case tt.says == "":
				if err != nil || !bytes.Equal(got.Bytes(), data) {
					t.Fatalf("got %v, %d bytes (equal: %v); want the file intact", err, got.Len(), bytes.Equal(got.Bytes(), data))
				}
			default:
				var fe *client.FileError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("got %v; want a *FileError saying %q", err, tt.says)
				}
				if tt.sink != nil && tt.sink.finished == nil {
					t.Fatal("the failed sink was finished with nil: it would keep the file")
				}
			}
			if final, err := c.Run(context.Background(), "whoami", client.Handler{}); err != nil || final.Type != wire.EventResult {
				t.Fatalf("the connection after: %+v %v", final, err)
			}
		})
	}
}

// TestEndsMidTransfer: a connection that ends in the middle of a file's
// frame ends as any other: a *ClosedError (with the close code when the
// server sent one), or ErrClosed after Close; the file is not kept.
func TestEndsMidTransfer(t *testing.T) {
	data := bytes.Repeat([]byte("d"), 1<<20)
	tests := []struct {
		name  string
		end   func(ws *websocket.Conn) // after half a frame is out
		close bool                     // the client calls Close instead
		code  int                      // want a *ClosedError with this code (0: none)
	}{
		{name: "connection dropped", end: func(ws *websocket.Conn) { ws.NetConn().Close() }},
		{name: "close frame between fragments", end: func(ws *websocket.Conn) {
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "revoked"), time.Now().Add(time.Second))
		}, code: 4001},
		{name: "client closes", close: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started := make(chan struct{})
			url := fake(t, func(ws *websocket.Conn) {
				req := readReq(ws)
				ws.WriteJSON(wire.Event{Type: wire.EventFile, ID: req.ID, Name: "heap.dump", Size: int64(len(data)), SHA256: sum(data)})
				// Half of a fragmented binary message: its first fragments
				// are flushed, its last never comes.
				w, _ := ws.NextWriter(websocket.BinaryMessage)
				w.Write(data[:len(data)/2])
				close(started)
				if tt.end != nil {
					tt.end(ws)
				}
				ws.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
				ws.NetConn().Read(make([]byte, 1)) // until the client goes
			})
			c, err := client.Dial(context.Background(), url, client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.close {
				go func() { <-started; c.Close() }()
			}
			var got bytes.Buffer
			var finished error
			_, err = c.Run(context.Background(), "heapdump", client.Handler{File: func(wire.Event) (client.Sink, error) {
				return sinkFunc{&got, func(err error) error { finished = err; return err }}, nil
			}})
			var ce *client.ClosedError
			switch {
			case tt.close && !errors.Is(err, client.ErrClosed):
				t.Fatalf("got %v; want ErrClosed", err)
			case !tt.close && (!errors.As(err, &ce) || ce.Code != tt.code):
				t.Fatalf("got %#v; want a *ClosedError with code %d", err, tt.code)
			}
			if finished == nil {
				t.Fatal("the sink was finished with nil: it would keep half a file")
			}
		})
	}
}

// sinkFunc is a Sink from a Writer and a Finish func.
type sinkFunc struct {
	io.Writer
	finish func(error) error
}

func (s sinkFunc) Finish(err error) error { return s.finish(err) }
