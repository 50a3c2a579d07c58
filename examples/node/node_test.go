// Package node_test runs the Node.js example client (client.mjs) against the
// demo service, so the example cannot drift from the protocol.
package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

type demo struct {
	URL    string `json:"url"`
	Tokens struct {
		Viewer   string `json:"viewer"`
		Operator string `json:"operator"`
		Admin    string `json:"admin"`
	} `json:"tokens"`
}

func TestNodeClient(t *testing.T) {
	// .ci/run sets OPS_REPL_REQUIRE_NODE=1: there, a missing Node.js or
	// ws fails the test instead of skipping it.
	skip := t.Skip
	if os.Getenv("OPS_REPL_REQUIRE_NODE") == "1" {
		skip = t.Fatal
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not on PATH: install Node.js, then run npm ci in examples/node")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "ws", "package.json")); err != nil {
		skip("examples/node/node_modules/ws is missing: run npm ci in examples/node")
	}
	d := startDemo(t)

	// run runs the client with the token in its environment, and returns its
	// exit code, standard output and standard error.
	run := func(t *testing.T, token string, args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{"client.mjs"}, args...)...)
		cmd.Env = append(withoutToken(os.Environ()), "OPS_REPL_TOKEN="+token)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() >= 0 {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("node client.mjs %q: %v\nstderr:\n%s", args, err, &stderr)
		}
		return code, stdout.String(), stderr.String()
	}
	expect := func(t *testing.T, wantCode int, args []string, gotCode int, stdout, stderr string, patterns ...string) {
		t.Helper()
		if gotCode != wantCode {
			t.Fatalf("node client.mjs %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, gotCode, wantCode, stdout, stderr)
		}
		for _, p := range patterns {
			out, re := stdout, p
			if strings.HasPrefix(p, "stderr:") {
				out, re = stderr, strings.TrimPrefix(p, "stderr:")
			}
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("node client.mjs %q: output does not match %q\nstdout:\n%s\nstderr:\n%s", args, re, stdout, stderr)
			}
		}
	}
	check := func(t *testing.T, token string, wantCode int, args []string, patterns ...string) string {
		t.Helper()
		code, stdout, stderr := run(t, token, args...)
		expect(t, wantCode, args, code, stdout, stderr, patterns...)
		return stdout
	}

	t.Run("lines", func(t *testing.T) {
		check(t, d.Tokens.Admin, 0, []string{d.URL, "whoami", "memstats", "1+2"},
			`(?m)^subject\s+admin$`,
			`(?m)^heap live \(marked at last GC\)\s+\d+(\.\d+)? (B|KiB|MiB|GiB)\s`,
			`(?m)^3$`,
			`stderr:connected: subject admin`)
	})
	t.Run("multi-line Go and completion", func(t *testing.T) {
		check(t, d.Tokens.Admin, 0, []string{"--complete", "fmt.Println(strings.To", d.URL,
			"func f() int {", "return 41 + 1", "}", "f()"},
			`(?m)^completion: fmt\.Println\(strings\.ToUpper$`,
			`(?m)^42$`)
	})
	t.Run("terminal escapes shown, not obeyed", func(t *testing.T) {
		out := check(t, d.Tokens.Admin, 0, []string{d.URL, `fmt.Print("title\x1b]0;PWNED\x07 clear\x1b[2J")`},
			`title\\u001b\]0;PWNED\\u0007 clear\\u001b\[2J`)
		if strings.ContainsAny(out, "\x1b\x07") {
			t.Fatalf("raw control characters reached standard output: %q", out)
		}
	})
	t.Run("failure", func(t *testing.T) {
		check(t, d.Tokens.Admin, 1, []string{d.URL, "whoami", "nosuchcommand", "1+2"},
			`(?m)^subject\s+admin$`,
			`stderr:(?m)^error (eval|bad_request): .*nosuchcommand`)
	})
	t.Run("forbidden", func(t *testing.T) {
		check(t, d.Tokens.Viewer, 1, []string{d.URL, "heapdump"},
			`stderr:(?m)^error forbidden: `)
	})
	t.Run("cancel", func(t *testing.T) {
		check(t, d.Tokens.Admin, 1, []string{"--cancel-after", "1", d.URL, "gcwatch"},
			`stderr:(?m)^error canceled: `)
	})
	t.Run("bad token", func(t *testing.T) {
		check(t, "not-a-token", 3, []string{d.URL, "whoami"},
			`stderr:refused: HTTP 401: unauthenticated`)
	})
	t.Run("query string", func(t *testing.T) {
		check(t, d.Tokens.Admin, 4, []string{d.URL + "?token=x", "whoami"},
			`stderr:refused: HTTP 400: bad_request`)
	})
	t.Run("heapdump", func(t *testing.T) {
		out := t.TempDir()
		stdout := check(t, d.Tokens.Admin, 0, []string{"--out", out, d.URL, "heapdump"},
			`(?m)^file heap-\S+\.pb\.gz \d+ bytes sha256 [0-9a-f]{64} verified$`,
			`(?m)^saved `)
		m := regexp.MustCompile(`(?m)^file (\S+) \d+ bytes sha256 ([0-9a-f]{64}) verified$`).FindStringSubmatch(stdout)
		if m == nil {
			return
		}
		path := filepath.Join(out, m[1])
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != m[2] {
			t.Errorf("%s: sha256 %x, the client reported %s", path, sum, m[2])
		}
		if fi, err := os.Stat(path); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode())
		}
	})
}

// startDemo builds ops-repl, starts "ops-repl demo --serve" and reads its
// ready line. The server is stopped with SIGINT when the test ends.
func startDemo(t *testing.T) demo {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "ops-repl")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ops-repl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ops-repl: %v\n%s", err, out)
	}

	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "demo.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "demo", "--serve", "--dir", dir)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo server: %v", err)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("demo server: still running a minute after SIGINT; killed")
		}
		logFile.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("demo server log:\n%s", log)
			}
		}
	})

	ready := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		ready <- line
		_, _ = r.WriteTo(io.Discard) // nothing more is expected; never block the server
		done <- cmd.Wait()
	}()
	var line string
	select {
	case line = <-ready:
	case <-time.After(2 * time.Minute):
		t.Fatal("demo server: no ready line within 2 minutes")
	}
	var d demo
	if err := json.Unmarshal([]byte(line), &d); err != nil || d.URL == "" || d.Tokens.Admin == "" || d.Tokens.Viewer == "" {
		t.Fatalf("demo server: ready line %q: %v", line, err)
	}
	return d
}

func withoutToken(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OPS_REPL_TOKEN=") {
			out = append(out, kv)
		}
	}
	return out
}
