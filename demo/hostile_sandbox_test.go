package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/sandbox"
)

const hostEnv = "OPSREPL_HOSTILE_HOST"

// childOnlyCases are snippets that only the process boundary stops:
// evaluated inside the service, they would take it down. In a child
// they end the child (a reset), or a guard in the child stops them first.
var childOnlyCases = []hostile{
	{"memory kept across evals", "var keep []string\x00" + strings.Repeat("keep = append(keep, strings.Repeat(\"x\", 30<<20)); len(keep) > 0\x00", 40), wire.CodeLimit, "heap"},
}

// hostReady is what the service process of testHostileSandboxed says
// once it serves.
type hostReady struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	Debug string `json:"debug"` // its own state, for the test
}

// hostState is the service process's own account of itself.
type hostState struct {
	Goroutines int    `json:"goroutines"`
	HeapLive   uint64 `json:"heap_live"` // after a collection
	Yaegi      int    `json:"yaegi"`     // goroutines in interpreter code
}

// testHostileSandboxed runs every snippet against one service process,
// evaluating in child processes, as an operator of a real service would.
// After each: the service is alive and a fresh session evaluates 1+2;
// the error is the expected one; nothing was written, dialled or leaked.
// At the end: the service is idle (under 10% of a core over 3 s), holds no
// more memory or goroutines than before, runs no interpreted code, and
// has no interpreter processes but its spare.
func testHostileSandboxed(t *testing.T) {
	e := newHostileEnv(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileHost$")
	cmd.Env = append(os.Environ(), hostEnv+"="+filepath.Join(e.dir, "state"), "OPSREPL_SECRET="+e.secret)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr lockedTail
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the service did not start: %v\n%s", err, stderr.String())
	}
	var ready hostReady
	if err := json.Unmarshal([]byte(line), &ready); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	alive := func(t *testing.T) {
		t.Helper()
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the service process died: %v\n%s", err, stderr.String())
		default:
		}
	}
	// Let the service settle (its spare interpreter process, its first
	// sessions) before measuring where it started.
	c := dialToken(t, ready.URL, ready.Token)
	if v, err := childRunValue(t, c, "1+2"); v != "3" {
		t.Fatalf("1+2 before the cases: %q, %v", v, err)
	}
	c.Close()
	before := settle(t, ready.Debug, nil)

	slots := make(chan struct{}, 4) // cases at a time (the sandbox keeps up to 8 children)
	t.Run("cases", func(t *testing.T) {
		for _, hc := range append(hostileCases[:len(hostileCases):len(hostileCases)], childOnlyCases...) {
			t.Run(hc.name, func(t *testing.T) {
				t.Parallel()
				slots <- struct{}{}
				defer func() { <-slots }()
				mark := filepath.Join(e.dir, strings.ReplaceAll(hc.name, " ", "_")+".MARK")
				c := dialToken(t, ready.URL, ready.Token)
				defer c.Close()
				final, out := runSnippet(t, c, e.source(hc, mark))
				alive(t)
				b, _ := json.Marshal(final)
				e.check(t, hc, final, out+string(b), mark)
				same, _ := childRunValue(t, c, "1+2")
				fresh := dialToken(t, ready.URL, ready.Token)
				defer fresh.Close()
				v, err := childRunValue(t, fresh, "1+2")
				alive(t)
				if same != "3" || v != "3" {
					t.Fatalf("1+2 afterwards: same session %q, fresh session %q (%v); want 3 and 3", same, v, err)
				}
			})
		}
	})
	alive(t)
	after := settle(t, ready.Debug, &before)
	if after.Yaegi != 0 {
		t.Errorf("%d goroutines of the service run interpreter code", after.Yaegi)
	}
	if cpu := cpuOver(t, cmd.Process.Pid, 3*time.Second); cpu > 300*time.Millisecond {
		t.Errorf("the service used %v of CPU over 3 s after the cases; want it idle (under 10%% of a core)", cpu)
	}
	if n := childProcesses(cmd.Process.Pid); n > 1 {
		t.Errorf("the service has %d child processes after every session closed; want at most its spare", n)
	}
	if strings.Contains(stderr.String(), e.secret) {
		t.Error("the secret appeared in the service's output")
	}
}

// settle waits until the service's sessions are gone and its goroutines
// and live heap are back to before (nil: until they stop changing), and
// returns its state then.
func settle(t *testing.T, debugURL string, before *hostState) hostState {
	t.Helper()
	var st hostState
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(debugURL)
		if err != nil {
			t.Fatalf("service state: %v", err)
		}
		prev := st
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if before == nil && st.Goroutines == prev.Goroutines && st.HeapLive <= prev.HeapLive+1<<20 {
			return st
		}
		if before != nil && st.Goroutines <= before.Goroutines && st.HeapLive <= before.HeapLive+16<<20 {
			return st
		}
		if time.Now().After(deadline) {
			if before != nil {
				t.Errorf("the service did not come back: %d goroutines (before %d), live heap %d MiB (before %d MiB)",
					st.Goroutines, before.Goroutines, st.HeapLive>>20, before.HeapLive>>20)
			}
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cpuOver returns the CPU time process pid uses over d.
func cpuOver(t *testing.T, pid int, d time.Duration) time.Duration {
	t.Helper()
	read := func() time.Duration {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14, 15
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * time.Second / 100 // clock ticks (USER_HZ = 100)
	}
	a := read()
	time.Sleep(d)
	return read() - a
}

// childProcesses counts the processes whose parent is pid.
func childProcesses(pid int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if f[0] != "Z" { // reaped soon
				n++
			}
		}
	}
	return n
}

// TestHostileHost is the service of testHostileSandboxed; it does nothing
// unless started by it.
func TestHostileHost(t *testing.T) {
	dir := os.Getenv(hostEnv)
	if dir == "" {
		t.Skip("run by TestHostile")
	}
	d, err := Start(context.Background(), Options{Dir: dir,
		Interp:  interp.Options{Timeout: hostileTimeout, MaxHeapGrowth: 64 << 20},
		Sandbox: sandbox.Options{MaxMemory: 512 << 20},
		// Each case opens two sessions: let them come faster than an
		// operator's would.
		HandshakeRate: console.Rate{PerSecond: 1000, Burst: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		st := hostState{Goroutines: runtime.NumGoroutine(), HeapLive: ms.HeapAlloc,
			Yaegi: strings.Count(string(buf[:n]), "github.com/traefik/yaegi/interp")}
		json.NewEncoder(w).Encode(st)
	}))
	b, _ := json.Marshal(hostReady{URL: d.ConsoleURL, Token: d.Tokens["admin"], Debug: "http://" + ln.Addr().String() + "/"})
	fmt.Printf("%s\n", b)
	io.Copy(io.Discard, os.Stdin) // until the test closes it
}

// dialToken opens a session. The client waits out a handshake refused
// as throttled (HTTP 429, code throttled); a refusal for too many open
// sessions (HTTP 429, code limit: the cases' earlier sessions are still
// closing) is waited out here, for up to a minute.
func dialToken(t *testing.T, url, token string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		c, err := client.Dial(ctx, url, client.Options{Token: token, HandshakeRetries: 30})
		var refused *client.RefusedError
		if err == nil {
			return c
		}
		if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%v (still refused after a minute)", err)
		case <-time.After(min(max(refused.RetryAfter, 100*time.Millisecond), time.Second)):
		}
	}
}

// lockedTail keeps the last 64 KiB written to it.
type lockedTail struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lockedTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > 64<<10 {
		l.buf = l.buf[len(l.buf)-64<<10:]
	}
	return len(p), nil
}

func (l *lockedTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}
