package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	KindTokens    = "tokens"    // the token file changed: reloaded (and who was revoked) or rejected
	KindRecover   = "recover"   // the log was reopened after a crash left a torn line
	KindReopen    = "reopen"    // the live file was renamed, removed or replaced; a new one continues the chain
	KindNote      = "note"      // anything else the embedding application records
)

// Decisions, in Record.Decision: what the policy said of a request.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Outcomes, in Record.Outcome. A request's outcome is OutcomeOK,
// OutcomeIncomplete, or the code of its error (package wire's codes:
// forbidden, timeout, canceled…); a refused handshake's is its code too.
const (
	OutcomeOK         = "ok"         // a request or an action succeeded
	OutcomeIncomplete = "incomplete" // unfinished Go source: nothing ran
	OutcomeOpen       = "open"       // a session opened
	OutcomeClosed     = "closed"     // a session closed
	OutcomeRevoked    = "revoked"    // a session closed: its subject's credentials were revoked
	OutcomeReloaded   = "reloaded"   // a policy or token file was taken
	OutcomeRejected   = "rejected"   // a policy or token file was refused; the old one stays
)

// zeroHash is the prev of the first record of a chain.
const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// File is a file a request sent: its name, and its size and SHA-256 as
// announced to the client, which checks the bytes against them and keeps
// the file only if they match. The console does not hash the bytes a
// second time: the command that sends a file computes its SHA-256 from
// what it sends (heapdump --full from its unlinked temporary file). Sent
// is how many bytes were handed to the connection (fewer than Size when
// the transfer stopped).
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Sent   int64  `json:"sent"`
	SHA256 string `json:"sha256"`
}

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
	// Client is the client's User-Agent, on a session's open record.
	Client string `json:"client,omitempty"`
	// Request is the request id within the session.
	Request uint64 `json:"request,omitempty"`
	// Fleet is the fleet request a request belongs to, as its client
	// named it (one id across every console it was sent to).
	Fleet string `json:"fleet,omitempty"`
	// Line is the request as the operator sent it (a command line, or the
	// full Go source of an eval), after redaction.
	Line string `json:"line,omitempty"`
	// LineBytes and LineSHA256, when set, say that Line holds only the
	// start of the request's line, and describe the whole (before
	// redaction): a refused request's record is kept short.
	LineBytes  int64  `json:"line_bytes,omitempty"`
	LineSHA256 string `json:"line_sha256,omitempty"`
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
	// OutputBytes and OutputSHA256 describe the text output the request
	// sent back.
	OutputBytes  int64  `json:"output_bytes,omitempty"`
	OutputSHA256 string `json:"output_sha256,omitempty"`
	// Files are the files the request sent, as announced to the client.
	Files []File `json:"files,omitempty"`
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
	// Detail, Reason) after the built-in redaction. The built-in redaction
	// goes by where text comes from: what the operator typed (Line,
	// Reason) loses bearer tokens, Authorization values, runs of 64 or
	// more hex digits and password-like assignments; in the text the
	// console writes itself (Message, Detail) only those same values are
	// replaced, wherever they are quoted, so that subjects, hashes and
	// other values of the console's own stay as they are.
	// Default: built-in redaction only.
	Redact func(string) string
	// Logger receives a line when the live file is found renamed, removed
	// or replaced (the log then continues in a new file at Path, starting
	// with a reopen record). Default: none.
	Logger *slog.Logger
	// Mirror, if set, receives a copy of each record as one JSON line,
	// once it is written to the file (before its fsync: should the fsync
	// fail, its request is refused, and after a crash the file, which the
	// chain protects, is what counts): os.Stderr, for a
	// cluster's log pipeline (Fluent Bit, Vector, Loki) to collect next to
	// the hash-chained file, which stays the record. A slow or failing
	// mirror never holds up the log: up to MirrorBuffer lines wait for
	// it, and past that lines are dropped and counted (a line
	// {"kind":"mirror","dropped":N} says so). Close waits up to a second
	// for it to catch up. Default: none.
	Mirror io.Writer
}

// MirrorBuffer is how many records may wait for a slow Options.Mirror.
const MirrorBuffer = 4096

// Log appends hash-chained records. It is safe for concurrent use; one
// Log, in one process, owns a file at a time (Open takes a lock).
type Log struct {
	discard bool // Discard
	mu      sync.Mutex
	opts    Options
	f       *os.File  // nil for New
	w       io.Writer // f, or New's writer
	unlock  func()
	size    int64
	seq     uint64
	head    string // hash of the last record written
	err     error  // a failed write: the log refuses everything after it
	closed  bool
	mirror  *mirror // Options.Mirror's queue, or nil
	// holdRotation keeps the next record in the current file.
	holdRotation bool
	checked      time.Time // when the path was last checked (checkPath)

	// Group commit (WriteSync): records are appended under mu, then one
	// caller at a time (syncMu) fsyncs for everyone appended so far,
	// outside mu, so that other sessions append meanwhile and share the
	// next fsync. fileMu keeps the file open while it is being synced: a
	// rotation or a reopen swaps it only under fileMu's write lock.
	syncMu sync.Mutex
	synced uint64 // the highest seq known on stable storage; under syncMu
	fileMu sync.RWMutex
	// serialSync makes WriteSync fsync under mu for each record: for a
	// writer given to New, which need not be safe for a Sync concurrent
	// with a Write, and as the benchmark's baseline. Set before use.
	serialSync bool
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: log is closed")

// Open opens the log at opts.Path, continuing the chain of the records
// already there, or of the rotated file next to it whose last record has
// the highest seq (when a crash at a rotation left the live file missing,
// empty, or holding only an incomplete line). A final line left
// incomplete by a crash is kept, and a recover record describing it is
// written after it; a final record that only lost its newline gets it
// back. Open
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
	l := &Log{opts: opts, f: f, w: f, unlock: unlock, head: zeroHash}
	if opts.Mirror != nil {
		l.mirror = startMirror(opts.Mirror)
	}
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
	t, err := tail(f, l.size)
	if err != nil {
		return fail(err)
	}
	if t.last != nil {
		r, ok := parseRecord(t.last)
		if !ok {
			return fail(errors.New("the last record is not a valid audit record; run ops-repl audit verify, and move the file aside to start a new log"))
		}
		l.seq, l.head = r.Seq, hashLine(t.last)
	}
	// The chain may end in a rotated file: a crash between a rotation's
	// rename and the first complete record of the new file leaves the live
	// file missing, empty, or holding only a torn line. The rotated file
	// to continue is the one whose last record has the highest seq, whatever
	// the names say (the clock may have stepped back).
	seq, last, err := rotatedEnd(opts.Path)
	if err != nil {
		return fail(err)
	}
	if seq > l.seq {
		l.seq, l.head = seq, hashLine(last)
	}
	if t.tornBytes > 0 {
		if _, err := f.Write([]byte("\n")); err != nil {
			return fail(err)
		}
		l.size++
		if r, ok := parseRecord(t.torn); ok && r.Seq == l.seq+1 && r.Prev == l.head {
			// Only the newline was lost: the record is whole and chains.
			l.seq, l.head = r.Seq, hashLine(t.torn)
		} else {
			// The crash cut a record short: keep it, and say so right
			// after it, in the same file (no rotation in between).
			l.holdRotation = true
			err := l.Write(Record{Kind: KindRecover, Outcome: OutcomeOK, TornBytes: t.tornBytes, TornSHA256: t.tornSHA,
				Message: "the previous line is an incomplete record left by a write that did not finish (a crash, a power loss or a full disk); the chain continues from the record before it"})
			l.holdRotation = false
			if err != nil {
				return fail(err)
			}
		}
	}
	return l, nil
}

// Discard is a Log that keeps nothing, like io.Discard. A console
// requires an audit log: Discard is how an application runs one
// unaudited, knowingly and visibly in its code.
var Discard = &Log{discard: true}

// New returns a Log that writes a fresh chain to w (no rotation, no
// lock). WriteSync calls w's Sync method, if it has one.
func New(w io.Writer) *Log {
	return &Log{w: w, head: zeroHash, opts: Options{MaxBytes: -1}, serialSync: true}
}

// Write appends r as one line, in one write call, setting r.Seq and
// r.Prev (and r.Time, when zero). Free-text fields are redacted first.
// After a failed write the Log refuses every later one: the chain cannot
// be continued safely.
func (l *Log) Write(r Record) error { return l.write(r, false) }

// WriteSync is Write followed by fsync: when it returns nil, the record
// (and every earlier one) is on stable storage. Concurrent callers share
// fsyncs (group commit): each waits for one that began after its record
// was written.
func (l *Log) WriteSync(r Record) error { return l.write(r, true) }

func (l *Log) write(r Record, durable bool) error {
	if l.discard {
		return nil
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	l.redactRecord(&r)

	seq, err := l.appendChecked(r, durable && l.serialSync)
	if err != nil || !durable || l.serialSync {
		return err
	}
	return l.syncTo(seq)
}

// appendChecked appends r, after looking whether the log may still be
// written and its path still names its file, and returns r's seq.
func (l *Log) appendChecked(r Record, durable bool) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.err != nil {
		return 0, l.err
	}
	if l.f != nil && time.Since(l.checked) >= pathCheckEvery {
		l.checked = time.Now()
		if err := l.checkPath(); err != nil {
			l.err = fmt.Errorf("audit: %w", err)
			return 0, l.err
		}
	}
	if err := l.append(r, durable); err != nil {
		return 0, err
	}
	return l.seq, nil
}

// syncTo returns once the record seq is on stable storage: at once if an
// fsync that began after it was written has ended; else it fsyncs, for
// every record written so far. Called without mu.
func (l *Log) syncTo(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= seq {
		return nil
	}
	l.mu.Lock()
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return err
	}
	if l.closed { // Close synced the file, or set l.err (above) when it could not
		l.mu.Unlock()
		return nil
	}
	w, upTo := l.w, l.seq
	l.fileMu.RLock()
	l.mu.Unlock()
	var err error
	if s, ok := w.(interface{ Sync() error }); ok {
		err = s.Sync()
	}
	l.fileMu.RUnlock()
	if err != nil {
		l.mu.Lock()
		if l.err == nil {
			l.err = fmt.Errorf("audit: sync: %w", err)
		}
		err = l.err
		l.mu.Unlock()
		return err
	}
	l.synced = upTo
	return nil
}

// append writes r as the next record. Called with l.mu held.
func (l *Log) append(r Record, durable bool) error {
	r.Seq, r.Prev = l.seq+1, l.head
	var enc bytes.Buffer
	je := json.NewEncoder(&enc)
	je.SetEscapeHTML(false) // < > & as themselves: a line of them is not six times its size
	if err := je.Encode(r); err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	b := enc.Bytes() // ends with the newline
	if l.f != nil && l.opts.MaxBytes > 0 && !l.holdRotation && l.size > 0 && l.size+int64(len(b)) > l.opts.MaxBytes {
		if err := l.rotate(); err != nil {
			l.err = fmt.Errorf("audit: rotate: %w", err)
			return l.err
		}
	}
	n, err := l.w.Write(b)
	l.size += int64(n)
	if err != nil {
		l.err = fmt.Errorf("audit: write failed: %w", err)
		if errors.Is(err, syscall.ENOSPC) {
			l.err = fmt.Errorf("audit: write failed (no space left on the device; %d bytes of a record written): %w", n, err)
		}
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
	l.mirror.send(b)
	return nil
}

// mirror copies records to Options.Mirror on a goroutine of its own.
type mirror struct {
	lines   chan []byte
	dropped atomic.Int64
	done    chan struct{}
}

func startMirror(w io.Writer) *mirror {
	m := &mirror{lines: make(chan []byte, MirrorBuffer), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for b := range m.lines {
			if n := m.dropped.Swap(0); n > 0 {
				fmt.Fprintf(w, "{\"kind\":\"mirror\",\"dropped\":%d}\n", n)
			}
			w.Write(b)
		}
	}()
	return m
}

// send queues a copy of line, or counts it dropped when the queue is full.
func (m *mirror) send(line []byte) {
	if m == nil {
		return
	}
	select {
	case m.lines <- bytes.Clone(line):
	default:
		m.dropped.Add(1)
	}
}

// stop ends the mirror after what is queued, waiting at most a second.
func (m *mirror) stop() {
	if m == nil {
		return
	}
	close(m.lines)
	select {
	case <-m.done:
	case <-time.After(time.Second):
	}
}

// pathCheckEvery is how often a write looks whether the log's path still
// names the file being written.
var pathCheckEvery = 500 * time.Millisecond

// checkPath notices that the live file was renamed, removed or replaced
// (sed -i and most editors write a new file and rename it over the old):
// the log would go on writing to a file no one sees. It puts a new file at
// the path (keeping a replacement aside, as PATH.replaced-<time>) and
// continues the chain there, starting with a record that says what
// happened. Called with l.mu held.
func (l *Log) checkPath() error {
	cur, err := l.f.Stat()
	if err != nil {
		return err
	}
	there, err := os.Stat(l.opts.Path)
	if err == nil && os.SameFile(cur, there) {
		return nil
	}
	what := "the live file was removed or renamed; the records before this one are in that file"
	if err == nil {
		aside := l.opts.Path + ".replaced-" + time.Now().UTC().Format(rotateLayout)
		if err := os.Rename(l.opts.Path, aside); err != nil {
			return fmt.Errorf("moving a replaced log aside: %w", err)
		}
		what = "the live file was replaced by another file, kept as " + aside + "; the records before this one are in the file that was replaced"
	}
	f, err := os.OpenFile(l.opts.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("reopening: %w", err)
	}
	unlock, err := lockFile(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("reopening: %w", err)
	}
	if err := l.f.Sync(); err != nil { // what was written to it must stay: someone may wait for it
		unlock()
		f.Close()
		return fmt.Errorf("syncing the file that was moved or replaced: %w", err)
	}
	l.swap(f, unlock)
	if l.opts.Logger != nil {
		l.opts.Logger.Error("audit: the log file changed under the process; a new file continues the chain", "path", l.opts.Path, "what", what)
	}
	return l.append(Record{Time: time.Now().UTC(), Kind: KindReopen, Outcome: OutcomeOK, Message: what}, true)
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
	l.swap(f, unlock)
	return nil
}

// swap makes f (locked, unlock releasing it) the live file, once no fsync
// is under way, and makes the folder's new entries durable. Called with
// l.mu held, the old file synced.
func (l *Log) swap(f *os.File, unlock func()) {
	l.unlock()
	l.fileMu.Lock()
	l.f.Close()
	l.f, l.w, l.unlock, l.size = f, f, unlock, 0
	l.fileMu.Unlock()
	if d, err := os.Open(filepath.Dir(l.opts.Path)); err == nil {
		d.Sync() // the rename and the new file's name
		d.Close()
	}
}

// rotateLayout names rotated files; it sorts in time order.
const rotateLayout = "20060102T150405.000000000Z"

// rotatedFiles returns the rotated files of path.
func rotatedFiles(path string) []string {
	matches, _ := filepath.Glob(path + ".*")
	var names []string
	for _, m := range matches {
		if _, err := time.Parse(rotateLayout, strings.TrimPrefix(m, path+".")); err == nil {
			names = append(names, m)
		}
	}
	sort.Strings(names)
	return names
}

// rotatedEnd returns the last record of the rotated files of path with
// the highest seq (0 if there is none).
func rotatedEnd(path string) (seq uint64, last []byte, err error) {
	for _, name := range rotatedFiles(path) {
		f, err := os.Open(name)
		if err != nil {
			return 0, nil, err
		}
		st, err := f.Stat()
		var t tailInfo
		if err == nil {
			t, err = tail(f, st.Size())
		}
		f.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("reading %s: %w", name, err)
		}
		if t.last == nil {
			continue
		}
		if r, ok := parseRecord(t.last); ok && r.Seq > seq {
			seq, last = r.Seq, t.last
		}
	}
	return seq, last, nil
}

// Head returns the sequence number and hash of the last record written
// (0 and zeroHash for an empty chain). Keeping the head somewhere the
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
	if l.discard {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	defer l.mirror.stop()
	if l.f == nil {
		return nil
	}
	err := l.f.Sync()
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("audit: sync at close: %w", err) // what waits for an fsync learns it failed
	}
	l.unlock()
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func hashLine(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// maxLine bounds the last complete line Open reads back (records are far
// smaller: a request line is at most 512 KiB before JSON escaping).
const maxLine = 64 << 20

// tailInfo describes the end of a log file.
type tailInfo struct {
	last      []byte // the last complete line, without its newline; nil if none
	tornBytes int64  // bytes after the last newline (a torn write), 0 if none
	tornSHA   string // their SHA-256
	torn      []byte // those bytes, when small enough to be a record
}

// tail reads the end of f in linear time: it finds the last newline and
// the one before it scanning backwards, hashes a torn tail as a stream,
// and reads only the last line.
func tail(f *os.File, size int64) (tailInfo, error) {
	var t tailInfo
	if size == 0 {
		return t, nil
	}
	lastNL, err := lastIndexByte(f, size, 0)
	if err != nil {
		return t, err
	}
	if lastNL != size-1 { // bytes after the last newline
		start := lastNL + 1
		t.tornBytes = size - start
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, start, t.tornBytes)); err != nil {
			return t, err
		}
		t.tornSHA = hex.EncodeToString(h.Sum(nil))
		if t.tornBytes <= maxLine {
			t.torn = make([]byte, t.tornBytes)
			if _, err := f.ReadAt(t.torn, start); err != nil {
				return t, err
			}
		}
	}
	if lastNL < 0 {
		return t, nil
	}
	prevNL, err := lastIndexByte(f, lastNL, max(0, lastNL-maxLine))
	if err != nil {
		return t, err
	}
	if prevNL < 0 && lastNL > maxLine {
		return t, errors.New("the last record is too long")
	}
	t.last = make([]byte, lastNL-(prevNL+1))
	_, err = f.ReadAt(t.last, prevNL+1)
	return t, err
}

// lastIndexByte returns the offset of the last newline in f[floor:end), or
// -1.
func lastIndexByte(f *os.File, end, floor int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end > floor {
		start := max(floor, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return start + int64(i), nil
		}
		end = start
	}
	return -1, nil
}

// parseRecord reads b as a record with a sequence number and a prev hash.
func parseRecord(b []byte) (Record, bool) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil || r.Seq == 0 || len(r.Prev) != len(zeroHash) {
		return r, false
	}
	return r, true
}
