package watchfile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"time"
)

// Options configures Watch.
type Options struct {
	// Path is the file watched. Required.
	Path string
	// Interval is how often it is read. Default: 500ms.
	Interval time.Duration
	// Quiet is how long new content must stay the same before it is
	// handed over. Default: 3s.
	Quiet time.Duration
}

// Hash is the SHA-256 (hex) of content, by which Watch tells versions
// apart.
func Hash(content []byte) string {
	h := sha256.Sum256(content)
	return hex.EncodeToString(h[:])
}

// Watch reads the file every Interval until ctx is done, and calls settled
// with a content (or a read error) once it differs from the last one
// settled (initially current, the hash of the content in force) and has
// stayed the same for Quiet. The bytes handed over are those read last,
// not another read.
func Watch(ctx context.Context, opts Options, current string, settled func(content []byte, err error)) {
	if opts.Interval <= 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.Quiet <= 0 {
		opts.Quiet = 3 * time.Second
	}
	t := time.NewTimer(opts.Interval)
	defer t.Stop()
	var seen string     // last content read
	var since time.Time // when seen was first read
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := os.ReadFile(opts.Path)
		h := "unreadable"
		if err == nil {
			h = Hash(b)
		}
		// A timer, not a ticker: the next read is a full interval after
		// this one, whatever this one cost.
		t.Reset(opts.Interval)
		if h != seen {
			seen, since = h, time.Now() // wait for the content to stay
			continue
		}
		if h == current || time.Since(since) < opts.Quiet {
			continue
		}
		current = h
		settled(b, err)
	}
}
