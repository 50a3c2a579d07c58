package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/demo"
)

var (
	demoOnce sync.Once
	theDemo  *demo.Demo
	demoErr  error
)

// startDemo runs one demo service for the package's tests.
func startDemo(t *testing.T) *demo.Demo {
	t.Helper()
	demoOnce.Do(func() {
		theDemo, demoErr = demo.Start(context.Background(), demo.Options{Dir: filepath.Join(os.TempDir(), "ops-repl-cmd-test-"+time.Now().Format("150405.000000"))})
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return theDemo
}

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Unsetenv(asCLI)
		main() // the binary as the ops-repl command (pty_test.go)
	}
	sandboxMain()
	code := m.Run()
	if theDemo != nil {
		theDemo.Close()
		os.RemoveAll(theDemo.Dir)
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	err := run(context.Background(), args, getenv, strings.NewReader(stdin), &out, &errb)
	if err != nil {
		errb.WriteString(err.Error())
	}
	return result{code: exitCode(err), stdout: out.String(), stderr: errb.String()}
}

func TestExitCodes(t *testing.T) {
	d := startDemo(t)
	dl := t.TempDir()
	tokFile := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tokFile, []byte(d.Tokens["viewer"]+"\n"), 0o600)
	u := d.ConsoleURL
	throttler := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, "throttled: too many failed authentications from your address\n")
	}))
	defer throttler.Close()
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "viewer memstats", args: []string{"--url", u, "--token", d.Tokens["viewer"], "-c", "memstats"}, code: 0, stdout: "heap live"},
		{name: "viewer via token file", args: []string{"--url", u, "--token-file", tokFile, "-c", "whoami"}, code: 0, stdout: "viewer"},
		{name: "viewer via env", env: map[string]string{"OPS_REPL_URL": u, "OPS_REPL_TOKEN": d.Tokens["viewer"]}, args: []string{"-c", "whoami"}, code: 0, stdout: "viewer"},
		{name: "viewer heapdump", args: []string{"--url", u, "--token", d.Tokens["viewer"], "-c", "heapdump"}, code: 3, stderr: "heapdump"},
		{name: "viewer eval", args: []string{"--url", u, "--token", d.Tokens["viewer"], "-c", "1+2"}, code: 3, stderr: "forbidden"},
		{name: "admin 1+2", args: []string{"--url", u, "--token", d.Tokens["admin"], "-c", "1+2"}, code: 0, stdout: "3\n"},
		{name: "admin exports", args: []string{"--url", u, "--token", d.Tokens["admin"], "-c", "demo.CacheLen() >= 0"}, code: 0, stdout: "true"},
		{name: "eval error", args: []string{"--url", u, "--token", d.Tokens["admin"], "-c", "undefinedThing + 1"}, code: 1, stderr: "eval"},
		{name: "bad command flag", args: []string{"--url", u, "--token", d.Tokens["viewer"], "-c", "memstats --nope"}, code: 1, stderr: "bad_request"},
		{name: "stops at first failure", args: []string{"--url", u, "--token", d.Tokens["viewer"], "-c", "gc", "-c", "whoami"}, code: 3, stderr: "1 remaining line"},
		{name: "incomplete -c", args: []string{"--url", u, "--token", d.Tokens["admin"], "-c", "for {"}, code: 1, stderr: "incomplete"},
		{name: "no token", args: []string{"--url", u, "-c", "memstats"}, code: 3, stderr: "no token given"},
		{name: "bad token", args: []string{"--url", u, "--token", "not-a-valid-token-at-all", "-c", "memstats"}, code: 3, stderr: "unauthenticated"},
		{name: "unreachable", args: []string{"--url", "ws://127.0.0.1:1/", "--token", "x", "-c", "memstats"}, code: 4, stderr: "cannot connect"},
		{name: "not a console", args: []string{"--url", strings.Replace(d.AppURL, "http", "ws", 1), "--token", d.Tokens["viewer"], "-c", "memstats"}, code: 4},
		{name: "bad scheme", args: []string{"--url", "ftp://x/", "-c", "memstats"}, code: 2, stderr: "ws://"},
		{name: "token in url", args: []string{"--url", u + "?token=abc", "-c", "memstats"}, code: 2, stderr: "never sent in URLs"},
		{name: "no scheme", args: []string{"--url", "127.0.0.1:7227", "-c", "memstats"}, code: 2, stderr: "ws://127.0.0.1:7227"},
		{name: "wrong path", args: []string{"--url", strings.Replace(d.AppURL, "http", "ws", 1) + "nope", "--token", d.Tokens["viewer"], "-c", "memstats"}, code: 4, stderr: "check the URL's path"},
		{name: "throttled handshake", args: []string{"--url", throttler.URL, "--token", "x", "-c", "memstats"}, code: 3, stderr: "throttled"},
		{name: "version", args: []string{"--version"}, code: 0, stdout: "protocol ops-repl.v1"},
		{name: "unknown flag", args: []string{"--nope"}, code: 2},
		{name: "stray argument", args: []string{"memstats"}, code: 2, stderr: "unexpected argument"},
		{name: "-c and -f", args: []string{"-c", "x", "-f", "y"}, code: 2},
		{name: "token and token-file", args: []string{"--token", "a", "--token-file", tokFile, "-c", "x"}, code: 2},
		{name: "missing token file", args: []string{"--token-file", "/nonexistent/x", "-c", "x"}, code: 2},
		{name: "help", args: []string{"--help"}, code: 0, stdout: "Exit codes"},
		{name: "app command", args: []string{"--url", u, "--token", d.Tokens["viewer"], "-c", "cache-stats"}, code: 0, stdout: "cache entries"},
		{name: "operator heapdump", args: []string{"--url", u, "--token", d.Tokens["operator"], "--out", dl, "-c", "heapdump"}, code: 0, stdout: "saved " + dl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.env, "", tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit code: got %d; want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Fatalf("stdout: got %q; want it to contain %q", r.stdout, tt.stdout)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Fatalf("stderr: got %q; want it to contain %q", r.stderr, tt.stderr)
			}
		})
	}
	// The operator's download is a gzip'd profile, mode 0600, no temp files left.
	files, _ := filepath.Glob(filepath.Join(dl, "*"))
	hidden, _ := filepath.Glob(filepath.Join(dl, ".*"))
	if len(files) != 1 || len(hidden) != 0 || !strings.HasPrefix(filepath.Base(files[0]), "heap-") {
		t.Fatalf("download folder: got %v + %v; want one heap-*.pb.gz", files, hidden)
	}
	st, _ := os.Stat(files[0])
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("download mode: got %v; want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(files[0])
	if _, err := gzip.NewReader(bytes.NewReader(b)); err != nil {
		t.Fatalf("download is not gzip: %v", err)
	}
	// The audit has the requests, denied ones included, and no token.
	audit, _ := os.ReadFile(d.AuditPath)
	for _, want := range []string{`"line":"heapdump","object":"cmd:heapdump","decision":"deny"`, `"line":"1+2","object":"eval","decision":"allow"`, `"outcome":"unauthenticated"`} {
		if !bytes.Contains(audit, []byte(want)) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	for s, tok := range d.Tokens {
		if bytes.Contains(audit, []byte(tok)) {
			t.Errorf("audit log contains the %s token", s)
		}
	}
}

func TestFileInput(t *testing.T) {
	d := startDemo(t)
	script := "x := 20\nfor i := 0; i < 2; i++ {\n  x++\n}\n\nfmt.Println(x)\nwhoami\n"
	path := filepath.Join(t.TempDir(), "script")
	os.WriteFile(path, []byte(script), 0o600)
	for _, args := range [][]string{{"-f", path}, {"-f", "-"}, {}} {
		r := runCLI(t, nil, script, append([]string{"--url", d.ConsoleURL, "--token", d.Tokens["admin"]}, args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "22\n") || !strings.Contains(r.stdout, "subject  admin") {
			t.Fatalf("%v: code %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestJSONOutput(t *testing.T) {
	d := startDemo(t)
	r := runCLI(t, nil, "", "--url", d.ConsoleURL, "--token", d.Tokens["operator"], "--json", "--out", t.TempDir(), "-c", "whoami", "-c", "heapdump")
	if r.code != 0 {
		t.Fatalf("code %d: %s", r.code, r.stderr)
	}
	var types []string
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("--json line %q is not JSON: %v", sc.Text(), err)
		}
		types = append(types, ev["type"].(string))
	}
	got := strings.Join(types, ",")
	if want := "hello,output,result,file,saved,result"; got != want {
		t.Fatalf("--json event types: got %s; want %s", got, want)
	}
}

func TestTokenNew(t *testing.T) {
	r := runCLI(t, nil, "", "token", "new", "alice")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 || len(lines[0]) != 64 || !strings.HasPrefix(lines[1], "alice ") {
		t.Fatalf("token new: code %d stdout %q", r.code, r.stdout)
	}
	if strings.Contains(lines[1], lines[0]) {
		t.Fatal("the token-file line contains the token")
	}
	for _, args := range [][]string{{"token"}, {"token", "new"}, {"token", "new", "role:admin"}, {"token", "old", "x"}} {
		if r := runCLI(t, nil, "", args...); r.code != 2 {
			t.Errorf("%v: got exit %d; want 2", args, r.code)
		}
	}
}

func TestDemoServeReadyLine(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--serve", "--dir", t.TempDir()}, func(string) string { return "" }, strings.NewReader(""), pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ready readyLine
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ready); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	if !strings.HasPrefix(ready.URL, "ws://127.0.0.1:") || !strings.HasPrefix(ready.App, "http://127.0.0.1:") ||
		ready.Audit == "" || ready.Policy == "" || len(ready.Tokens) != 3 {
		t.Fatalf("ready line: %+v", ready)
	}
	r := runCLI(t, nil, "", "--url", ready.URL, "--token", ready.Tokens["viewer"], "-c", "memstats")
	if r.code != 0 {
		t.Fatalf("memstats against the served demo: %d %s", r.code, r.stderr)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo --serve returned %v; want nil (exit 0)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo --serve did not stop")
	}
}

// TestClientImports keeps the client build free of the interpreter and
// Casbin: go build -tags nodemo ./cmd/ops-repl links neither.
func TestClientImports(t *testing.T) {
	for _, args := range [][]string{
		{"list", "-deps", "-tags", "nodemo", "."}, // the client-only CLI
		{"list", "-deps", "../../client"},         // the client package
	} {
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			t.Skipf("go list: %v: %s", err, out)
		}
		for _, bad := range []string{"github.com/traefik/yaegi", "github.com/casbin/casbin", "github.com/opsrepl/opsrepl/interp", "github.com/opsrepl/opsrepl/policy"} {
			if strings.Contains(string(out), bad) {
				t.Errorf("go %s: depends on %s", strings.Join(args, " "), bad)
			}
		}
	}
}

func TestSafeText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text\n\twith tab", "plain text\n\twith tab"},
		{"ünïcödé 日本", "ünïcödé 日本"},
		{"\x1b]0;PWNED\x07\x1b[2J", `\x1b]0;PWNED\x07\x1b[2J`},
		{"a\rb", `a\x0db`},
		{"\u009b31m", `\x9b31m`},
		{"abc\u202Edef", `abc\u202edef`},
		{"\x7f", `\x7f`},
	}
	for _, tt := range tests {
		if got := safeText(tt.in); got != tt.want {
			t.Errorf("safeText(%q): got %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestTerminalEscapesFromServer: output from the service (here a cache
// key an unauthenticated HTTP client stored) cannot drive the terminal.
func TestTerminalEscapesFromServer(t *testing.T) {
	d := startDemo(t)
	req, _ := http.NewRequest(http.MethodPut, d.AppURL+"cache/%1b%5d0;PWNED%07", strings.NewReader("v"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := runCLI(t, nil, "", "--url", d.ConsoleURL, "--token", d.Tokens["admin"], "-c", `fmt.Println(demo.CacheKeys(1))`)
	if r.code != 0 || strings.ContainsRune(r.stdout, 0x1b) || !strings.Contains(r.stdout, `\x1b]0;PWNED\x07`) {
		t.Fatalf("code %d, stdout %q", r.code, r.stdout)
	}
}

func TestTerminatedStopsLines(t *testing.T) {
	d := startDemo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	err := run(ctx, []string{"--url", d.ConsoleURL, "--token", d.Tokens["admin"], "-c", "time.Sleep(time.Minute)", "-c", `fmt.Println("second")`},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if !errors.Is(err, errTerminated) || exitCode(err) != exitFailed {
		t.Fatalf("got %v; want errTerminated", err)
	}
	if time.Since(start) > 30*time.Second || strings.Contains(out.String(), "second") { // not the minute
		t.Fatalf("after termination: took %v, stdout %q", time.Since(start), out.String())
	}
}

func TestScrubEnv(t *testing.T) {
	t.Setenv("YAEGI_DOT_CMD", "touch /tmp/pwned")
	t.Setenv("YAEGI_AST_DOT", "1")
	t.Setenv("OPS_REPL_URL", "ws://keep/")
	scrubEnv()
	for _, k := range []string{"YAEGI_DOT_CMD", "YAEGI_AST_DOT"} {
		if _, ok := os.LookupEnv(k); ok {
			t.Errorf("%s survived scrubEnv", k)
		}
	}
	if os.Getenv("OPS_REPL_URL") != "ws://keep/" {
		t.Error("scrubEnv removed a variable it should keep")
	}
}

func TestYaegiLogFilter(t *testing.T) {
	var buf bytes.Buffer
	l := log.New(yaegiLogFilter{&buf}, "", log.LstdFlags)
	l.Print("nil type")
	l.Print("nil reflect type")
	l.Print("something else")
	if got := buf.String(); strings.Contains(got, "nil type") || !strings.Contains(got, "something else") {
		t.Fatalf("filtered log: %q", got)
	}
}
