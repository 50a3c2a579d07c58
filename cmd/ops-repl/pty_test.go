package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// asCLI makes the test binary the ops-repl command (see TestMain), so
// that the interactive client runs as its own process in a real
// pseudo-terminal.
const asCLI = "OPS_REPL_TEST_AS_CLI"

// term is the client running in a pseudo-terminal of 80×24.
type term struct {
	t    *testing.T
	cmd  *exec.Cmd
	pty  *os.File
	mu   sync.Mutex
	out  strings.Builder
	seen int // Expect matched up to here
	done chan struct{}
	read chan struct{} // closed when all the client wrote has been read
	err  error
}

func startTerm(t *testing.T, args ...string) *term {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asCLI+"=1", "HOME="+t.TempDir(), "XDG_CONFIG_HOME=", "XDG_DATA_HOME=", "TERM=xterm")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, cmd: cmd, pty: f, done: make(chan struct{}), read: make(chan struct{})}
	go func() {
		defer close(tm.read)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		tm.err = cmd.Wait()
		close(tm.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-tm.done
		f.Close()
	})
	return tm
}

// ansi matches the terminal control sequences readline draws with.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\r`)

// screen is everything the client wrote, without control sequences.
func (tm *term) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return ansi.ReplaceAllString(tm.out.String(), "")
}

// expect waits until s appears after what the last expect matched.
func (tm *term) expect(s string) {
	tm.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		scr := tm.screen()
		if i := strings.Index(scr[min(tm.seen, len(scr)):], s); i >= 0 {
			tm.seen += i + len(s)
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("waited 60s for %q; the terminal shows:\n%s", s, scr)
		}
		select {
		case <-tm.done:
			select { // what it wrote before it exited is still to be read
			case <-tm.read:
			case <-time.After(5 * time.Second):
			}
			if !strings.Contains(tm.screen()[min(tm.seen, len(tm.screen())):], s) {
				tm.t.Fatalf("the client exited (%v) before %q; the terminal shows:\n%s", tm.err, s, tm.screen())
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := tm.pty.WriteString(s); err != nil {
		tm.t.Fatal(err)
	}
}

// exit waits for the client to end and returns its exit code.
func (tm *term) exit() int {
	tm.t.Helper()
	select {
	case <-tm.done:
	case <-time.After(30 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine to the terminal.
		tm.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-tm.done:
		case <-time.After(5 * time.Second):
		}
		tm.t.Fatalf("the client did not exit within 30s; the terminal shows:\n%s", tm.screen())
	}
	var ee *exec.ExitError
	if errors.As(tm.err, &ee) {
		return ee.ExitCode()
	}
	if tm.err != nil {
		tm.t.Fatal(tm.err)
	}
	return 0
}

// leave sends keys, one after another and then again, until the client
// exits; it fails if five rounds did not end it.
func (tm *term) leave(t *testing.T, keys ...string) {
	t.Helper()
	for range 5 {
		for _, k := range keys {
			tm.send(k)
			select {
			case <-tm.done:
				return
			case <-time.After(time.Second):
			}
		}
	}
	tm.exit()
}

const (
	ctrlC = "\x03"
	ctrlD = "\x04"
)

// TestInteractive drives the client as a person would, in a terminal: no
// key and no state of the server may leave it hanging.
func TestInteractive(t *testing.T) {
	d := startDemo(t)
	login := func(t *testing.T, subject string) *term {
		tm := startTerm(t, "--url", d.ConsoleURL, "--token", d.Tokens[subject])
		tm.expect(subject + "> ")
		return tm
	}
	t.Run("help fits 80 columns", func(t *testing.T) {
		tm := login(t, "admin")
		tm.send("help\r")
		tm.expect("help COMMAND")
		tm.expect("admin> ")
		for _, l := range strings.Split(tm.screen(), "\n") {
			if n := len([]rune(l)); n > 80 {
				t.Errorf("a line of %d columns: %q", n, l)
			}
		}
		tm.send("help heapdump\r")
		tm.expect("--gc")
		tm.send("exit\r")
		if code := tm.exit(); code != 0 {
			t.Fatalf("exit: code %d", code)
		}
	})
	t.Run("quit", func(t *testing.T) {
		tm := login(t, "viewer")
		tm.send("quit\r")
		if code := tm.exit(); code != 0 {
			t.Fatalf("quit: code %d", code)
		}
	})
	t.Run("Ctrl-D at the prompt", func(t *testing.T) {
		tm := login(t, "viewer")
		tm.send(ctrlD)
		if code := tm.exit(); code != 0 {
			t.Fatalf("Ctrl-D: code %d", code)
		}
	})
	t.Run("Ctrl-D while a request runs", func(t *testing.T) {
		tm := login(t, "admin")
		tm.send("time.Sleep(2*time.Second); fmt.Println(\"slept\")\r")
		time.Sleep(300 * time.Millisecond) // type while it runs; any moment is fine
		tm.send(ctrlD)
		if code := tm.exit(); code != 0 {
			t.Fatalf("code %d; the terminal shows:\n%s", code, tm.screen())
		}
	})
	t.Run("keys typed while a request runs, then Ctrl-D", func(t *testing.T) {
		tm := login(t, "admin")
		tm.send("time.Sleep(time.Second); fmt.Println(\"sl\" + \"ept\")\r") // the echo does not say slept
		tm.send("abc" + ctrlD + ctrlD + "x" + ctrlD)
		tm.expect("slept")
		// A person presses Ctrl-C to clear what they typed, then Ctrl-D,
		// and again if a key was lost (a terminal drops what was typed just
		// before a Ctrl-C that reaches the request): the client must leave.
		tm.leave(t, ctrlC, ctrlD)
	})
	t.Run("Ctrl-D at a continuation prompt", func(t *testing.T) {
		tm := login(t, "admin")
		tm.send("for i := 0; i < 2; i++ {\r")
		tm.expect("... ")
		tm.send(ctrlD)
		tm.expect("discarded")
		tm.expect("admin> ")
		tm.send("1+2\r")
		tm.expect("3")
		tm.send("exit\r")
		if code := tm.exit(); code != 0 {
			t.Fatalf("code %d", code)
		}
	})
	t.Run("Ctrl-C cancels, then Ctrl-C at the prompt", func(t *testing.T) {
		tm := login(t, "admin")
		tm.send("time.Sleep(30*time.Second)\r")
		time.Sleep(300 * time.Millisecond)
		tm.send(ctrlC)
		tm.expect("canceled")
		tm.expect("admin> ")
		tm.send("abc" + ctrlC)
		tm.expect("admin> ")
		tm.send("whoami\r")
		tm.expect("admin")
		tm.send(ctrlD)
		if code := tm.exit(); code != 0 {
			t.Fatalf("code %d", code)
		}
	})
}

// TestInteractiveServerKilled kills the server under a client that waits
// at its prompt, and under one whose request runs: both exit 4.
func TestInteractiveServerKilled(t *testing.T) {
	for _, running := range []bool{false, true} {
		name := "at the prompt"
		if running {
			name = "during a request"
		}
		t.Run(name, func(t *testing.T) {
			srv := exec.Command(os.Args[0], "demo", "--serve", "--dir", t.TempDir())
			srv.Env = append(os.Environ(), asCLI+"=1")
			out, err := srv.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			var ready readyLine
			if err := json.Unmarshal([]byte(line), &ready); err != nil {
				t.Fatalf("ready line %q: %v", line, err)
			}
			tm := startTerm(t, "--url", ready.URL, "--token", ready.Tokens["admin"])
			tm.expect("admin> ")
			if running {
				tm.send("time.Sleep(time.Minute)\r")
				time.Sleep(300 * time.Millisecond)
			}
			srv.Process.Signal(syscall.SIGKILL)
			tm.expect("connection lost")
			if code := tm.exit(); code != exitConnect {
				t.Fatalf("code %d; want %d; the terminal shows:\n%s", code, exitConnect, tm.screen())
			}
		})
	}
}
