package console

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opsrepl/opsrepl/console/wire"
)

// transcript records what a session's operator saw as an asciicast v2
// file (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header
// line, then one [seconds, "o", text] line per event. Each event is one
// write, so a crash loses at most the event being written.
type transcript struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	start   time.Time
	size    int64
	max     int64
	stopped bool
	onFail  func(error) // called once when a write fails
}

// castHeader is the asciicast v2 header.
type castHeader struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Title     string            `json:"title"`
	Env       map[string]string `json:"env"`
}

// openTranscript creates dir/<session>.cast (0600; never an existing file).
func openTranscript(dir, session, subject, remote string, maxBytes int64) (*transcript, error) {
	path := filepath.Join(dir, session+".cast")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console: transcript: %w", err)
	}
	t := &transcript{f: f, path: path, start: time.Now(), max: maxBytes}
	h, _ := json.Marshal(castHeader{Version: 2, Width: 120, Height: 40, Timestamp: t.start.Unix(),
		Title: fmt.Sprintf("ops-repl session %s: %s from %s", session, subject, remote),
		Env:   map[string]string{"TERM": "xterm-256color"}})
	if _, err := f.Write(append(h, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("console: transcript: %w", err)
	}
	return t, nil
}

// output records text the operator saw; newlines become CR LF, as a
// terminal shows them.
func (t *transcript) output(text string) {
	if t == nil || text == "" {
		return
	}
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	b, _ := json.Marshal([]any{float64(time.Since(t.start).Microseconds()) / 1e6, "o", text})
	b = append(b, '\n')
	if t.size+int64(len(b)) > t.max {
		t.stopped = true
		b, _ = json.Marshal([]any{float64(time.Since(t.start).Microseconds()) / 1e6, "o", fmt.Sprintf("\r\n[transcript stopped: it reached its %d-byte limit]\r\n", t.max)})
		b = append(b, '\n')
	}
	n, err := t.f.Write(b)
	t.size += int64(n)
	if err != nil {
		t.stopped = true
		if t.onFail != nil {
			t.onFail(err)
		}
	}
}

// event records what the client shows for an event.
func (t *transcript) event(ev wire.Event) {
	if t == nil {
		return
	}
	switch ev.Type {
	case wire.EventOutput:
		t.output(ev.Data)
	case wire.EventResult:
		if ev.Value != "" {
			t.output(ev.Value + "\n")
		}
	case wire.EventError:
		t.output(fmt.Sprintf("error: %s: %s\n", ev.Code, ev.Message))
	case wire.EventNotice:
		t.output("notice: " + ev.Message + "\n")
	case wire.EventFile:
		t.output(fmt.Sprintf("[file %s: %d bytes, sha256 %s]\n", ev.Name, ev.Size, ev.SHA256))
	case wire.EventIncomplete:
		t.output("... (incomplete: the next line continues it)\n")
	}
}

// input records a line the operator sent.
func (t *transcript) input(subject, line string) {
	t.output(subject + "> " + line + "\n")
}

func (t *transcript) close() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.f.Close()
}
