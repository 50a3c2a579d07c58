package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
)

// Class is how a target's run ended, from the best to the worst.
type Class int

const (
	OK          Class = iota // every line succeeded
	Failed                   // a line failed (an error of the command or of Go)
	Refused                  // the target refused: credentials, policy, limits
	Unreachable              // no session: the target could not be reached, or did not answer in time
)

func (c Class) String() string {
	return [...]string{"ok", "failed", "refused", "unreachable"}[c]
}

// Options configures Run.
type Options struct {
	// Client is the template of every target's connection; Token is
	// replaced by Token(target) when that is set, and Fleet by the run's
	// fleet id.
	Client client.Options
	// Token returns the token for a target. Nil: Client.Token for all.
	Token func(Target) string
	// Fleet is the fleet id sent with every run (see client.Options.Fleet).
	// Default: NewID().
	Fleet string
	// Concurrency is how many targets run at once. Default: 32.
	Concurrency int
	// Timeout is how long a target may stay silent, connecting or between
	// two events of a line, before it counts as unreachable: a long line
	// that keeps reporting (leakcheck, gcwatch, a transfer) runs as long as
	// it needs. Default: 30s.
	Timeout time.Duration
	// MaxOutput is how much text output is kept per target. Default: 1 MiB.
	MaxOutput int
	// Files says where a target's file transfers go. Nil: discarded, after
	// their checks.
	Files func(Target) client.FileFunc
	// Progress is called after each target ends, with the count so far.
	Progress func(done, total int)
}

func (o Options) withDefaults() Options {
	if o.Fleet == "" {
		o.Fleet = NewID()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = 1 << 20
	}
	return o
}

// NewID returns a new fleet id: "f-" and 16 random hex digits.
func NewID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "f-" + hex.EncodeToString(b)
}

// Result is what one target did.
type Result struct {
	Target Target
	Hello  wire.Event // the session's hello (subject, roles)
	Output string     // the text output of every line, in order, up to Options.MaxOutput
	Cut    bool       // output past MaxOutput was dropped
	// Finals are the final events of the lines run, in order; a target
	// stops at its first line that fails.
	Finals []wire.Event
	Err    error // why the target failed; nil when Class is OK
	Class  Class
}

// Run runs lines, in order, in one session on every target, at most
// Options.Concurrency targets at once, and returns one Result per target,
// in the targets' order. ctx ending stops every target.
func Run(ctx context.Context, targets []Target, lines []string, opts Options) []Result {
	opts = opts.withDefaults()
	results := make([]Result, len(targets))
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				results[i] = runOne(ctx, t, lines, opts)
			case <-ctx.Done():
				results[i] = Result{Target: t, Err: ctx.Err(), Class: Unreachable}
			}
			if opts.Progress != nil {
				mu.Lock()
				done++
				opts.Progress(done, len(targets))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return results
}

// ErrSilent is why a target that stayed silent for Options.Timeout
// failed.
var ErrSilent = errors.New("fleet: the target stayed silent for the timeout")

func runOne(ctx context.Context, t Target, lines []string, opts Options) Result {
	r := Result{Target: t}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silence := time.AfterFunc(opts.Timeout, func() { cancel(fmt.Errorf("%w (%s)", ErrSilent, opts.Timeout)) })
	defer silence.Stop()
	co := opts.Client
	co.Fleet = opts.Fleet
	if opts.Token != nil {
		co.Token = opts.Token(t)
	}
	c, err := client.Dial(ctx, t.URL, co)
	if err != nil {
		r.Err, r.Class = err, classify(err)
		if cause := context.Cause(ctx); errors.Is(cause, ErrSilent) {
			r.Err, r.Class = cause, Unreachable
		}
		return r
	}
	silence.Reset(opts.Timeout)
	defer c.Close()
	r.Hello = c.Hello()
	var out strings.Builder
	var keep client.FileFunc
	if opts.Files != nil {
		keep = opts.Files(t)
	}
	// A transfer's bytes are news from the target too.
	files := func(ev wire.Event) (client.Sink, error) {
		var s client.Sink = client.WriterSink(io.Discard)
		if keep != nil {
			var err error
			if s, err = keep(ev); err != nil {
				return nil, err
			}
		}
		return lively{s, func() { silence.Reset(opts.Timeout) }}, nil
	}
	for _, line := range lines {
		final, err := c.Run(ctx, line, client.Handler{
			Event: func(ev wire.Event) error {
				silence.Reset(opts.Timeout)
				if ev.Type == wire.EventOutput || ev.Type == wire.EventNotice {
					text := ev.Data
					if ev.Type == wire.EventNotice {
						text = "(" + ev.Message + ")\n"
					}
					if room := opts.MaxOutput - out.Len(); len(text) > room {
						text, r.Cut = text[:max(room, 0)], true
					}
					out.WriteString(text)
				}
				return nil
			},
			File: files,
		})
		r.Finals = append(r.Finals, final)
		if err != nil {
			silence.Stop()
			r.Err, r.Class = err, classify(err)
			if cause := context.Cause(ctx); cause != nil && errors.Is(err, context.Canceled) {
				r.Err, r.Class = cause, Unreachable
			}
			break
		}
		if final.Value != "" {
			out.WriteString(final.Value + "\n")
		}
	}
	r.Output = out.String()
	return r
}

// lively is a Sink that reports each write.
type lively struct {
	client.Sink
	alive func()
}

func (l lively) Write(b []byte) (int, error) {
	l.alive()
	return l.Sink.Write(b)
}

// classify says which Class an error of a target belongs to.
func classify(err error) Class {
	var re *client.RefusedError
	var we *wire.Error
	switch {
	case err == nil:
		return OK
	case errors.As(err, &re):
		return Refused
	case errors.As(err, &we):
		switch we.Code {
		case wire.CodeForbidden, wire.CodeUnauthenticated, wire.CodeThrottled, wire.CodeLimit, wire.CodeReasonRequired:
			return Refused
		}
		return Failed
	case errors.Is(err, client.ErrIncomplete), errors.As(err, new(*client.FileError)):
		return Failed // unfinished Go; a file that failed its checks or could not be kept
	}
	return Unreachable // dial errors, a connection lost, the target's time limit
}

// Worst returns the worst Class among results (OK for none).
func Worst(results []Result) Class {
	w := OK
	for _, r := range results {
		w = max(w, r.Class)
	}
	return w
}
