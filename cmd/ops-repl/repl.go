package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chzyer/readline"

	"github.com/opsrepl/opsrepl/console/wire"
)

const historyMax = 1000

func isTerminal(x any) bool {
	f, ok := x.(*os.File)
	return ok && readline.IsTerminal(int(f.Fd()))
}

// interactive runs the prompt loop until Ctrl-D or until the server goes
// away.
//
// chzyer/readline's Close blocks while another goroutine is inside
// Readline, which is exactly the state a server disconnect finds us in.
// So we never Close from the side: readline reads from a cancelable stdin
// that we own, and a disconnect closes that, which makes Readline return
// io.EOF at once; Close then runs on this goroutine, with nothing inside
// Readline.
func interactive(ctx context.Context, c *conn, p *printer, stdin io.Reader, stdout, stderr io.Writer) error {
	in := readline.NewCancelableStdin(stdin)
	prompt := c.hello.Subject + "> "
	rl, err := readline.NewEx(&readline.Config{
		Prompt:                 prompt,
		Stdin:                  in,
		Stdout:                 stdout,
		Stderr:                 stderr,
		AutoComplete:           &completer{ctx: ctx, c: c},
		DisableAutoSaveHistory: true,
		InterruptPrompt:        "^C",
		EOFPrompt:              "",
	})
	if err != nil {
		return exitf(exitFailed, "terminal: %v", err)
	}
	defer rl.Close()
	hist := openHistory(stderr)
	for _, h := range hist.load() {
		rl.SaveHistory(h)
	}
	defer hist.close()

	fmt.Fprintf(stderr, "connected to %s session %s as %s (roles: %s). Type help; Ctrl-D exits.\n",
		c.ws.RemoteAddr(), c.hello.Session, c.hello.Subject, strings.Join(c.hello.Roles, ", "))

	go func() {
		<-c.dead
		// Unblock Readline; the loop below reports why.
		in.Close()
	}()
	p.stdout, p.stderr = rl.Stdout(), rl.Stderr()

	intr := interrupts(ctx)
	pending := ""
	for {
		line, err := rl.Readline()
		select {
		case <-c.dead:
			fmt.Fprintf(stderr, "\nops-repl: %v\n", c.why)
			return &reportedError{err: &exitError{code: exitConnect, err: c.why}}
		default:
		}
		switch {
		case errors.Is(err, readline.ErrInterrupt):
			if pending != "" {
				pending = ""
				rl.SetPrompt(prompt)
			}
			continue
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return exitf(exitFailed, "terminal: %v", err)
		}
		if pending == "" && strings.TrimSpace(line) == "" {
			continue
		}
		src := pending + line
		for len(intr) > 0 { // an old Ctrl-C must not cancel this request
			<-intr
		}
		_, err = c.do(ctx, wire.Request{Type: wire.TypeRun, Line: src}, p, intr)
		if errors.Is(err, errIncomplete) {
			pending = src + "\n"
			rl.SetPrompt(strings.Repeat(" ", max(len(prompt)-4, 0)) + "... ")
			continue
		}
		hist.add(src)
		rl.SaveHistory(src)
		pending = ""
		rl.SetPrompt(prompt)
		if code := exitCode(err); code == exitConnect || errors.Is(err, errTerminated) {
			return err
		}
	}
}

// completer asks the server for completions.
type completer struct {
	ctx context.Context
	c   *conn
}

func (cm *completer) Do(line []rune, pos int) ([][]rune, int) {
	s := string(line)
	bpos := len(string(line[:pos]))
	var got wire.Event
	h := handlerFunc(func(ev wire.Event) error { got = ev; return nil })
	ctx, cancel := context.WithTimeout(cm.ctx, 5*time.Second)
	defer cancel()
	if _, err := cm.c.do(ctx, wire.Request{Type: wire.TypeComplete, Line: s, Pos: &bpos}, h, nil); err != nil {
		return nil, 0
	}
	if got.Start < 0 || got.Start > bpos {
		return nil, 0
	}
	typed := s[got.Start:bpos]
	var out [][]rune
	for _, item := range got.Items {
		if strings.HasPrefix(item, typed) {
			out = append(out, []rune(item[len(typed):]+" "))
		}
	}
	return out, len([]rune(typed))
}

type handlerFunc func(wire.Event) error

func (f handlerFunc) event(ev wire.Event) error { return f(ev) }
func (f handlerFunc) chunk([]byte) error {
	return exitf(exitConnect, "protocol error: unexpected binary frame")
}
func (f handlerFunc) done() {}

// history is the prompt history file: mode 0600 in a 0700 folder of the
// user's config dir. Failures only disable it.
type history struct {
	f *os.File
}

func openHistory(stderr io.Writer) *history {
	dir, err := os.UserConfigDir()
	if err != nil {
		return &history{}
	}
	dir = filepath.Join(dir, "ops-repl")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &history{}
	}
	path := filepath.Join(dir, "history")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "ops-repl: history disabled: %v\n", err)
		return &history{}
	}
	f.Chmod(0o600)
	return &history{f: f}
}

// load returns the last historyMax entries, compacting the file when it
// has grown past twice that.
func (h *history) load() []string {
	if h.f == nil {
		return nil
	}
	var all []string
	sc := bufio.NewScanner(h.f)
	sc.Buffer(make([]byte, 64<<10), wire.MaxLine)
	for sc.Scan() {
		all = append(all, strings.ReplaceAll(sc.Text(), "\x00", "\n"))
	}
	if len(all) > 2*historyMax {
		all = all[len(all)-historyMax:]
		h.f.Truncate(0)
		for _, l := range all {
			h.add(l)
		}
	}
	if len(all) > historyMax {
		all = all[len(all)-historyMax:]
	}
	return all
}

func (h *history) add(line string) {
	if h.f != nil {
		h.f.WriteString(strings.ReplaceAll(line, "\n", "\x00") + "\n")
	}
}

func (h *history) close() {
	if h.f != nil {
		h.f.Close()
	}
}
