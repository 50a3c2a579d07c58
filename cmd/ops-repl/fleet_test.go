package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
