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
	"github.com/opsrepl/opsrepl/internal/diag"
)

// transcript records what a session's operator saw as an asciicast v2
// file (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header
// line, then one [seconds, "o", text] line per event. Each event is one
// write, so a crash loses at most the event being written.
type transcript struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	subject string
	start   time.Time
	size    int64
	max     int64
	budget  *castBudget
	stopped bool
	onFail  func(error)  // called once when a write fails
	onStop  func(string) // called once when a budget stops the recording
}

// castBudget is what all of a console's transcripts may write: per
// subject and in all, over the console's life, and never into the disk
// space kept free for the audit log (the last thing to lose space, and
// losing it is the only reason the console refuses requests).
type castBudget struct {
	dir        string
	maxSubject int64
	maxTotal   int64
	reserve    uint64

	mu        sync.Mutex
	bySubject map[string]int64
	total     int64
	checked   time.Time // when free disk was last looked at
	free      uint64
	freeKnown bool
}

// take accounts n more bytes for subject, or says why they don't fit.
func (b *castBudget) take(subject string, n int64) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.bySubject[subject]+n > b.maxSubject:
		return fmt.Sprintf("%s's transcripts reached their %d-byte budget", subject, b.maxSubject)
	case b.total+n > b.maxTotal:
		return fmt.Sprintf("this console's transcripts reached their %d-byte budget", b.maxTotal)
	}
	if time.Since(b.checked) > time.Second || (b.freeKnown && b.free < uint64(n)+b.reserve+4<<20) {
		b.free, b.freeKnown = diag.FreeDisk(b.dir)
		b.checked = time.Now()
	}
	if b.freeKnown && b.free < uint64(n)+b.reserve {
		return fmt.Sprintf("the disk has less than %d bytes free, kept for the audit log", b.reserve)
	}
	b.bySubject[subject] += n
	b.total += n
	b.free -= min(b.free, uint64(n))
	return ""
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
func openTranscript(dir, session, subject, remote string, maxBytes int64, budget *castBudget) (*transcript, error) {
	path := filepath.Join(dir, session+".cast")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console: transcript: %w", err)
	}
	t := &transcript{f: f, path: path, subject: subject, start: time.Now(), max: maxBytes, budget: budget}
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
	why := ""
	if t.size+int64(len(b)) > t.max {
		why = fmt.Sprintf("it reached its %d-byte limit", t.max)
	} else if t.budget != nil {
		why = t.budget.take(t.subject, int64(len(b)))
	}
	if why != "" {
		t.stopped = true
		b, _ = json.Marshal([]any{float64(time.Since(t.start).Microseconds()) / 1e6, "o", "\r\n[transcript stopped: " + why + "]\r\n"})
		b = append(b, '\n')
		if t.onStop != nil {
			defer t.onStop(why)
		}
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
