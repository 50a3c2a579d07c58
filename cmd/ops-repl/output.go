package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opsrepl/opsrepl/console/wire"
)

// printer shows the events of requests: text for people, or with --json
// one JSON object per event. It saves file transfers under dir.
type printer struct {
	stdout, stderr io.Writer
	json           bool
	dir            string
	dl             *download
	lastNL         bool      // the last output ended with a newline
	progress       io.Writer // where transfer progress goes (a terminal), or nil
	retrying       bool      // a throttled request will be sent again: do not show its error
}

func (p *printer) event(ev wire.Event) error {
	if ev.Type == wire.EventError && ev.Code == wire.CodeThrottled && p.retrying {
		return nil // runLines waits and sends it again
	}
	if p.json && ev.Type != wire.EventFileEnd {
		p.emit(ev)
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
		p.abort()
	case wire.EventError:
		p.abort()
		if !p.json {
			p.newline()
			fmt.Fprintf(p.stderr, "error: %s: %s\n", safeText(string(ev.Code)), safeText(ev.Message))
		}
	case wire.EventNotice:
		if !p.json {
			p.newline()
			fmt.Fprintf(p.stderr, "notice: %s\n", safeText(ev.Message))
		}
	case wire.EventFile:
		p.abort()
		dl, err := startDownload(p.dir, ev)
		if err != nil {
			return err
		}
		if !p.json && ev.Size >= 1<<20 {
			dl.progress = p.progress
		}
		p.dl = dl
	case wire.EventFileEnd:
		if p.dl == nil {
			return exitf(exitConnect, "protocol error: file_end without a file")
		}
		path, err := p.dl.finish()
		p.dl = nil
		if err != nil {
			return err
		}
		if p.json {
			p.emit(map[string]any{"type": "saved", "id": ev.ID, "path": path, "size": ev.Size})
		} else {
			fmt.Fprintf(p.stdout, "saved %s\n", path)
		}
	}
	return nil
}

// done drops a transfer the request did not finish.
func (p *printer) done() { p.abort() }

func (p *printer) chunk(data []byte) error {
	if p.dl == nil {
		return exitf(exitConnect, "protocol error: binary frame outside a file transfer")
	}
	return p.dl.write(data)
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

// abort discards a transfer that did not complete.
func (p *printer) abort() {
	if p.dl != nil {
		p.dl.discard()
		p.dl = nil
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

// download is a file transfer being written to a temporary file in dir.
type download struct {
	dir, name string
	size      int64
	sha       string
	f         *os.File
	h         hash.Hash
	n         int64
	progress  io.Writer // nil: no progress bar
	start     time.Time
	shown     time.Time
}

func startDownload(dir string, ev wire.Event) (*download, error) {
	name, err := safeName(ev.Name)
	if err != nil {
		return nil, exitf(exitConnect, "protocol error: %v", err)
	}
	if ev.Size < 0 || len(ev.SHA256) != 64 {
		return nil, exitf(exitConnect, "protocol error: file event without size and sha256")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, exitf(exitFailed, "download: %v", err)
	}
	f, err := os.CreateTemp(dir, ".ops-repl-*.part") // mode 0600
	if err != nil {
		return nil, exitf(exitFailed, "download: %v", err)
	}
	return &download{dir: dir, name: name, size: ev.Size, sha: strings.ToLower(ev.SHA256), f: f, h: sha256.New()}, nil
}

func (d *download) write(b []byte) error {
	if d.n+int64(len(b)) > d.size {
		d.discard()
		return exitf(exitConnect, "protocol error: %s is larger than the announced %d bytes", d.name, d.size)
	}
	d.n += int64(len(b))
	d.h.Write(b)
	d.showProgress(false)
	if _, err := d.f.Write(b); err != nil {
		d.discard()
		return exitf(exitFailed, "download: %v", err)
	}
	return nil
}

// showProgress draws "name  12.0 MiB / 1.2 GiB  45.3 MiB/s  ETA 26s" at
// most five times a second, and once more at the end.
func (d *download) showProgress(last bool) {
	if d.progress == nil {
		return
	}
	now := time.Now()
	if d.start.IsZero() {
		d.start = now
	}
	if !last && now.Sub(d.shown) < 200*time.Millisecond {
		return
	}
	d.shown = now
	rate := float64(d.n) / max(now.Sub(d.start).Seconds(), 1e-3)
	eta := time.Duration(float64(d.size-d.n) / max(rate, 1) * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(d.progress, "\r%s  %s / %s  %s/s  ETA %s   ", d.name, fmtBytes(d.n), fmtBytes(d.size), fmtBytes(int64(rate)), eta)
	if last {
		fmt.Fprintln(d.progress)
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

// finish verifies size and checksum and moves the file into place under a
// name no existing file has.
func (d *download) finish() (string, error) {
	defer d.discard()
	d.showProgress(true)
	if d.n != d.size {
		return "", exitf(exitConnect, "download of %s stopped at %d of %d bytes", d.name, d.n, d.size)
	}
	if got := hex.EncodeToString(d.h.Sum(nil)); got != d.sha {
		return "", exitf(exitConnect, "download of %s is corrupt: sha256 %s, announced %s", d.name, got, d.sha)
	}
	if err := d.f.Sync(); err != nil {
		return "", exitf(exitFailed, "download: %v", err)
	}
	ext := filepath.Ext(d.name)
	if strings.HasSuffix(d.name, ".pb.gz") {
		ext = ".pb.gz"
	}
	base := strings.TrimSuffix(d.name, ext)
	for i := 0; i < 1000; i++ {
		name := d.name
		if i > 0 {
			name = fmt.Sprintf("%s-%d%s", base, i, ext)
		}
		path := filepath.Join(d.dir, name)
		// Link, not rename: it fails instead of replacing an existing file.
		if err := os.Link(d.f.Name(), path); err == nil {
			abs, _ := filepath.Abs(path)
			return abs, nil
		} else if !errors.Is(err, os.ErrExist) {
			return "", exitf(exitFailed, "download: %v", err)
		}
	}
	return "", exitf(exitFailed, "download: too many files named like %s in %s", d.name, d.dir)
}

func (d *download) discard() {
	if d.f != nil {
		d.f.Close()
		os.Remove(d.f.Name())
		d.f = nil
	}
}

// safeName accepts a server-suggested file name only if it is a plain
// name: no directories, no hidden files, a short set of characters.
func safeName(name string) (string, error) {
	if name == "" || len(name) > 128 || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("refusing file name %q", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", fmt.Errorf("refusing file name %q", name)
		}
	}
	return name, nil
}
