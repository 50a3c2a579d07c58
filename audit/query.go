package audit

import (
	"fmt"
	"strings"
	"time"

	"github.com/opsrepl/opsrepl/access"
)

// Entry is what the log tells of one request, or one record of another
// kind (a session, a refused handshake, a policy change…).
type Entry struct {
	// Record is the request's intent, carrying the request's last policy
	// decision (a further object, such as cmd:heapdump-full, decides after
	// the command's); or the record itself when it is not a request's.
	Record Record
	// Outcome is how the request ended: nil when the log holds none (a
	// crash while it ran), and for other kinds.
	Outcome *Record
	// Records are the request's records as written: its intents, then its
	// outcome. For other kinds, the record alone.
	Records []Record
	// Path is the log file the entry was read from.
	Path string
}

// IsRequest reports whether e is a request (intent and outcome).
func (e *Entry) IsRequest() bool { return e.Record.Kind == KindIntent }

// Filter selects entries. The zero Filter selects every one.
type Filter struct {
	Subject string    // the subject's entries only
	Since   time.Time // entries from this time on
	// Command keeps the requests that ran, or asked for, the command of
	// this name (eval: Go evaluation), further objects included
	// (heapdump: cmd:heapdump-full too); other kinds, only when they name
	// an object.
	Command string
	// Denied keeps the requests the policy refused, and refused
	// handshakes.
	Denied bool
	// Fleet keeps the requests of this fleet request (sent to many
	// consoles at once; read their logs together).
	Fleet string
}

// Match reports whether f selects e.
func (f Filter) Match(e *Entry) bool {
	r := e.Record
	switch {
	case f.Subject != "" && r.Subject != f.Subject,
		f.Fleet != "" && r.Fleet != f.Fleet,
		!f.Since.IsZero() && r.Time.Before(f.Since):
		return false
	case f.Command != "":
		if !e.IsRequest() && r.Object == "" {
			return false
		}
		obj := access.Command(f.Command)
		if f.Command == access.Eval {
			obj = access.Eval
		}
		word, _, _ := strings.Cut(strings.TrimSpace(r.Line), " ")
		if r.Object != obj && !strings.HasPrefix(r.Object, obj+"-") && word != f.Command {
			return false
		}
	}
	return !f.Denied || r.Decision == DecisionDeny || r.Kind == KindHandshake
}

// Entries reads the logs at paths, in the order given, and returns the
// entries f selects in the order their first record was written: each
// request's intent joined with its outcome (by session and request id),
// and the records of other kinds. Lines that are not valid records are
// skipped (Verify says whether the chain holds).
func Entries(f Filter, paths ...string) ([]*Entry, error) {
	var all []*Entry
	open := map[string]*Entry{} // "session/request" → a request awaiting its outcome
	for _, path := range paths {
		err := Scan(path, func(r Record) error {
			key := fmt.Sprint(r.Session, "/", r.Request)
			switch r.Kind {
			case KindIntent:
				if e := open[key]; e != nil {
					// A further decision for the same request supersedes
					// the first.
					if r.Decision != "" {
						e.Record.Object, e.Record.Decision, e.Record.Message = r.Object, r.Decision, r.Message
					}
					e.Records = append(e.Records, r)
					return nil
				}
				e := &Entry{Record: r, Records: []Record{r}, Path: path}
				open[key] = e
				all = append(all, e)
			case KindOutcome:
				if e := open[key]; e != nil {
					rr := r
					e.Outcome = &rr
					e.Records = append(e.Records, r)
					delete(open, key)
					return nil
				}
				// An outcome with no intent before it (a summary of
				// throttled requests, say): an entry of its own, never
				// dropped.
				all = append(all, &Entry{Record: r, Records: []Record{r}, Path: path})
			default:
				all = append(all, &Entry{Record: r, Records: []Record{r}, Path: path})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := all[:0]
	for _, e := range all {
		if f.Match(e) {
			out = append(out, e)
		}
	}
	return out, nil
}
