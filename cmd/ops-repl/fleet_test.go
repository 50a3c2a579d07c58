package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/internal/dnstest"
)

// TestFleet runs lines on two demos and a port nobody listens on, as an
// operator would: merged tables, the summary, the exit code of the worst
// target, --yes before Go, and one fleet id joining the targets' audit logs.
func TestFleet(t *testing.T) {
	t.Parallel()
	a, b := ownDemo(t), ownDemo(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "ws://" + ln.Addr().String() + "/ops-repl"
	ln.Close()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(fmt.Sprintf("%s %s\n%s %s\n", a.ConsoleURL, a.Tokens["operator"], b.ConsoleURL, b.Tokens["viewer"])), 0o600)
	list := filepath.Join(dir, "targets")
	os.WriteFile(list, []byte(a.ConsoleURL+"\n"+b.ConsoleURL+"\n"), 0o600)
	env := map[string]string{"XDG_DATA_HOME": dir}

	r := runCLI(t, env, "", "--targets", "file:"+list, "--target-tokens", tokens, "-c", "memstats")
	if r.code != 0 || strings.Count(r.stdout, " ok\n") != 2 || !strings.Contains(r.stdout, "HEAP LIVE") {
		t.Fatalf("memstats on two demos: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "2 targets: 2 ok, 0 failed, 0 refused, 0 unreachable") {
		t.Fatalf("summary: %s", r.stderr)
	}

	// heapdump: the operator's target saves into a folder of its own, the
	// viewer's refuses.
	r = runCLI(t, env, "", "--targets", a.ConsoleURL+","+b.ConsoleURL, "--target-tokens", tokens, "-c", "heapdump")
	if r.code != exitDenied || !strings.Contains(r.stdout, "refused: forbidden") {
		t.Fatalf("heapdump: exit %d; want %d\n%s\n%s", r.code, exitDenied, r.stdout, r.stderr)
	}
	saved, _ := filepath.Glob(filepath.Join(dir, "ops-repl", "downloads", targetDir(a.ConsoleURL), "heap-*.pb.gz"))
	if len(saved) != 1 {
		t.Fatalf("the operator's heap profile is not in its target's folder: %v\n%s", saved, r.stderr)
	}

	r = runCLI(t, env, "", "--targets", a.ConsoleURL+","+dead, "--target-tokens", tokens, "-c", "whoami")
	if r.code != exitConnect || !strings.Contains(r.stdout, "unreachable") || !strings.Contains(r.stdout, "operator") {
		t.Fatalf("with a dead target: exit %d; want %d\n%s", r.code, exitConnect, r.stdout)
	}

	// Go, or a line that may change the targets, needs --yes.
	for _, line := range []string{"1+2", "gc", "setgc 50", "heapdump --full", "goroutines --full", "loglevel debug", "cache-stats"} {
		if r := runCLI(t, env, "", "--targets", a.ConsoleURL, "--target-tokens", tokens, "-c", line); r.code != exitUsage || !strings.Contains(r.stderr, "--yes") {
			t.Errorf("%q without --yes: exit %d %s", line, r.code, r.stderr)
		}
	}
	r = runCLI(t, env, "", "--targets", a.ConsoleURL, "--target-tokens", tokens, "--yes", "-c", "gc")
	if r.code != 0 {
		t.Fatalf("gc --yes: exit %d %s", r.code, r.stderr)
	}
	id := regexp.MustCompile(`fleet request (f-[0-9a-f]{16})`).FindStringSubmatch(r.stderr)
	if id == nil {
		t.Fatalf("no fleet id in %q", r.stderr)
	}

	// One fleet id across the targets' logs.
	r = runCLI(t, env, "", "--targets", a.ConsoleURL+","+b.ConsoleURL, "--target-tokens", tokens, "-c", "buildinfo")
	id = regexp.MustCompile(`fleet request (f-[0-9a-f]{16})`).FindStringSubmatch(r.stderr)
	if r.code != 0 || id == nil {
		t.Fatalf("buildinfo: exit %d %s", r.code, r.stderr)
	}
	r = runCLI(t, nil, "", "audit", "show", "--fleet", id[1], a.AuditPath, b.AuditPath)
	if r.code != 0 || strings.Count(r.stdout, "buildinfo") != 2 || !strings.Contains(r.stdout, a.AuditPath) || !strings.Contains(r.stdout, b.AuditPath) {
		t.Fatalf("audit show --fleet: exit %d\n%s", r.code, r.stdout)
	}
}

// TestFleetDiscovery: targets found by DNS SRV through --resolver (their
// names resolved by the same server), and by a Prometheus file_sd file.
func TestFleetDiscovery(t *testing.T) {
	t.Parallel()
	a, b := ownDemo(t), ownDemo(t)
	port := func(raw string) string {
		u, _ := client.ParseURL(raw)
		return u.Port()
	}
	dns := dnstest.Server(t,
		"_ops-repl._tcp.api.fleet.test. 5 IN SRV 0 0 "+port(a.ConsoleURL)+" a.fleet.test.",
		"_ops-repl._tcp.api.fleet.test. 5 IN SRV 0 0 "+port(b.ConsoleURL)+" b.fleet.test.",
		"a.fleet.test. 5 IN A 127.0.0.1", "b.fleet.test. 5 IN A 127.0.0.1")
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(fmt.Sprintf("ws://a.fleet.test:%s/ops-repl %s\nws://b.fleet.test:%s/ops-repl %s\n",
		port(a.ConsoleURL), a.Tokens["viewer"], port(b.ConsoleURL), b.Tokens["viewer"])), 0o600)
	r := runCLI(t, nil, "", "--targets", "dnssrv:api.fleet.test", "--resolver", dns, "--target-tokens", tokens, "-c", "whoami")
	if r.code != 0 || strings.Count(r.stdout, " ok\n") != 2 || !strings.Contains(r.stdout, "ws://a.fleet.test:") {
		t.Fatalf("dnssrv: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	sd := filepath.Join(dir, "sd.json")
	os.WriteFile(sd, []byte(fmt.Sprintf(`[{"targets": ["127.0.0.1:%s", "127.0.0.1:%s"], "labels": {"job": "api"}}]`, port(a.ConsoleURL), port(b.ConsoleURL))), 0o600)
	os.WriteFile(tokens, []byte(fmt.Sprintf("%s %s\n%s %s\n", a.ConsoleURL, a.Tokens["admin"], b.ConsoleURL, b.Tokens["admin"])), 0o600)
	r = runCLI(t, nil, "", "--targets", "file:"+sd, "--target-tokens", tokens, "--json", "-c", "buildinfo")
	if r.code != 0 {
		t.Fatalf("file_sd: exit %d\n%s", r.code, r.stderr)
	}
	var n int
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["class"] != "ok" || !strings.Contains(fmt.Sprint(m["output"]), "go1.") || m["fleet"] == "" {
			t.Fatalf("--json line %q: %v", line, err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d JSON lines; want one a target", n)
	}
	if r := runCLI(t, nil, "", "--targets", "dnssrv:api.fleet.test", "--resolver", "nonsense", "-c", "whoami"); r.code != exitUsage {
		t.Fatalf("a bad --resolver: exit %d", r.code)
	}
}

func TestFleetRows(t *testing.T) {
	build := "go\tgo1.26.8\npath\tx/cmd\nmain\tgithub.com/x/y\tv1.4.2\nbuild\tvcs.revision=0123456789abcdef0123\n"
	if got := buildinfoRow(build); strings.Join(got, "|") != "go1.26.8|v1.4.2|0123456789ab" {
		t.Errorf("buildinfo row: %q", got)
	}
	leak := "watching…\n\nverdict: LIKELY LEAK: the live heap grows steadily after each GC cycle\n\nevidence over 12 GC cycles in 1m0s:\n  live heap trend   +1.0 MiB per minute, +85.3 KiB per cycle (t 9.1, R² 0.97; mean live 20.0 MiB)\n\ntop growing allocation sites (in-use heap, end minus start):\n  1. +12.0 MiB  main.leakRequestLog\n     main.handle > main.leakRequestLog\n  2. +1.0 MiB   bytes.growSlice\n"
	if got := leakcheckRow(leak); got[0] != "LIKELY LEAK" || !strings.HasPrefix(got[1], "+1.0 MiB per minute") || got[2] != "main.leakRequestLog (+12.0 MiB)" {
		t.Errorf("leakcheck row: %q", got)
	}
	for line, want := range map[string]bool{"memstats": false, "goroutines": false, "goroutines --full --yes": true, "heapdump --gc": false,
		"heapdump --full --yes": true, "loglevel": false, "loglevel debug": true, "1+2": true, "eval gc := 1": true, "setgc 50": true, "reset": true, "": false} {
		if needsYes(line) != want {
			t.Errorf("needsYes(%q) = %v", line, !want)
		}
	}
}
