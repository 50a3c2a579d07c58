package fleet_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/fleet"
	"github.com/opsrepl/opsrepl/internal/dnstest"
	"github.com/opsrepl/opsrepl/policy"
)

func urls(ts []fleet.Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.URL)
	}
	return out
}

func TestDiscover(t *testing.T) {
	res := dnstest.Resolver(dnstest.Server(t,
		"api.fleet.test. 5 IN A 10.0.0.1", "api.fleet.test. 5 IN A 10.0.0.2", "api.fleet.test. 5 IN AAAA fd00::3",
		"_ops-repl._tcp.api.fleet.test. 5 IN SRV 0 0 7001 a.fleet.test.",
		"_ops-repl._tcp.api.fleet.test. 5 IN SRV 0 0 7002 b.fleet.test."))
	dir := t.TempDir()
	lines := filepath.Join(dir, "targets.txt")
	os.WriteFile(lines, []byte("# replicas\nws://10.1.0.1:7227/ops-repl\n\nwss://h.example:443/ops-repl # tls\n"), 0o600)
	sd := filepath.Join(dir, "sd.json")
	os.WriteFile(sd, []byte(`[{"targets": ["10.2.0.1:7227", "10.2.0.2:7227"], "labels": {"env": "prod"}},
		{"targets": ["10.3.0.1:8443"], "labels": {"__scheme__": "wss", "__console_path__": "/admin/ops-repl"}}]`), 0o600)

	tests := []struct {
		spec string
		want []string
		err  string
	}{
		{spec: "ws://127.0.0.1:7227/ops-repl, ws://127.0.0.2:7227/ops-repl,ws://127.0.0.1:7227/ops-repl",
			want: []string{"ws://127.0.0.1:7227/ops-repl", "ws://127.0.0.2:7227/ops-repl"}},
		{spec: "file:" + lines, want: []string{"ws://10.1.0.1:7227/ops-repl", "wss://h.example:443/ops-repl"}},
		{spec: "file:" + sd, want: []string{"ws://10.2.0.1:7227/ops-repl", "ws://10.2.0.2:7227/ops-repl", "wss://10.3.0.1:8443/admin/ops-repl"}},
		{spec: "dns:api.fleet.test:7227", want: []string{"ws://10.0.0.1:7227/ops-repl", "ws://10.0.0.2:7227/ops-repl", "ws://[fd00::3]:7227/ops-repl"}},
		{spec: "dnssrv:api.fleet.test", want: []string{"ws://a.fleet.test:7001/ops-repl", "ws://b.fleet.test:7002/ops-repl"}},
		{spec: "dns:missing.fleet.test:7227", err: "no such host"},
		{spec: "dns:api.fleet.test", err: "dns:NAME:PORT"},
		{spec: "dns:api.fleet.test:http", err: "port"},
		{spec: "http://x:1/", err: "want a ws://"},
		{spec: "ws://", err: "not a ws://"},
		{spec: "file:" + filepath.Join(dir, "none"), err: "no such file"},
		{spec: "", err: "none given"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := fleet.Discover(context.Background(), tt.spec, fleet.DiscoverOptions{Resolver: res})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, %v; want an error with %q", urls(got), err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := urls(got); !slices.Equal(g, tt.want) {
				t.Fatalf("got %q; want %q", g, tt.want)
			}
		})
	}

	// A file is read again on each call.
	os.WriteFile(lines, []byte("ws://10.9.0.9:7227/ops-repl\n"), 0o600)
	got, err := fleet.Discover(context.Background(), "file:"+lines, fleet.DiscoverOptions{})
	if err != nil || len(got) != 1 || got[0].URL != "ws://10.9.0.9:7227/ops-repl" || got[0].Source != "file:"+lines {
		t.Fatalf("after the file changed: %+v, %v", got, err)
	}
}

// lockedBuffer is an audit log in memory.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// console starts a console with the default policy and the subjects
// admin and viewer, and returns its URL, tokens and audit log.
func startConsole(t *testing.T) (string, map[string]string, *lockedBuffer) {
	t.Helper()
	toks := map[string]string{}
	for _, s := range []string{"admin", "viewer", "nobody"} {
		tok, _, err := auth.NewToken(s)
		if err != nil {
			t.Fatal(err)
		}
		toks[s] = tok
	}
	tokens, err := auth.NewTokens(toks)
	if err != nil {
		t.Fatal(err)
	}
	enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy + "g, admin, role:admin\ng, viewer, role:viewer\n"})
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	srv, err := console.New(console.Options{Authenticator: tokens, Authorizer: enf, Audit: audit.New(log), LogLevel: new(slog.LevelVar)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return "ws" + strings.TrimPrefix(hs.URL, "http"), toks, log
}

func TestRun(t *testing.T) {
	var targets []fleet.Target
	var logs []*lockedBuffer
	tokens := map[string]string{}
	for i := 0; i < 5; i++ {
		u, toks, log := startConsole(t)
		targets = append(targets, fleet.Target{URL: u, Source: u})
		switch i {
		case 3:
			tokens[u] = toks["viewer"] // may not use loglevel: refused
		case 4:
			tokens[u] = toks["nobody"] // granted nothing: no session
		default:
			tokens[u] = toks["admin"]
		}
		logs = append(logs, log)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "ws://" + ln.Addr().String() + "/ops-repl"
	ln.Close()
	targets = append(targets, fleet.Target{URL: dead, Source: dead})

	var progress []int
	results := fleet.Run(context.Background(), targets, []string{"whoami", "loglevel"}, fleet.Options{
		Fleet:       "f-test-1",
		Token:       func(t fleet.Target) string { return tokens[t.URL] },
		Concurrency: 2,
		Timeout:     20 * time.Second,
		Client:      client.Options{HandshakeRetries: -1},
		Progress:    func(done, total int) { progress = append(progress, done) },
	})
	if len(results) != len(targets) || !slices.Equal(progress, []int{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("%d results, progress %v", len(results), progress)
	}
	want := []fleet.Class{fleet.OK, fleet.OK, fleet.OK, fleet.Refused, fleet.Refused, fleet.Unreachable}
	for i, r := range results {
		if r.Target != targets[i] || r.Class != want[i] {
			t.Errorf("target %d: class %v (%v); want %v", i, r.Class, r.Err, want[i])
		}
		if r.Class == fleet.OK && (!strings.Contains(r.Output, "subject  admin") || len(r.Finals) != 2) {
			t.Errorf("target %d: output %q, %d finals", i, r.Output, len(r.Finals))
		}
	}
	if w := fleet.Worst(results); w != fleet.Unreachable {
		t.Errorf("worst: %v", w)
	}
	for i, log := range logs[:4] {
		if !strings.Contains(log.String(), `"fleet":"f-test-1"`) {
			t.Errorf("target %d's audit log does not name the fleet request:\n%s", i, log.String())
		}
	}
}

func TestRunFailed(t *testing.T) {
	u, toks, _ := startConsole(t)
	results := fleet.Run(context.Background(), []fleet.Target{{URL: u, Source: u}}, []string{"memstats --count 1", "whoami"},
		fleet.Options{Client: client.Options{Token: toks["admin"]}})
	if r := results[0]; r.Class != fleet.Failed || len(r.Finals) != 1 || !strings.Contains(r.Err.Error(), "--count") {
		t.Fatalf("got %v (%v), %d finals; want failed at the first line", r.Class, r.Err, len(r.Finals))
	}
}

// TestRunSilence: a target that never answers counts as unreachable after
// the timeout; a line that keeps reporting runs past it.
func TestRunSilence(t *testing.T) {
	u, toks, _ := startConsole(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never answered
		}
	}()
	mute := "ws://" + ln.Addr().String() + "/ops-repl"
	results := fleet.Run(context.Background(), []fleet.Target{{URL: u}, {URL: mute}}, []string{"memstats --watch 100ms --count 8"},
		fleet.Options{Client: client.Options{Token: toks["admin"]}, Timeout: 500 * time.Millisecond})
	if r := results[0]; r.Class != fleet.OK || strings.Count(r.Output, "heap live") != 8 {
		t.Fatalf("a line reporting every 100ms for 800ms, with a 500ms timeout: %v (%v)\n%s", r.Class, r.Err, r.Output)
	}
	if r := results[1]; r.Class != fleet.Unreachable || !errors.Is(r.Err, fleet.ErrSilent) {
		t.Fatalf("a target that never answers: %v (%v)", r.Class, r.Err)
	}
}
