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

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
)

const historyMax = 1000

func isTerminal(x any) bool {
	f, ok := x.(*os.File)
	return ok && readline.IsTerminal(int(f.Fd()))
}

// interactive runs the prompt loop until Ctrl-D, exit or quit, or until
// the server goes away.
//
// chzyer/readline's Close waits for its terminal goroutine, which may sit
// in a read of standard input (or in a hand-off to a line nobody reads).
// So readline reads from a cancelable stdin that we own and close before
// Close, a disconnect closes it too (Readline then returns io.EOF), and
// Close gets a moment, after which the terminal's mode is restored by hand:
// no state of the terminal can hold the client.
func interactive(ctx context.Context, c *client.Conn, p *printer, stdin io.Reader, stdout, stderr io.Writer) error {
	in := readline.NewCancelableStdin(&eofKey{r: stdin})
	hello := c.Hello()
	prompt := hello.Subject + "> "
	more := strings.Repeat(" ", max(len(prompt)-4, 0)) + "... "
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
	restore := saveTerminal(stdin)
	defer func() {
		in.Close()
		closed := make(chan struct{})
		go func() { rl.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(500 * time.Millisecond):
			restore()
		}
	}()
	hist := openHistory(stderr)
	for _, h := range hist.load() {
		rl.SaveHistory(h)
	}
	defer hist.close()

	fmt.Fprintf(stderr, "connected to %s as %s, session %s\nroles: %s\nType help for commands; Ctrl-C cancels a request; Ctrl-D or exit leaves.\n",
		c.RemoteAddr(), hello.Subject, hello.Session, strings.Join(hello.Roles, ", "))

	go func() {
		select {
		case <-c.Done():
		case <-ctx.Done():
		}
		in.Close() // unblock Readline; the loop below reports why
	}()
	p.mu.Lock()
	p.stdout, p.stderr = rl.Stdout(), rl.Stderr()
	p.mu.Unlock()

	gone := func() error {
		if ctx.Err() != nil {
			return errTerminated
		}
		err := c.Err()
		fmt.Fprintf(stderr, "\nops-repl: %s\n", safeText(err.Error()))
		return &reportedError{err: &exitError{code: exitConnect, err: err}}
	}
	intr := interrupts(ctx)
	pending := ""
	for {
		line, err := rl.Readline()
		select {
		case <-c.Done():
			return gone()
		case <-ctx.Done():
			return errTerminated
		default:
		}
		switch {
		case errors.Is(err, readline.ErrInterrupt):
			if pending != "" {
				pending = ""
				rl.SetPrompt(prompt)
			}
			continue
		case errors.Is(err, io.EOF) && pending != "":
			// Ctrl-D at a continuation prompt drops the unfinished source.
			fmt.Fprintln(stderr, "(unfinished input discarded)")
			pending = ""
			rl.SetPrompt(prompt)
			continue
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return exitf(exitFailed, "terminal: %v", err)
		}
		if pending == "" {
			switch strings.TrimSpace(line) {
			case "":
				continue
			case "exit", "quit":
				return nil
			}
		}
		src := pending + line
		for len(intr) > 0 { // an old Ctrl-C must not cancel this request
			<-intr
		}
		_, err = runOne(ctx, c, src, p, intr)
		if errors.Is(err, client.ErrIncomplete) {
			pending = src + "\n"
			rl.SetPrompt(more)
			continue
		}
		hist.add(src)
		rl.SaveHistory(src)
		pending = ""
		rl.SetPrompt(prompt)
		switch {
		case errors.Is(err, errTerminated):
			return err
		case c.Err() != nil:
			return gone()
		case err != nil && !isReported(err):
			fmt.Fprintf(stderr, "ops-repl: %s\n", safeText(err.Error()))
		}
	}
}

// eofKey turns the end of file a terminal reports for Ctrl-D, when it is
// pressed while a request runs (the terminal is then in its ordinary
// mode), into the Ctrl-D key readline sees at its prompt. readline stops
// reading for good after an end of file, so without this a second Ctrl-D,
// or Ctrl-D after type-ahead, would leave the next prompt waiting forever.
// Many ends of file in a row are a terminal that hung up: they pass.
type eofKey struct {
	r    io.Reader
	eofs int // ends of file since the last byte
}

func (e *eofKey) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if n > 0 || !errors.Is(err, io.EOF) || len(b) == 0 {
		e.eofs = 0
		return n, err
	}
	if e.eofs++; e.eofs > 8 {
		return 0, err
	}
	b[0] = readline.CharDelete
	return 1, nil
}

// isReported tells the errors the printer already showed: error events.
func isReported(err error) bool {
	var we *wire.Error
	return errors.As(err, &we)
}

// completer asks the server for completions.
type completer struct {
	ctx context.Context
	c   *client.Conn
}

func (cm *completer) Do(line []rune, pos int) ([][]rune, int) {
	s := string(line)
	bpos := len(string(line[:pos]))
	ctx, cancel := context.WithTimeout(cm.ctx, 5*time.Second)
	defer cancel()
	got, err := cm.c.Complete(ctx, s, bpos)
	if err != nil || got.Start < 0 || got.Start > bpos {
		return nil, 0
	}
	typed := s[got.Start:bpos]
	var out [][]rune
	for _, item := range got.Items {
		if safeText(item) != item || strings.ContainsAny(item, "\n\t") {
			continue // it would draw on the terminal, or break the line
		}
		if strings.HasPrefix(item, typed) {
			out = append(out, []rune(item[len(typed):]+" "))
		}
	}
	return out, len([]rune(typed))
}

// saveTerminal records the terminal's mode, and returns what puts it back.
func saveTerminal(stdin io.Reader) func() {
	f, ok := stdin.(*os.File)
	if !ok {
		return func() {}
	}
	st, err := readline.GetState(int(f.Fd()))
	if err != nil {
		return func() {}
	}
	return func() { readline.Restore(int(f.Fd()), st) }
}

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
