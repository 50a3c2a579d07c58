package demo

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/auth"
)

func TestStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	d, err := Start(context.Background(), Options{Dir: dir, Listen: ":0", Leak: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !strings.HasPrefix(d.ConsoleURL, "ws://127.0.0.1:") || !strings.HasSuffix(d.ConsoleURL, ConsolePath) {
		t.Fatalf("ConsoleURL %q: want ws://127.0.0.1:PORT%s (a missing host means loopback)", d.ConsoleURL, ConsolePath)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v; want mode 0700", st.Mode().Perm(), err)
	}
	for _, name := range []string{"tokens", "policy.csv", "token-viewer", "token-operator", "token-admin"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v; want mode 0600", name, err)
		}
	}
	tokens, err := auth.LoadFile(filepath.Join(dir, "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Subjects {
		if got, ok := tokens.Lookup(d.Tokens[s]); !ok || got != s {
			t.Fatalf("token of %s resolves to %q, %v", s, got, ok)
		}
	}
	pol, _ := os.ReadFile(d.PolicyPath)
	if !strings.Contains(string(pol), "cmd:cache-stats") {
		t.Fatal("live policy lacks the demo command's grant")
	}
	if !strings.Contains(string(pol), "g, admin, role:admin") {
		t.Fatal("live policy lacks the demo's role bindings")
	}
	resp, err := http.Get(d.AppURL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("app: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := d.app.Requests()["GET /"]; got != 1 {
		t.Fatalf("request counter: got %d; want 1", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.app.LeakedBytes() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d.app.LeakedBytes() == 0 {
		t.Fatal("--leak did not leak")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStartRefusesBadListen(t *testing.T) {
	if _, err := Start(context.Background(), Options{Dir: t.TempDir(), Listen: "256.0.0.1:0"}); err == nil {
		t.Fatal("Start with an invalid address: got no error")
	}
}

// TestReusedDirIsMadePrivate: a reused --dir with loose modes or links
// does not leak the new tokens.
func TestReusedDirIsMadePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "token-admin"), []byte("old"), 0o644)
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("untouched"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "token-viewer"))
	d, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode: got %v; want 0700", st.Mode().Perm())
	}
	for _, name := range []string{"token-admin", "token-viewer"} {
		st, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want a regular 0600 file", name, st.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "untouched" {
		t.Fatalf("the demo wrote through a link: %q", b)
	}

	dir2 := filepath.Join(t.TempDir(), "state2")
	os.Mkdir(dir2, 0o700)
	os.Symlink(outside, filepath.Join(dir2, "audit.jsonl"))
	if _, err := Start(context.Background(), Options{Dir: dir2}); err == nil {
		t.Fatal("Start with audit.jsonl as a link: got no error")
	}
}
