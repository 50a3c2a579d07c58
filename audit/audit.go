package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Record kinds.
const (
	KindRequest   = "request"   // a request on an open session
	KindHandshake = "handshake" // a refused connection attempt
	KindSession   = "session"   // a session opened or closed
	KindRevert    = "revert"    // a runtime setting went back when its TTL ended
)

// Record is one audit line.
type Record struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Session string    `json:"session,omitempty"`
	Subject string    `json:"subject,omitempty"`
	Remote  string    `json:"remote,omitempty"`
	// Request is the request id within the session.
	Request uint64 `json:"request,omitempty"`
	// Line is the input as the operator typed it.
	Line string `json:"line,omitempty"`
	// Object is the policy object the request was checked against.
	Object string `json:"object,omitempty"`
	// Decision is "allow" or "deny" for requests that reached the policy.
	Decision string `json:"decision,omitempty"`
	// Outcome is "ok", or an error code from package wire, or for sessions
	// "open" and "closed".
	Outcome string `json:"outcome"`
	// Message explains a failure.
	Message string `json:"message,omitempty"`
	// Detail records what a request changed (before and after values).
	Detail     string  `json:"detail,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

// Log appends records. It is safe for concurrent use.
type Log struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	closed bool
}

// Open opens (or creates, mode 0600) the file at path for appending.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &Log{w: f, closer: f}, nil
}

// New returns a Log that writes to w.
func New(w io.Writer) *Log { return &Log{w: w} }

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: log is closed")

// Write appends r as one line, in one write call. A zero r.Time is set to
// the current time.
func (l *Log) Write(r Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if _, err := l.w.Write(b); err != nil {
		return fmt.Errorf("audit: write: %w", err)
	}
	return nil
}

// Close closes the underlying file, if Open opened it. It is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}
