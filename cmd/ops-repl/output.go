package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
)

// printer shows the events of requests: text for people, or with --json
// one JSON object per event. It saves file transfers under dir. Its
// methods may be called from the connection's reading goroutine too
// (notices, saved files), so they lock.
type printer struct {
	mu             sync.Mutex
	stdout, stderr io.Writer
	json           bool
	dir            string
	dirErr         error     // no folder for downloads
	lastNL         bool      // the last output ended with a newline
	progress       io.Writer // where transfer progress goes (a terminal), or nil
	saved          string    // the path of the file just saved
	savedSize      int64
}

func (p *printer) event(ev wire.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json && ev.Type != wire.EventFileEnd {
		p.emit(ev) // file_end: a "saved" object says where it went
	}
	switch ev.Type {
	case wire.EventOutput:
		if !p.json {
			io.WriteString(p.stdout, safeText(ev.Data))
			p.lastNL = strings.HasSuffix(ev.Data, "\n")
		}
	case wire.EventResult:
		if !p.json && ev.Value != "" {
			p.newline()
			fmt.Fprintln(p.stdout, safeText(ev.Value))
		}
	case wire.EventError:
		if !p.json {
			p.newline()
			switch {
			case ev.Code == wire.CodeCanceled && (ev.Message == "" || ev.Message == "canceled"):
				fmt.Fprintln(p.stderr, "canceled")
			default:
				fmt.Fprintf(p.stderr, "error: %s: %s\n", safeText(string(ev.Code)), safeText(ev.Message))
			}
		}
	case wire.EventNotice:
		if !p.json {
			p.newline()
			fmt.Fprintf(p.stderr, "notice: %s\n", safeText(ev.Message))
		}
	case wire.EventFileEnd:
		path, size := p.saved, p.savedSize
		p.saved = ""
		switch {
		case path == "":
			// Not kept: Run returns why.
		case p.json:
			p.emit(map[string]any{"type": "saved", "id": ev.ID, "path": path, "size": size})
		default:
			fmt.Fprintf(p.stdout, "saved %s\n", path)
		}
	}
	return nil
}

// notice shows an event that answers no request.
func (p *printer) notice(ev wire.Event) { p.event(ev) }

// files saves transfers under p.dir, with a progress line for large ones.
func (p *printer) files() client.FileFunc {
	save := client.Save(p.dir, func(f *client.File) {
		p.mu.Lock()
		p.saved, p.savedSize = f.Path(), f.Size()
		p.mu.Unlock()
	})
	return func(ev wire.Event) (client.Sink, error) {
		if p.dirErr != nil {
			return nil, p.dirErr
		}
		s, err := save(ev)
		if err != nil || p.json || p.progress == nil || ev.Size < 1<<20 {
			return s, err
		}
		return &progressSink{Sink: s, w: p.progress, name: ev.Name, size: ev.Size}, nil
	}
}

func (p *printer) emit(v any) {
	b, _ := json.Marshal(v)
	p.stdout.Write(append(b, '\n'))
}

// newline ends unterminated output before a message.
func (p *printer) newline() {
	if !p.lastNL {
		io.WriteString(p.stdout, "\n")
		p.lastNL = true
	}
}

// safeText makes server text harmless for a terminal: control characters
// other than newline and tab (escape sequences could retitle the window,
// clear the screen or worse) are shown escaped, as \x1b.
func safeText(s string) string {
	clean := true
	for _, r := range s {
		if isControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			b.WriteString("\uFFFD")
		case isControl(r) && r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		case isControl(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isControl(r rune) bool {
	return r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) ||
		r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069))
}

// progressSink draws "name  12.0 MiB / 1.2 GiB  45.3 MiB/s  ETA 26s" at
// most five times a second while a file arrives, and once more at the end.
type progressSink struct {
	client.Sink
	w            io.Writer
	name         string
	size, n      int64
	start, shown time.Time
}

func (s *progressSink) Write(b []byte) (int, error) {
	s.n += int64(len(b))
	s.show(false)
	return s.Sink.Write(b)
}

func (s *progressSink) Finish(err error) error {
	s.show(true)
	return s.Sink.Finish(err)
}

func (s *progressSink) show(last bool) {
	now := time.Now()
	if s.start.IsZero() {
		s.start = now
	}
	if !last && now.Sub(s.shown) < 200*time.Millisecond {
		return
	}
	s.shown = now
	rate := float64(s.n) / max(now.Sub(s.start).Seconds(), 1e-3)
	eta := time.Duration(float64(s.size-s.n) / max(rate, 1) * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(s.w, "\r%s  %s / %s  %s/s  ETA %s   ", safeText(s.name), fmtBytes(s.n), fmtBytes(s.size), fmtBytes(int64(rate)), eta)
	if last {
		fmt.Fprintln(s.w)
	}
}

func fmtBytes(n int64) string {
	f, units := float64(n), []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
