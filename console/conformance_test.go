package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console/wire"
)

// The conformance tests check the server against PROTOCOL.md frame by
// frame, over a bare WebSocket: deliberately not through package client,
// which would hide what a client in another language sees. rawConn is the
// only code in the tree that reads console frames by hand.

// rawConn is a WebSocket to the console with nothing on top.
type rawConn struct {
	t     *testing.T
	ws    *websocket.Conn
	hello wire.Event
}

// raw opens a session as subject and reads its hello.
func (f *fixture) raw(t *testing.T, subject string) *rawConn {
	t.Helper()
	// A write buffer larger than any frame a rule sends: each frame then
	// leaves in one write. (With gorilla's 4 KiB default, a frame over
	// MaxMessageBytes goes out in pieces, and the server's close can
	// reset the connection under a piece still being written.)
	d := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}, WriteBufferSize: 64 << 10}
	ws, _, err := d.Dial(f.url, http.Header{"Authorization": {"Bearer " + testTokens[subject]}})
	if err != nil {
		t.Fatalf("dial as %s: %v", subject, err)
	}
	t.Cleanup(func() { ws.Close() })
	r := &rawConn{t: t, ws: ws}
	r.hello = r.event()
	if r.hello.Type != wire.EventHello {
		t.Fatalf("first frame: %+v; want hello", r.hello)
	}
	return r
}

func (r *rawConn) drop() { r.ws.Close() }

// write sends one text frame.
func (r *rawConn) write(frame string) {
	r.t.Helper()
	if err := r.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// frame reads the next frame, text or binary, within 15 s.
func (r *rawConn) frame() (typ int, msg []byte, err error) {
	r.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	return r.ws.ReadMessage()
}

// event reads the next text frame as an event; the test fails on a binary
// frame or a closed connection.
func (r *rawConn) event() wire.Event {
	r.t.Helper()
	typ, msg, err := r.frame()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		r.t.Fatalf("a binary frame where an event was due")
	}
	ev, err := wire.DecodeEvent(msg)
	if err != nil {
		r.t.Fatalf("decode %s: %v", msg, err)
	}
	return ev
}

// until reads events until the final one of id, skipping other ids'
// events, and returns id's events and the binary frames among them.
func (r *rawConn) until(id uint64) (evs []wire.Event, binary [][]byte) {
	r.t.Helper()
	for {
		typ, msg, err := r.frame()
		if err != nil {
			r.t.Fatalf("read until the final event of %d: %v (so far %+v)", id, err, evs)
		}
		if typ == websocket.BinaryMessage {
			binary = append(binary, msg)
			continue
		}
		ev, err := wire.DecodeEvent(msg)
		if err != nil {
			r.t.Fatalf("decode %s: %v", msg, err)
		}
		if ev.ID != id {
			continue
		}
		evs = append(evs, ev)
		if ev.Final() {
			return evs, binary
		}
	}
}

// closeCode reads until the server closes, and returns its close frame.
func (r *rawConn) closeCode() *websocket.CloseError {
	r.t.Helper()
	for {
		_, _, err := r.frame()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			r.t.Fatalf("connection ended with %v; want a close frame", err)
		}
		return ce
	}
}

// TestConformance walks the rules of PROTOCOL.md, each as a client in
// another language would meet it. Each row quotes the rule it checks.
func TestConformance(t *testing.T) {
	f := newFixture(t, nil)
	final := func(t *testing.T, r *rawConn, frame string, id uint64) wire.Event {
		t.Helper()
		r.write(frame)
		evs, _ := r.until(id)
		return evs[len(evs)-1]
	}
	wantErr := func(t *testing.T, ev wire.Event, code wire.Code) {
		t.Helper()
		if ev.Type != wire.EventError || ev.Code != code {
			t.Fatalf("got %+v; want error %s", ev, code)
		}
	}
	rules := []struct {
		rule  string
		check func(t *testing.T, r *rawConn)
	}{
		{"§3 the first frame is a hello with id 0, session, subject, roles and server", func(t *testing.T, r *rawConn) {
			h := r.hello
			if h.ID != 0 || h.Session == "" || h.Subject != "admin" || len(h.Roles) == 0 || h.Server != wire.Subprotocol {
				t.Fatalf("hello %+v", h)
			}
			if r.ws.Subprotocol() != wire.Subprotocol {
				t.Fatalf("selected subprotocol %q", r.ws.Subprotocol())
			}
		}},
		{"§2 numbers: 3.0 and 3e0 are read as 3", func(t *testing.T, r *rawConn) {
			if ev := final(t, r, `{"type":"run","id":3.0,"line":"whoami"}`, 3); ev.Type != wire.EventResult {
				t.Fatalf("id 3.0: %+v", ev)
			}
			if ev := final(t, r, `{"type":"run","id":3e0,"line":"whoami"}`, 3); ev.Type != wire.EventResult {
				t.Fatalf("id 3e0: %+v", ev)
			}
			if ev := final(t, r, `{"type":"complete","id":4,"line":"whoa","pos":3.0}`, 4); ev.Type != wire.EventCompletions {
				t.Fatalf("pos 3.0: %+v", ev)
			}
		}},
		{"§2 numbers: ids up to 2^53-1, echoed exactly", func(t *testing.T, r *rawConn) {
			r.write(`{"type":"run","id":9007199254740991,"line":""}`)
			_, msg, err := r.frame()
			if err != nil || !bytes.Contains(msg, []byte(`"id":9007199254740991`)) || !bytes.Contains(msg, []byte(`"result"`)) {
				t.Fatalf("got %s %v", msg, err)
			}
		}},
		{"§2/§3 an id that can't be read (1.5, \"3\", 2^53, 0, none) gets an error with id 0", func(t *testing.T, r *rawConn) {
			for _, frame := range []string{
				`{"type":"run","id":1.5,"line":"whoami"}`,
				`{"type":"run","id":"3","line":"whoami"}`,
				`{"type":"run","id":9007199254740992,"line":"whoami"}`,
				`{"type":"run","id":0,"line":"whoami"}`,
				`{"type":"run","id":-1,"line":"whoami"}`,
				`{"type":"run","line":"whoami"}`,
				`not json`,
				`[1,2]`,
			} {
				r.write(frame)
				if ev := r.event(); ev.ID != 0 || ev.Type != wire.EventError || ev.Code != wire.CodeBadRequest {
					t.Fatalf("%s: got %+v; want error bad_request with id 0", frame, ev)
				}
			}
		}},
		{"§2/§3 a refused frame whose id can be read gets its error on that id", func(t *testing.T, r *rawConn) {
			for _, frame := range []string{
				`{"type":"run","id":11,"line":"whoami","extra":true}`,
				`{"type":"complete","id":11,"line":"who","pos":1.5}`,
				`{"type":"complete","id":11,"line":"who","pos":"1"}`,
				`{"type":"shell","id":11,"line":"id"}`,
				`{"type":"cancel","id":11}`,
			} {
				wantErr(t, final(t, r, frame, 11), wire.CodeBadRequest)
			}
		}},
		{"§2 a request line over 512 KiB is answered with error limit", func(t *testing.T, r *rawConn) {
			wantErr(t, final(t, r, `{"type":"run","id":12,"line":"`+strings.Repeat("a", 513<<10)+`"}`, 12), wire.CodeLimit)
		}},
		{"§2 clients send text frames only: a binary frame gets an error with id 0, and the session goes on", func(t *testing.T, r *rawConn) {
			r.ws.WriteMessage(websocket.BinaryMessage, []byte{0, 1})
			if ev := r.event(); ev.ID != 0 || ev.Code != wire.CodeBadRequest {
				t.Fatalf("got %+v", ev)
			}
			if ev := final(t, r, `{"type":"run","id":13,"line":"whoami"}`, 13); ev.Type != wire.EventResult {
				t.Fatalf("after: %+v", ev)
			}
		}},
		{"§3 a frame with the id of a request in flight is refused with id 0, naming the id; the request keeps its one final event", func(t *testing.T, r *rawConn) {
			r.write(`{"type":"run","id":14,"line":"gcwatch"}`)
			r.write(`{"type":"run","id":14,"line":"whoami"}`)
			r.write(`{"type":"complete","id":14,"line":"who"}`)
			r.write(`{"type":"run","id":14,"line":"whoami","bogus":1}`)
			var zero []wire.Event
			for len(zero) < 3 {
				ev := r.event()
				switch {
				case ev.ID == 0:
					zero = append(zero, ev)
				case ev.ID == 14 && ev.Final():
					t.Fatalf("a final event for 14 while it runs: %+v", ev)
				}
			}
			for _, ev := range zero {
				if ev.Type != wire.EventError || ev.Code != wire.CodeBadRequest || !strings.Contains(ev.Message, "id 14") {
					t.Errorf("refusal %+v; want bad_request naming id 14", ev)
				}
			}
			r.write(`{"type":"cancel","id":15,"target":14}`)
			if evs, _ := r.until(14); evs[len(evs)-1].Code != wire.CodeCanceled {
				t.Fatalf("14 ended with %+v; want canceled", evs[len(evs)-1])
			}
			if ev := final(t, r, `{"type":"run","id":14,"line":"whoami"}`, 14); ev.Type != wire.EventResult {
				t.Fatalf("reused after its final: %+v", ev)
			}
		}},
		{"§3 cancel has no reply of its own; its target ends with canceled; complete is answered while a run executes", func(t *testing.T, r *rawConn) {
			r.write(`{"type":"run","id":15,"line":"time.Sleep(time.Minute)"}`)
			r.write(`{"type":"complete","id":16,"line":"whoa"}`)
			r.write(`{"type":"cancel","id":17,"target":15}`)
			got := map[uint64][]wire.Event{}
			for len(got[15]) == 0 || !got[15][len(got[15])-1].Final() {
				ev := r.event()
				got[ev.ID] = append(got[ev.ID], ev)
			}
			if c := got[16]; len(c) != 1 || c[0].Type != wire.EventCompletions || !strings.Contains(strings.Join(c[0].Items, " "), "whoami") {
				t.Errorf("complete: %+v", c)
			}
			if last := got[15][len(got[15])-1]; last.Code != wire.CodeCanceled {
				t.Errorf("the cancelled run ended with %+v", last)
			}
			r.write(`{"type":"run","id":18,"line":""}`) // flushes anything the cancel might have answered
			for ev := r.event(); ev.ID != 18; ev = r.event() {
				if ev.ID == 17 {
					t.Errorf("cancel got a reply: %+v", ev)
				}
			}
		}},
		{"§3 every request ends with exactly one final event", func(t *testing.T, r *rawConn) {
			frames := []string{
				`{"type":"run","id":20,"line":"whoami"}`,
				`{"type":"run","id":21,"line":"nosuchcommand --x"}`,
				`{"type":"run","id":22,"line":"for {"}`,
				`{"type":"complete","id":23,"line":"mem"}`,
				`{"type":"run","id":24,"line":"1+2"}`,
				`{"type":"run","id":25,"line":"whoami","bogus":1}`,
				`{"type":"run","id":26,"line":""}`,
			}
			for _, fr := range frames {
				r.write(fr)
			}
			finals := map[uint64]int{}
			for len(finals) < len(frames) {
				if ev := r.event(); ev.Final() {
					finals[ev.ID]++
				}
			}
			r.write(`{"type":"run","id":27,"line":""}`)
			for ev := r.event(); ev.ID != 27; ev = r.event() {
				if ev.Final() {
					finals[ev.ID]++
				}
			}
			for id := uint64(20); id <= 26; id++ {
				if finals[id] != 1 {
					t.Errorf("request %d: %d final events", id, finals[id])
				}
			}
		}},
		{"§4 unfinished Go is answered incomplete; an empty line succeeds", func(t *testing.T, r *rawConn) {
			if ev := final(t, r, `{"type":"run","id":30,"line":"func f() int {"}`, 30); ev.Type != wire.EventIncomplete {
				t.Fatalf("unfinished: %+v", ev)
			}
			if ev := final(t, r, `{"type":"run","id":31,"line":""}`, 31); ev.Type != wire.EventResult {
				t.Fatalf("empty: %+v", ev)
			}
		}},
		{"§3 completions: items replace line[start:pos], start a UTF-8 byte offset", func(t *testing.T, r *rawConn) {
			line := `"é" ; strings.To`
			ev := final(t, r, fmt.Sprintf(`{"type":"complete","id":32,"line":%q}`, line), 32)
			if ev.Type != wire.EventCompletions || ev.Start != strings.Index(line, "strings.To") && ev.Start != strings.Index(line, "To") {
				t.Fatalf("got %+v", ev)
			}
		}},
		{"§3 output is never half a UTF-8 character", func(t *testing.T, r *rawConn) {
			r.write(`{"type":"run","id":33,"line":"fmt.Print(strings.Repeat(\"é世😀\", 40000))"}`)
			var out strings.Builder
			for {
				_, msg, err := r.frame()
				if err != nil {
					t.Fatal(err)
				}
				if !utf8.Valid(msg) || bytes.Contains(msg, []byte(`\ufffd`)) {
					t.Fatalf("a frame that is not whole UTF-8: %q…", msg[:min(len(msg), 80)])
				}
				ev, _ := wire.DecodeEvent(msg)
				if ev.ID == 33 && ev.Type == wire.EventOutput {
					out.WriteString(ev.Data)
				}
				if ev.ID == 33 && ev.Final() {
					break
				}
			}
			if out.String() != strings.Repeat("é世😀", 40000) {
				t.Fatalf("output: %d bytes, not what was printed", out.Len())
			}
		}},
		{"§5 a transfer: file (name, size, sha256), binary frames of at most 32 KiB, file_end, then result", func(t *testing.T, r *rawConn) {
			r.write(`{"type":"run","id":34,"line":"heapdump"}`)
			var order []string
			var file wire.Event
			var data []byte
			for {
				typ, msg, err := r.frame()
				if err != nil {
					t.Fatal(err)
				}
				if typ == websocket.BinaryMessage {
					if len(msg) > 32<<10 {
						t.Fatalf("a binary frame of %d bytes", len(msg))
					}
					if len(order) == 0 || order[len(order)-1] != "binary" {
						order = append(order, "binary")
					}
					data = append(data, msg...)
					continue
				}
				ev, _ := wire.DecodeEvent(msg)
				if ev.ID != 34 || ev.Type == wire.EventOutput || ev.Type == wire.EventNotice {
					continue
				}
				order = append(order, string(ev.Type))
				if ev.Type == wire.EventFile {
					file = ev
				}
				if ev.Final() {
					break
				}
			}
			if got := strings.Join(order, " "); got != "file binary file_end result" {
				t.Fatalf("order %q", got)
			}
			sum := sha256.Sum256(data)
			if int64(len(data)) != file.Size || hex.EncodeToString(sum[:]) != file.SHA256 || strings.ContainsAny(file.Name, `/\`) {
				t.Fatalf("file %+v; got %d bytes, sha256 %x", file, len(data), sum)
			}
		}},
		{"§6 a denied command: error forbidden naming the command and policy object", func(t *testing.T, r *rawConn) {
			// admin may run everything: check on a viewer's session.
			v := f.raw(t, "viewer")
			ev := final(t, v, `{"type":"run","id":35,"line":"heapdump"}`, 35)
			if ev.Code != wire.CodeForbidden || !strings.Contains(ev.Message, "heapdump") || !strings.Contains(ev.Message, "cmd:heapdump") {
				t.Fatalf("got %+v", ev)
			}
		}},
	}
	for _, rule := range rules {
		t.Run(rule.rule, func(t *testing.T) {
			rule.check(t, f.raw(t, "admin"))
		})
	}
}

// TestConformanceClose walks the rules about closing (§2, §3, §7), each on
// a server of its own.
func TestConformanceClose(t *testing.T) {
	tests := []struct {
		rule string
		opts func(*Options)
		act  func(t *testing.T, f *fixture, r *rawConn)
		code int
		says string
	}{
		{"§2 a frame over MaxMessageBytes closes with 1009", func(o *Options) { o.MaxMessageBytes = 4096 },
			func(t *testing.T, f *fixture, r *rawConn) {
				r.write(`{"type":"run","id":1,"line":"` + strings.Repeat("a", 8192) + `"}`)
			}, websocket.CloseMessageTooBig, ""},
		{"§7 a client that answers no ping is closed with 1001, saying keepalive", func(o *Options) { o.PingInterval = 100 * time.Millisecond },
			func(t *testing.T, f *fixture, r *rawConn) {
				r.ws.SetPingHandler(func(string) error { return nil })
			}, websocket.CloseGoingAway, "keepalive"},
		{"§7 a session with no request for the idle timeout is closed with 1000, saying idle", func(o *Options) { o.IdleTimeout = 200 * time.Millisecond },
			func(t *testing.T, f *fixture, r *rawConn) {}, websocket.CloseNormalClosure, "idle timeout"},
		{"§3/§7 on shutdown, the request under way and the waiting ones get a final event before 1001", nil,
			func(t *testing.T, f *fixture, r *rawConn) {
				r.write(`{"type":"run","id":1,"line":"gcwatch"}`)
				r.write(`{"type":"run","id":2,"line":"whoami"}`)
				r.write(`{"type":"complete","id":3,"line":"who"}`)
				// The server reads frames in order and answers a completion at
				// once: when the completion is answered, whoami waits there.
				finals := map[uint64]wire.Event{}
				for finals[3].Type == "" {
					if ev := r.event(); ev.ID == 3 { // gcwatch's first line may come first
						finals[3] = ev
					}
				}
				go f.srv.Close()
				for {
					typ, msg, err := r.frame()
					if err != nil {
						var ce *websocket.CloseError
						if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
							t.Fatalf("closed with %v; want 1001", err)
						}
						break
					}
					if ev, _ := wire.DecodeEvent(msg); typ == websocket.TextMessage && ev.Final() {
						if _, dup := finals[ev.ID]; dup {
							t.Fatalf("a second final event for %d: %+v", ev.ID, ev)
						}
						finals[ev.ID] = ev
					}
				}
				for _, id := range []uint64{1, 2} {
					if ev := finals[id]; ev.Type != wire.EventError || ev.Code != wire.CodeUnavailable && ev.Code != wire.CodeCanceled {
						t.Errorf("request %d: final %+v; want unavailable or canceled", id, ev)
					}
				}
				if finals[3].Type != wire.EventCompletions {
					t.Errorf("complete: %+v", finals[3])
				}
			}, -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			f := newFixture(t, tt.opts)
			r := f.raw(t, "admin")
			tt.act(t, f, r)
			if tt.code < 0 {
				return
			}
			ce := r.closeCode()
			if ce.Code != tt.code || !strings.Contains(ce.Text, tt.says) {
				t.Fatalf("closed with %d %q; want %d saying %q", ce.Code, ce.Text, tt.code, tt.says)
			}
		})
	}
}

func TestHandshakeGuards(t *testing.T) {
	f := newFixture(t, nil)
	good := "Bearer " + testTokens["viewer"]
	tests := []struct {
		name   string
		url    string
		header http.Header
		protos []string
		status int
	}{
		{name: "valid", header: http.Header{"Authorization": {good}}, protos: []string{wire.Subprotocol}, status: 101},
		{name: "browser subprotocol token", protos: []string{wire.Subprotocol, wire.BearerProtocolPrefix + testTokens["viewer"]}, status: 101},
		{name: "no credentials", protos: []string{wire.Subprotocol}, status: 401},
		{name: "bad token", header: http.Header{"Authorization": {"Bearer nope-nope-nope-nope"}}, protos: []string{wire.Subprotocol}, status: 401},
		{name: "token in query", url: "?token=" + testTokens["viewer"], protos: []string{wire.Subprotocol}, status: 400},
		{name: "token in query and header", url: "?access_token=x", header: http.Header{"Authorization": {good}}, protos: []string{wire.Subprotocol}, status: 400},
		{name: "token after a semicolon", url: "?x=1;token=abc", header: http.Header{"Authorization": {good}}, protos: []string{wire.Subprotocol}, status: 400},
		{name: "token with trailing semicolon", url: "?token=abc;", header: http.Header{"Authorization": {good}}, protos: []string{wire.Subprotocol}, status: 400},
		{name: "encoded key", url: "?%74oken=abc", header: http.Header{"Authorization": {good}}, protos: []string{wire.Subprotocol}, status: 400},
		{name: "any query", url: "?verbose=1", header: http.Header{"Authorization": {good}}, protos: []string{wire.Subprotocol}, status: 400},
		{name: "empty query", url: "?", header: http.Header{"Authorization": {good}}, protos: []string{wire.Subprotocol}, status: 400},
		{name: "foreign origin", header: http.Header{"Authorization": {good}, "Origin": {"https://evil.example"}}, protos: []string{wire.Subprotocol}, status: 403},
		{name: "malformed origin", header: http.Header{"Authorization": {good}, "Origin": {"::::"}}, protos: []string{wire.Subprotocol}, status: 403},
		{name: "same origin", header: http.Header{"Authorization": {good}, "Origin": {f.hs.URL}}, protos: []string{wire.Subprotocol}, status: 101},
		{name: "no subprotocol", header: http.Header{"Authorization": {good}}, status: 400},
		{name: "old subprotocol", header: http.Header{"Authorization": {good}}, protos: []string{"ops-repl.v0"}, status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: tt.protos}
			ws, resp, err := d.Dial(f.url+tt.url, tt.header)
			if ws != nil {
				defer ws.Close()
			}
			got := 0
			if resp != nil {
				got = resp.StatusCode
			}
			if got != tt.status {
				t.Fatalf("status: got %d (%v); want %d", got, err, tt.status)
			}
			if tt.status == 101 {
				if ws.Subprotocol() != wire.Subprotocol {
					t.Fatalf("selected subprotocol: got %q; want %q", ws.Subprotocol(), wire.Subprotocol)
				}
				if h := resp.Header.Get("Sec-WebSocket-Protocol"); strings.Contains(h, "bearer") {
					t.Fatalf("server echoed a bearer subprotocol: %q", h)
				}
			}
		})
	}
	// Plain HTTP (no upgrade) with valid credentials.
	req, _ := http.NewRequest("GET", f.hs.URL, nil)
	req.Header.Set("Authorization", good)
	req.Header.Set("Sec-WebSocket-Protocol", wire.Subprotocol)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("plain GET: got %d; want 400", resp.StatusCode)
	}
	for name, tok := range testTokens {
		if strings.Contains(f.audit.String(), tok) || strings.Contains(f.logs.String(), tok) {
			t.Fatalf("the %s token appears in the audit log or the logs", name)
		}
	}
	if !strings.Contains(f.audit.String(), `"outcome":"unauthenticated"`) {
		t.Fatal("refused handshakes are not audited")
	}
}

// TestBadFrames: each malformed frame gets its error and the session goes
// on.
func TestBadFrames(t *testing.T) {
	f := newFixture(t, nil)
	c := f.raw(t, "viewer")
	tests := []struct {
		name  string
		typ   int
		frame string
		id    uint64
		code  wire.Code
	}{
		{"not JSON", websocket.TextMessage, "memstats", 0, wire.CodeBadRequest},
		{"unknown type", websocket.TextMessage, `{"type":"shell","id":9,"line":"id"}`, 9, wire.CodeBadRequest},
		{"no id", websocket.TextMessage, `{"type":"run","line":"memstats"}`, 0, wire.CodeBadRequest},
		{"binary frame", websocket.BinaryMessage, "\x00\x01", 0, wire.CodeBadRequest},
		{"invalid UTF-8", websocket.TextMessage, "{\"type\":\"run\",\"id\":9,\"line\":\"\xff\xfe\"}", 9, wire.CodeBadRequest},
		{"JSON null", websocket.TextMessage, "null", 0, wire.CodeBadRequest},
		{"deep nesting", websocket.TextMessage, `{"type":"run","id":9,"line":` + strings.Repeat("[", 10000) + `}`, 0, wire.CodeBadRequest},
		{"two objects", websocket.TextMessage, `{"type":"run","id":9,"line":"whoami"}{"type":"run","id":10,"line":"whoami"}`, 9, wire.CodeBadRequest},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			if err := c.ws.WriteMessage(tt.typ, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			ev := c.event()
			if ev.Type != wire.EventError || ev.Code != tt.code || ev.ID != tt.id && ev.ID != 0 {
				t.Fatalf("got %+v; want error %s (id %d)", ev, tt.code, tt.id)
			}
			id := uint64(100 + i)
			c.write(fmt.Sprintf(`{"type":"run","id":%d,"line":"whoami"}`, id))
			if evs, _ := c.until(id); evs[len(evs)-1].Type != wire.EventResult {
				t.Fatalf("session unusable after %s: %+v", tt.name, evs)
			}
		})
	}
}

// TestCloseNotHeldByClient: a client that answers pings but never reads
// cannot keep its session, or Close, waiting.
func TestCloseNotHeldByClient(t *testing.T) {
	f := newFixture(t, nil)
	c := f.raw(t, "viewer")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				c.ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
			}
		}
	}()
	done := make(chan struct{})
	go func() { f.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting after 5s for a client that sends pongs and never reads")
	}
}

// TestUpgradeMethod: an upgrade sent with POST gets 405 and a CODE:
// message body, as every refusal.
func TestUpgradeMethod(t *testing.T) {
	f := newFixture(t, nil)
	req, _ := http.NewRequest(http.MethodPost, f.hs.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", wire.Subprotocol)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" || !strings.HasPrefix(string(body), "bad_request: ") {
		t.Fatalf("got %d %q (Allow %q); want 405 bad_request with Allow: GET", resp.StatusCode, body, resp.Header.Get("Allow"))
	}
}

// TestPlainGET: a browser or curl GET without the upgrade learns what the
// endpoint is.
func TestPlainGET(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "WebSocket endpoint") {
		t.Fatalf("got %d %q; want 400 saying what the endpoint is", resp.StatusCode, body)
	}
}

// TestInFlightRefusalAuditedApart: a frame refused because its id is in
// flight is audited under request 0, so the request that has the id keeps
// its own intent and outcome in the log.
func TestInFlightRefusalAuditedApart(t *testing.T) {
	f := newFixture(t, nil)
	r := f.raw(t, "admin")
	r.write(`{"type":"run","id":5,"line":"gcwatch"}`)
	r.write(`{"type":"run","id":5,"line":"whoami"}`)
	for { // gcwatch's header may come first
		ev := r.event()
		if ev.ID == 0 {
			if ev.Code != wire.CodeBadRequest {
				t.Fatalf("got %+v", ev)
			}
			break
		}
	}
	r.write(`{"type":"cancel","id":6,"target":5}`)
	if evs, _ := r.until(5); evs[len(evs)-1].Code != wire.CodeCanceled {
		t.Fatalf("5 ended with %+v", evs[len(evs)-1])
	}
	r.drop()
	f.srv.Close()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(path, []byte(f.audit.String()), 0o600)
	es, err := audit.Entries(audit.Filter{}, path)
	if err != nil {
		t.Fatal(err)
	}
	var gcwatch, refused *audit.Entry
	for _, e := range es {
		switch {
		case e.IsRequest() && e.Record.Line == "gcwatch":
			gcwatch = e
		case e.IsRequest() && e.Record.Line == "whoami":
			refused = e
		}
	}
	if gcwatch == nil || gcwatch.Outcome == nil || gcwatch.Outcome.Outcome != string(wire.CodeCanceled) || gcwatch.Record.Request != 5 {
		t.Fatalf("gcwatch's entry: %+v", gcwatch)
	}
	if refused == nil || refused.Record.Request != 0 || refused.Outcome == nil || refused.Outcome.Outcome != string(wire.CodeBadRequest) {
		t.Fatalf("the refused frame's entry: %+v", refused)
	}
}
