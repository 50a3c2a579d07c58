package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewTokenRoundTrip(t *testing.T) {
	tok, line, err := NewToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 64 {
		t.Fatalf("token length: got %d; want 64 hex digits (256 bits)", len(tok))
	}
	if strings.Contains(line, tok) {
		t.Fatalf("the token-file line contains the token itself: %q", line)
	}
	ts, err := parse(strings.NewReader("# comment\n\n" + line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ts.Lookup(tok); !ok || got != "alice" {
		t.Fatalf("Lookup(new token): got %q, %v; want alice, true", got, ok)
	}
	tok2, _, _ := NewToken("alice")
	if tok2 == tok {
		t.Fatal("two NewToken calls returned the same token")
	}
	if _, ok := ts.Lookup(tok2); ok {
		t.Fatal("Lookup accepted a token that is not in the file")
	}
	if _, ok := ts.Lookup(""); ok {
		t.Fatal("Lookup accepted the empty token")
	}
}

func TestParseErrors(t *testing.T) {
	h := hash("x")
	tests := []struct{ name, in, want string }{
		{"one field", "alice\n", "line 1"},
		{"three fields", "alice " + h + " extra\n", "line 1"},
		{"token instead of hash", "alice 0123\n", "64 hex digits"},
		{"not hex", "alice " + strings.Repeat("zz", 32) + "\n", "64 hex digits"},
		{"subject with colon", "role:admin " + h + "\n", "only letters"},
		{"subject too long", strings.Repeat("a", 65) + " " + h + "\n", "1 to 64"},
		{"duplicate", "a " + h + "\nb " + h + "\n", "line 2"},
		{"newline injection", "a\x00b " + h + "\n", "only letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef"
	ts, err := NewTokens(map[string]string{"bob": tok})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		headers map[string]string
		url     string
		want    string // subject; "" means refused
	}{
		{name: "bearer", headers: map[string]string{"Authorization": "Bearer " + tok}, want: "bob"},
		{name: "scheme case", headers: map[string]string{"Authorization": "bearer " + tok}, want: "bob"},
		{name: "subprotocol", headers: map[string]string{"Sec-WebSocket-Protocol": "ops-repl.v1, ops-repl.bearer." + tok}, want: "bob"},
		{name: "no credentials", want: ""},
		{name: "wrong token", headers: map[string]string{"Authorization": "Bearer " + tok + "x"}, want: ""},
		{name: "prefix of token", headers: map[string]string{"Authorization": "Bearer " + tok[:20]}, want: ""},
		{name: "basic auth", headers: map[string]string{"Authorization": "Basic Ym9iOnB3"}, want: ""},
		{name: "empty bearer", headers: map[string]string{"Authorization": "Bearer "}, want: ""},
		{name: "token without scheme", headers: map[string]string{"Authorization": tok}, want: ""},
		{name: "token in query", url: "/?token=" + tok, want: ""},
		{name: "token in access_token", url: "/?access_token=" + tok, want: ""},
		{name: "header and subprotocol", headers: map[string]string{"Authorization": "Bearer " + tok, "Sec-WebSocket-Protocol": "ops-repl.bearer." + tok}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tt.url
			if u == "" {
				u = "/"
			}
			r := httptest.NewRequest("GET", u, nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			got, err := ts.Authenticate(r)
			if got != tt.want {
				t.Fatalf("Authenticate: got %q (%v); want %q", got, err, tt.want)
			}
			if tt.want == "" {
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("Authenticate: got error %v; want ErrUnauthenticated", err)
				}
				if strings.Contains(err.Error(), tok[:16]) {
					t.Fatalf("error message contains the token: %q", err)
				}
			}
		})
	}
}

func TestNewTokensRejects(t *testing.T) {
	for _, m := range []map[string]string{
		{"bob": "short"},
		{"bad subject": "0123456789abcdef0123"},
		{"a": "0123456789abcdef0123", "b": "0123456789abcdef0123"},
	} {
		if _, err := NewTokens(m); err == nil {
			t.Errorf("NewTokens(%v): got no error; want one", m)
		}
	}
}

func ExampleNewToken() {
	tok, line, _ := NewToken("alice") // tok goes to alice; line to the token file
	tokens, _ := parse(strings.NewReader(line))
	subject, ok := tokens.Lookup(tok)
	fmt.Println(subject, ok, len(strings.Fields(line)[1]))
	// Output: alice true 64
}

// TestWatchRevokes: a token removed from the file stops working once the
// file has settled; the subject is reported revoked and the revocation
// callbacks run; a cut-off or empty file is refused and the tokens stay.
func TestWatchRevokes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	alice, aliceLine, _ := NewToken("alice")
	bob, bobLine, _ := NewToken("bob")
	os.WriteFile(path, []byte(aliceLine+"\n"+bobLine+"\n"), 0o600)
	tokens, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	revoked := make(chan []string, 4)
	tokens.OnRevoke(func(s []string) { revoked <- s })
	changes := make(chan Change, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tokens.Watch(ctx, WatchOptions{Interval: 10 * time.Millisecond, Quiet: 50 * time.Millisecond, OnChange: func(c Change) { changes <- c }})

	next := func() Change {
		select {
		case c := <-changes:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no change reported")
		}
		return Change{}
	}
	os.WriteFile(path, []byte(aliceLine+"\n"), 0o600)
	if c := next(); c.Err != nil || !slices.Equal(c.Revoked, []string{"bob"}) || c.Tokens != 1 || c.OldHash == c.NewHash {
		t.Fatalf("bob's line removed: %+v", c)
	}
	if got := <-revoked; !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("revoked: %v", got)
	}
	if _, ok := tokens.Lookup(bob); ok {
		t.Fatal("a removed token still works")
	}
	for _, content := range []string{"", aliceLine} { // empty; cut off before its newline
		os.WriteFile(path, []byte(content), 0o600)
		if c := next(); c.Err == nil {
			t.Fatalf("%q: got no rejection", content)
		}
		if _, ok := tokens.Lookup(alice); !ok {
			t.Fatalf("%q: the tokens in force changed", content)
		}
	}
}
