package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Record kinds.
const (
	KindIntent    = "intent"    // a request about to run (or refused), written before it runs
	KindOutcome   = "outcome"   // how that request ended
	KindHandshake = "handshake" // refused connection attempts (aggregated per source)
	KindSession   = "session"   // a session opened or closed
	KindRevert    = "revert"    // a runtime setting went back when its TTL ended
	KindPolicy    = "policy"    // the policy file changed: reloaded or rejected
	KindRecover   = "recover"   // the log was reopened after a crash left a torn line
	KindNote      = "note"      // anything else the embedding application records
)

// ZeroHash is the prev of the first record of a chain.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Record is one audit line. Seq and Prev are set by the Log; Prev is the
// SHA-256 (hex) of the previous line's exact bytes, without its newline.
type Record struct {
	Seq  uint64    `json:"seq"`
	Prev string    `json:"prev"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`

	Session string `json:"session,omitempty"`
	Subject string `json:"subject,omitempty"`
	Remote  string `json:"remote,omitempty"`
	// Request is the request id within the session.
	Request uint64 `json:"request,omitempty"`
	// Line is the request as the operator sent it (a command line, or the
	// full Go source of an eval), after redaction.
	Line string `json:"line,omitempty"`
	// Object is the policy object the request was checked against.
	Object string `json:"object,omitempty"`
	// Decision is "allow" or "deny" for requests that reached the policy.
	Decision string `json:"decision,omitempty"`
	// Reason is the operator's justification in force for the session.
	Reason string `json:"reason,omitempty"`
	// Outcome is "ok", or an error code from package wire; for sessions
	// "open" and "closed"; for policy changes "reloaded" or "rejected".
	Outcome string `json:"outcome,omitempty"`
	// Message explains a failure.
	Message string `json:"message,omitempty"`
	// Detail records what a request changed (before and after values).
	Detail     string  `json:"detail,omitempty"`
	DurationMS float64 `json:"duration_ms,omitempty"`
	// OutputBytes and OutputSHA256 describe everything the request sent
	// back: text output, then the bytes of any file it transferred.
	OutputBytes  int64  `json:"output_bytes,omitempty"`
	OutputSHA256 string `json:"output_sha256,omitempty"`
	// Count is how many events an aggregated record stands for.
	Count int64 `json:"count,omitempty"`
	// Transcript names the session's recording, if one is kept.
	Transcript string `json:"transcript,omitempty"`
	// OldHash and NewHash are the SHA-256 of a policy file before and
	// after a change.
	OldHash string `json:"old_hash,omitempty"`
	NewHash string `json:"new_hash,omitempty"`
	// TornBytes and TornSHA256 describe the incomplete line a crash left,
	// on a recover record.
	TornBytes  int64  `json:"torn_bytes,omitempty"`
	TornSHA256 string `json:"torn_sha256,omitempty"`
}

// Options configures Open.
type Options struct {
	// Path is the log file, created 0600 and appended to; a log that
	// exists is continued (its chain too). Required.
	Path string
	// MaxBytes is the size at which the file is rotated: renamed to
	// Path.<UTC time> and replaced by a new file whose first record chains
	// to the last one of the old. Rotated files are kept; removing old
	// ones is the operator's decision. Negative: never rotate.
	// Default: 64 MiB.
	MaxBytes int64
	// Redact, if set, is applied to the free-text fields (Line, Message,
	// Detail, Reason) after the built-in redaction of bearer tokens,
	// Authorization values, 64-hex-digit secrets and password-like
	// assignments. Default: built-in redaction only.
	Redact func(string) string
}

// Log appends hash-chained records. It is safe for concurrent use; one
// Log, in one process, owns a file at a time (Open takes a lock).
type Log struct {
	mu     sync.Mutex
	opts   Options
	f      *os.File  // nil for New
	w      io.Writer // f, or New's writer
	unlock func()
	size   int64
	seq    uint64
	head   string // hash of the last record written
	err    error  // a failed write: the log refuses everything after it
	closed bool
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: log is closed")

// Open opens the log at opts.Path, continuing the chain of the records
// already there (or, when the file is missing or empty, of the newest
// rotated file next to it). A final line left incomplete by a crash is
// kept, and a recover record describing it is written after it. Open
// fails when the last complete record is not a valid record: verify the
// log, and move it aside to start a new chain.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, errors.New("audit: Options.Path is required")
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 64 << 20
	}
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	unlock, err := lockFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %s: %w", opts.Path, err)
	}
	l := &Log{opts: opts, f: f, w: f, unlock: unlock, head: ZeroHash}
	fail := func(err error) (*Log, error) {
		unlock()
		f.Close()
		return nil, fmt.Errorf("audit: %s: %w", opts.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	l.size = st.Size()
	last, torn, err := tail(f, l.size)
	if err != nil {
		return fail(err)
	}
	if last == nil {
		// A new file: continue the newest rotated one, if any.
		if prev := newestRotated(opts.Path); prev != "" {
			pf, err := os.Open(prev)
			if err != nil {
				return fail(err)
			}
			pst, err := pf.Stat()
			if err == nil {
				last, _, err = tail(pf, pst.Size())
			}
			pf.Close()
			if err != nil {
				return fail(fmt.Errorf("continuing %s: %w", prev, err))
			}
		}
	}
	if last != nil {
		var r Record
		if err := json.Unmarshal(last, &r); err != nil || r.Seq == 0 || len(r.Prev) != len(ZeroHash) {
			return fail(errors.New("the last record is not a valid audit record; run ops-repl audit verify, and move the file aside to start a new log"))
		}
		l.seq, l.head = r.Seq, hashLine(last)
	}
	if torn != nil {
		// The crash left a line without its newline: end it, and say so.
		if _, err := f.Write([]byte("\n")); err != nil {
			return fail(err)
		}
		l.size++
		sum := sha256.Sum256(torn)
		err := l.Write(Record{Kind: KindRecover, Outcome: "ok", TornBytes: int64(len(torn)), TornSHA256: hex.EncodeToString(sum[:]),
			Message: "the previous line is an incomplete record left by a crash; the chain continues from the record before it"})
		if err != nil {
			return fail(err)
		}
	}
	return l, nil
}

// New returns a Log that writes a fresh chain to w (no rotation, no
// lock). WriteSync calls w's Sync method, if it has one.
func New(w io.Writer) *Log { return &Log{w: w, head: ZeroHash, opts: Options{MaxBytes: -1}} }

// Write appends r as one line, in one write call, setting r.Seq and
// r.Prev (and r.Time, when zero). Free-text fields are redacted first.
// After a failed write the Log refuses every later one: the chain cannot
// be continued safely.
func (l *Log) Write(r Record) error { return l.write(r, false) }

// WriteSync is Write followed by fsync: when it returns nil, the record
// (and every earlier one) is on stable storage.
func (l *Log) WriteSync(r Record) error { return l.write(r, true) }

func (l *Log) write(r Record, durable bool) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	r.Line = l.redact(r.Line)
	r.Message = l.redact(r.Message)
	r.Detail = l.redact(r.Detail)
	r.Reason = l.redact(r.Reason)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return l.err
	}
	r.Seq, r.Prev = l.seq+1, l.head
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	b = append(b, '\n')
	if l.f != nil && l.opts.MaxBytes > 0 && l.size > 0 && l.size+int64(len(b)) > l.opts.MaxBytes {
		if err := l.rotate(); err != nil {
			l.err = fmt.Errorf("audit: rotate: %w", err)
			return l.err
		}
	}
	n, err := l.w.Write(b)
	l.size += int64(n)
	if err != nil {
		l.err = fmt.Errorf("audit: write: %w", err)
		return l.err
	}
	l.seq, l.head = r.Seq, hashLine(b[:len(b)-1])
	if durable {
		if s, ok := l.w.(interface{ Sync() error }); ok {
			if err := s.Sync(); err != nil {
				l.err = fmt.Errorf("audit: sync: %w", err)
				return l.err
			}
		}
	}
	return nil
}

// rotate renames the full file aside and starts a new one. Called with
// l.mu held.
func (l *Log) rotate() error {
	if err := l.f.Sync(); err != nil {
		return err
	}
	name := l.opts.Path + "." + time.Now().UTC().Format(rotateLayout)
	if _, err := os.Lstat(name); err == nil {
		return fmt.Errorf("%s exists", name)
	}
	if err := os.Rename(l.opts.Path, name); err != nil {
		return err
	}
	f, err := os.OpenFile(l.opts.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	unlock, err := lockFile(f)
	if err != nil {
		f.Close()
		return err
	}
	l.unlock()
	l.f.Close()
	l.f, l.w, l.unlock, l.size = f, f, unlock, 0
	if d, err := os.Open(filepath.Dir(l.opts.Path)); err == nil {
		d.Sync() // make the rename durable
		d.Close()
	}
	return nil
}

// rotateLayout names rotated files; it sorts in time order.
const rotateLayout = "20060102T150405.000000000Z"

// newestRotated returns the newest rotated file of path, or "".
func newestRotated(path string) string {
	matches, _ := filepath.Glob(path + ".*")
	var names []string
	for _, m := range matches {
		if _, err := time.Parse(rotateLayout, strings.TrimPrefix(m, path+".")); err == nil {
			names = append(names, m)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	return names[len(names)-1]
}

// Head returns the sequence number and hash of the last record written
// (0 and ZeroHash for an empty chain). Keeping the head somewhere the
// log's writers cannot reach lets Verify detect records removed from the
// end, which the chain alone cannot.
func (l *Log) Head() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Close flushes the file to stable storage and closes it, if Open opened
// it. It is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Sync()
	l.unlock()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func hashLine(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// maxLine bounds how far back Open looks for the start of the last line.
const maxLine = 64 << 20

// tail returns the last complete line of f (without its newline) and the
// bytes after it when the file does not end with a newline (a torn write).
func tail(f *os.File, size int64) (last, torn []byte, err error) {
	if size == 0 {
		return nil, nil, nil
	}
	const step = 64 << 10
	var buf []byte
	end := size
	for {
		start := max(0, end-step)
		chunk := make([]byte, end-start)
		if _, err := f.ReadAt(chunk, start); err != nil {
			return nil, nil, err
		}
		buf = append(chunk, buf...)
		end = start
		// Need: the final newline (if any) and the newline before it.
		lastNL := bytes.LastIndexByte(buf, '\n')
		complete := buf
		if lastNL != len(buf)-1 { // torn tail
			if lastNL < 0 {
				if start == 0 {
					return nil, buf, nil
				}
				if int64(len(buf)) > maxLine {
					return nil, nil, errors.New("the last line is too long")
				}
				continue
			}
			torn = buf[lastNL+1:]
			complete = buf[:lastNL+1]
		}
		body := complete[:len(complete)-1]
		if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
			return body[i+1:], torn, nil
		}
		if start == 0 {
			return body, torn, nil
		}
		if int64(len(buf)) > maxLine {
			return nil, nil, errors.New("the last line is too long")
		}
		torn = nil
	}
}
