package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/demo"
)

// ownDemo starts a demo this test alone uses (its policy file changes).
func ownDemo(t *testing.T) *demo.Demo {
	t.Helper()
	d, err := demo.Start(context.Background(), demo.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func as(d *demo.Demo, subject string) map[string]string {
	return map[string]string{"OPS_REPL_URL": d.ConsoleURL, "OPS_REPL_TOKEN": d.Tokens[subject]}
}

func TestAuditVerifyAndShow(t *testing.T) {
	d := ownDemo(t)
	if r := runCLI(t, as(d, "viewer"), "", "-c", "heapdump", "--out", t.TempDir()); r.code != exitDenied {
		t.Fatalf("viewer heapdump: got %d", r.code)
	}
	if r := runCLI(t, as(d, "operator"), "", "--reason", "INC-9 slow pages", "-c", "memstats"); r.code != 0 {
		t.Fatalf("operator memstats: got %d %s", r.code, r.stderr)
	}
	log := d.AuditPath
	if r := runCLI(t, nil, "", "audit", "verify", log); r.code != 0 || !strings.HasPrefix(r.stdout, "ok: ") {
		t.Fatalf("verify live log: %d %q %q", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(log)
	lines := strings.SplitAfter(string(b), "\n")
	dir := t.TempDir()
	write := func(name string, ls []string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.Join(ls, "")), 0o600)
		return p
	}
	edited := append([]string(nil), lines...)
	edited[2] = strings.Replace(edited[2], "viewer", "nobody", 1)
	deleted := append(append([]string(nil), lines[:2]...), lines[3:]...)
	torn := append(append([]string(nil), lines...), `{"seq":99,"prev":"00`)
	tests := []struct {
		name string
		file string
		code int
		out  string
	}{
		{"edited", write("edited", edited), exitFailed, "BROKEN: " + filepath.Join(dir, "edited") + ":3: record 3 was changed after it was written"},
		{"deleted", write("deleted", deleted), exitFailed, "BROKEN: " + filepath.Join(dir, "deleted") + ":3: record 3 is missing here"},
		{"torn tail", write("torn", torn), 0, "incomplete tail: "},
		{"empty", write("empty", nil), exitFailed, "no record"},
	}
	for _, tt := range tests {
		r := runCLI(t, nil, "", "audit", "verify", tt.file)
		if r.code != tt.code || !strings.Contains(r.stdout, tt.out) {
			t.Errorf("%s: got %d %q; want %d %q", tt.name, r.code, r.stdout, tt.code, tt.out)
		}
	}

	r := runCLI(t, nil, "", "audit", "show", "--denied", log)
	if r.code != 0 || !strings.Contains(r.stdout, "heapdump") || !strings.Contains(r.stdout, "deny forbidden") || strings.Contains(r.stdout, "memstats") {
		t.Fatalf("show --denied: %d %q", r.code, r.stdout)
	}
	r = runCLI(t, nil, "", "audit", "show", log, "--subject", "operator", "--json")
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var rec audit.Record
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Subject != "operator" {
			t.Fatalf("show --json --subject: line %q: %v", l, err)
		}
		if rec.Kind == audit.KindIntent && rec.Line == "memstats" && rec.Reason != "INC-9 slow pages" {
			t.Fatalf("the reason is not on the intent: %+v", rec)
		}
		n++
	}
	if n < 4 {
		t.Fatalf("show --json --subject operator: %d records", n)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--cmd", "memstats"}, 0, "memstats  [reason: INC-9 slow pages]"},
		{[]string{"--since", "1h"}, 0, "heapdump"},
		{[]string{"--since", "2999-01-01"}, 0, "(no matching record)"},
		{[]string{"--since", "yesterday"}, exitUsage, ""},
		{[]string{"--bogus"}, exitUsage, ""},
	} {
		r := runCLI(t, nil, "", append([]string{"audit", "show", log}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stdout, tt.want) {
			t.Errorf("show %v: got %d %q; want %d %q", tt.args, r.code, r.stdout, tt.code, tt.want)
		}
	}
	for _, args := range [][]string{{"audit"}, {"audit", "verify"}, {"audit", "show"}, {"audit", "frob"}, {"audit", "verify", filepath.Join(dir, "missing")}} {
		if r := runCLI(t, nil, "", args...); r.code != exitUsage {
			t.Errorf("%v: got %d; want %d", args, r.code, exitUsage)
		}
	}
}

// TestLivePolicy: a grant appended to the demo's policy file takes effect
// within 10 s; emptying the file changes nothing.
func TestLivePolicy(t *testing.T) {
	t.Parallel() // its own demo; it waits on a file watcher
	d := ownDemo(t)
	if r := runCLI(t, as(d, "viewer"), "", "-c", "gc"); r.code != exitDenied {
		t.Fatalf("viewer gc before the grant: got %d", r.code)
	}
	f, _ := os.OpenFile(d.PolicyPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("p, viewer, cmd:gc, run, allow\n")
	f.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runCLI(t, as(d, "viewer"), "", "-c", "gc").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the appended grant is not in force after 10s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	os.WriteFile(d.PolicyPath, nil, 0o600)
	// Wait for the emptied file's rejection to be audited, then check the
	// decisions did not change.
	deadline = time.Now().Add(15 * time.Second)
	var r result
	for {
		r = runCLI(t, nil, "", "audit", "show", d.AuditPath)
		if strings.Contains(r.stdout, "rejected") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(r.stdout, "reloaded") || !strings.Contains(r.stdout, "rejected") || !strings.Contains(r.stdout, "policy has no rule") {
		t.Fatalf("policy changes not audited:\n%s", r.stdout)
	}
	if r := runCLI(t, as(d, "viewer"), "", "-c", "gc"); r.code != 0 {
		t.Fatalf("after emptying the file: got %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, as(d, "viewer"), "", "-c", "eval 1"); r.code != exitDenied {
		t.Fatalf("after emptying the file, viewer eval: got %d", r.code)
	}
}

// TestBadTokenFlood: 300 bad-token handshakes from one address; the app
// still serves and the admin's token works within 5 s.
func TestBadTokenFlood(t *testing.T) {
	d := ownDemo(t)
	// No handshake retries: the flood's 429s are what this test counts.
	opts := client.Options{Token: strings.Repeat("0", 64), HandshakeRetries: -1}
	statuses := map[int]int{}
	for i := 0; i < 300; i++ {
		c, err := client.Dial(context.Background(), d.ConsoleURL, opts)
		if err == nil {
			c.Close()
			t.Fatal("a bad token got a session")
		}
		var refused *client.RefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("handshake %d: %v; want a refusal", i, err)
		}
		switch {
		case refused.Status == http.StatusUnauthorized && refused.Code == wire.CodeUnauthenticated && refused.Denied():
		case refused.Status == http.StatusTooManyRequests && refused.Code == wire.CodeThrottled:
		default:
			t.Fatalf("handshake %d: refused with %d %s (%v); want 401 unauthenticated or 429 throttled", i, refused.Status, refused.Code, err)
		}
		statuses[refused.Status]++
	}
	if statuses[http.StatusUnauthorized] == 0 || statuses[http.StatusTooManyRequests] == 0 {
		t.Fatalf("statuses %v: want 401s, then 429s", statuses)
	}
	resp, err := http.Get(d.AppURL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("app after the flood: %v %v", resp, err)
	}
	resp.Body.Close()
	start := time.Now()
	for runCLI(t, as(d, "admin"), "", "-c", "whoami").code != 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("admin locked out for 5s after the flood")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The log holds a handful of records for the 300 attempts, and verifies.
	n := 0
	audit.Scan(d.AuditPath, func(r audit.Record) error {
		if r.Kind == audit.KindHandshake {
			n++
		}
		return nil
	})
	if n > 10 {
		t.Fatalf("%d handshake records for one source; want them aggregated", n)
	}
	if r := runCLI(t, nil, "", "audit", "verify", d.AuditPath); r.code != 0 {
		t.Fatalf("verify: %d %s", r.code, r.stdout)
	}
}

func TestReplay(t *testing.T) {
	d := startDemo(t)
	r := runCLI(t, as(d, "viewer"), "", "-c", "whoami")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	casts, _ := filepath.Glob(filepath.Join(d.TranscriptDir, "*.cast"))
	var found string
	for _, c := range casts {
		rr := runCLI(t, nil, "", "replay", c, "--speed", "0")
		if rr.code != 0 {
			t.Fatalf("replay %s: %d %s", c, rr.code, rr.stderr)
		}
		if strings.Contains(rr.stdout, "viewer> whoami\n") && strings.Contains(rr.stdout, r.stdout) {
			found = c
		}
	}
	if found == "" {
		t.Fatalf("no transcript replays the viewer's whoami (%d files)", len(casts))
	}
	dir := t.TempDir()
	hostile := filepath.Join(dir, "hostile.cast")
	os.WriteFile(hostile, []byte(`{"version":2,"width":80,"height":24,"timestamp":0,"title":"t\u001b]0;x\u0007"}`+"\n"+`[0.1,"o","a\u001b[2Jb\r\n"]`+"\n"+`[0.2,"i","typed"]`+"\n"), 0o600)
	rr := runCLI(t, nil, "", "replay", "--speed", "0", hostile)
	if rr.code != 0 || strings.ContainsRune(rr.stdout+rr.stderr, 0x1b) || !strings.Contains(rr.stdout, `a\x1b[2Jb`) || strings.Contains(rr.stdout, "typed") {
		t.Fatalf("hostile cast: %d %q %q", rr.code, rr.stdout, rr.stderr)
	}
	bad := filepath.Join(dir, "bad.cast")
	os.WriteFile(bad, []byte(`{"version":1}`+"\n"), 0o600)
	badEvent := filepath.Join(dir, "badevent.cast")
	os.WriteFile(badEvent, []byte(`{"version":2}`+"\n[1,2]\n"), 0o600)
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"replay", bad}, exitFailed},
		{[]string{"replay", badEvent, "--speed", "0"}, exitFailed},
		{[]string{"replay", found, "--speed", "-1"}, exitUsage},
		{[]string{"replay", found, "--speed", "NaN"}, exitUsage},
		{[]string{"replay"}, exitUsage},
		{[]string{"replay", filepath.Join(dir, "missing")}, exitUsage},
	} {
		if rr := runCLI(t, nil, "", tt.args...); rr.code != tt.code {
			t.Errorf("%v: got %d; want %d (%s)", tt.args, rr.code, tt.code, rr.stderr)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	n := 0
	bad := func(text string) string { // a policy file
		n++
		p := filepath.Join(dir, strconv.Itoa(n)+".csv")
		os.WriteFile(p, []byte(text), 0o600)
		return p
	}
	pol := filepath.Join(t.TempDir(), "p.csv")
	os.WriteFile(pol, []byte("p, role:ops, cmd:*, run, allow\np, bob, cmd:gc, run, deny\ng, bob, role:ops\n"), 0o600)
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"role:admin", "eval"}, 0, "allow: role:admin eval run\n  by built-in policy.csv:"},
		{[]string{"role:viewer", "pkg:demo"}, exitFailed, "deny: role:viewer pkg:demo import\n  no rule matches"},
		{[]string{"--policy", pol, "bob", "cmd:memstats"}, 0, pol + ":1: p, role:ops, cmd:*, run, allow"},
		{[]string{"bob", "cmd:gc", "--policy", pol}, exitFailed, pol + ":2: p, bob, cmd:gc, run, deny"},
		{[]string{"--policy", pol, "bob", "cmd:gc", "require-reason"}, exitFailed, "no rule matches"},
		{[]string{"bob"}, exitUsage, ""},
		{[]string{"--policy", filepath.Join(t.TempDir(), "none"), "bob", "eval"}, exitUsage, ""},
		// Policies a console refuses are refused here too.
		{[]string{"--policy", bad("p, bob, cmd:gcc, run, allow\n"), "bob", "cmd:gcc"}, exitUsage, ""},
		{[]string{"--policy", bad("p, bob, evl, run, allow\n"), "bob", "evl"}, exitUsage, ""},
		{[]string{"--policy", bad("p, bob, cmd:gc, run, allow"), "bob", "cmd:gc"}, exitUsage, ""},
		{[]string{"--policy", bad("# nothing\n"), "bob", "cmd:gc"}, exitUsage, ""},
		{[]string{"--policy", bad("p, bob, cmd:cache-stats, run, allow\n"), "bob", "cmd:cache-stats"}, exitUsage, ""},
		{[]string{"--command", "cache-stats", "--policy", bad("p, bob, cmd:cache-stats, run, allow\n"), "bob", "cmd:cache-stats"}, 0, "allow"},
	}
	for _, tt := range tests {
		r := runCLI(t, nil, "", append([]string{"policy", "check"}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stdout, tt.out) {
			t.Errorf("%v: got %d %q %q; want %d %q", tt.args, r.code, r.stdout, r.stderr, tt.code, tt.out)
		}
	}
}

func TestTLSFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "ws://127.0.0.1:1/", "--cert", "c.pem", "--key", "k.pem", "-c", "whoami"},
		{"--url", "wss://127.0.0.1:1/", "--cert", "c.pem", "-c", "whoami"},
		{"--url", "wss://127.0.0.1:1/", "--ca", "/nonexistent", "-c", "whoami"},
		{"--reason", "two\nlines", "-c", "whoami"},
	} {
		if r := runCLI(t, nil, "", args...); r.code != exitUsage {
			t.Errorf("%v: got %d; want %d (%s)", args, r.code, exitUsage, r.stderr)
		}
	}
}

// TestAuditShowEscapes: a crafted log cannot send terminal escapes to the
// person reading it.
func TestAuditShowEscapes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(audit.Record{Kind: audit.KindIntent, Session: "s\x1b]0;x\x07", Subject: "v\x1b[2J", Remote: "r\x1b[1m", Request: 1, Line: "memstats\x1b[31m"})
	l.Write(audit.Record{Kind: audit.KindSession, Session: "s\x1b[5m", Outcome: "open\x1b[0m", Message: "m\x1b[K"})
	l.Close()
	r := runCLI(t, nil, "", "audit", "show", path)
	if r.code != 0 || strings.ContainsRune(r.stdout, 0x1b) || !strings.Contains(r.stdout, `\x1b`) {
		t.Fatalf("got %d %q", r.code, r.stdout)
	}
}

// TestRevokedExit3: credentials revoked while a request runs end the
// client with exit 3 (not authenticated), not 1 (the request failed).
func TestRevokedExit3(t *testing.T) {
	t.Parallel() // its own demo; it waits on a file watcher
	d := ownDemo(t)
	done := make(chan result, 1)
	go func() { done <- runCLI(t, as(d, "operator"), "", "-c", "gcwatch") }()
	waitFor(t, "gcwatch running", func() bool {
		b, _ := os.ReadFile(d.AuditPath)
		return strings.Contains(string(b), `"line":"gcwatch"`)
	})
	path := filepath.Join(d.Dir, "tokens")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if !strings.HasPrefix(l, "operator ") {
			keep = append(keep, l)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(keep, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.code != exitDenied || !strings.Contains(r.stderr, "revoked") {
			t.Fatalf("got %d, stderr %q; want %d saying revoked", r.code, r.stderr, exitDenied)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the client did not end within 60s of the revocation")
	}
}

// waitFor waits up to 60 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 60s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
