package console

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opsrepl/opsrepl/access"

	"github.com/opsrepl/opsrepl/console/wire"
)

// Cost says what running a command costs the process it inspects.
type Cost int

const (
	// Cheap commands run at once, any number at a time.
	Cheap Cost = iota
	// Heavy commands run one at a time per process (a second caller gets a
	// busy error naming who holds it and since when).
	Heavy
	// StopsTheWorld commands are Heavy and pause the whole process: they
	// run only with --yes, after saying how long the pause should last.
	StopsTheWorld
)

func (c Cost) String() string {
	switch c {
	case Heavy:
		return "heavy"
	case StopsTheWorld:
		return "stops the world"
	}
	return "cheap"
}

// Command is one entry of the command table. Built-in commands and those
// an application adds through Options.Commands live in the same table,
// which drives dispatch, help, completion and policy validation: a command
// runs only after the policy allows cmd:<Name> (action run) for the
// subject, and every run is audited.
type Command struct {
	// Name is the word that runs the command: letters, digits and dashes.
	// Required.
	Name string
	// Usage shows the arguments in help, e.g. "[--gc] [--filter REGEX]".
	Usage string
	// Summary is the one-line description in help's list: about 60
	// characters fit an 80-column terminal (longer ones wrap). Required.
	Summary string
	// Help is shown by help NAME after the usage and summary: details
	// on the arguments and what the command does. Optional.
	Help string
	// Cost is the command's cost class. Default: Cheap.
	Cost Cost
	// Pause predicts the stop-the-world pause of a StopsTheWorld command,
	// shown when it asks for --yes. Default: none shown.
	Pause func() time.Duration
	// Requires lists the further policy objects a run may need on top of
	// cmd:NAME, asked for with Request.Require: cmd:heapdump-full for
	// heapdump --full, say. A policy may name them (CheckObjects accepts
	// them); Require refuses an object not listed. Default: none.
	Requires []string
	// Run does the work, writing to req.Out. Errors of type *wire.Error are
	// shown to the operator as they are; any other error is logged and
	// reported as "internal". Required.
	Run func(ctx context.Context, req *Request) error

	open bool // runs without a policy check (reason: it grants nothing)
}

// object is the policy object of the command.
func (c *Command) object() string { return access.CommandPrefix + c.Name }

func (c *Command) usageLine() string { return strings.TrimSpace(c.Name + " " + c.Usage) }

// Request is one run of a command.
type Request struct {
	// Args are the words after the command name, split like a shell's.
	Args []string
	// Subject is who runs the command.
	Subject string
	// Out streams text to the operator.
	Out io.Writer

	s      *session
	id     uint64
	cmd    *Command
	run    *run
	raw    string // the line after the command name
	yes    bool   // the line had --yes
	value  string
	detail string // for the audit record
}

// Require checks a further policy object for this run, one the command
// lists in Requires (a flag that needs more rights than the command, such
// as heapdump --full): the policy, a reason if the policy wants one, and a
// further intent record, synced before the run goes on.
func (r *Request) Require(object string) error {
	if !slices.Contains(r.cmd.Requires, object) {
		return fmt.Errorf("console: command %s asked for %s, which its Requires does not list", r.cmd.Name, object)
	}
	return r.s.authorize(r.run, object, wire.Errorf(wire.CodeForbidden, "%s may not run %s (policy object %s, action run)", r.Subject, strings.TrimPrefix(object, access.CommandPrefix), object))
}

// Confirm returns nil when the operator confirmed the run with --yes (the
// console's confirmation flag: it is taken out of Args for every command,
// so a command does not define a flag of that name), and
// otherwise the error that asks for it, saying what stops the world and
// for how long. A StopsTheWorld command is confirmed before it runs; a
// command that stops the world only with some flags calls Confirm.
func (r *Request) Confirm(what string, pause time.Duration) error {
	if r.yes {
		return nil
	}
	return wire.Errorf(wire.CodeBadRequest, "%s stops the whole process for about %s; run it again with %s to go ahead", what, pause.Round(time.Millisecond), yesFlag)
}

// ParseFlags parses req.Args with fs; a bad flag is a bad_request error
// that shows the command's usage. Flags may come before or after
// positional arguments ("profile cpu --seconds 5"); "--" ends the flags.
// Positional arguments are an error unless positional is true (then they
// are in fs.Args()).
func (r *Request) ParseFlags(fs *flag.FlagSet, positional bool) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var rest []string
	args := r.Args
	for {
		if err := fs.Parse(args); err != nil {
			return wire.Errorf(wire.CodeBadRequest, "%s: %v (usage: %s)", r.cmd.Name, err, r.cmd.usageLine())
		}
		if fs.NArg() == 0 {
			break
		}
		if n := len(args) - fs.NArg(); n > 0 && args[n-1] == "--" { // everything after -- is positional
			rest = append(rest, fs.Args()...)
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	fs.Parse(append([]string{"--"}, rest...)) // leave the positional arguments in fs.Args()
	if !positional && fs.NArg() > 0 {
		return wire.Errorf(wire.CodeBadRequest, "%s: unexpected argument %q (usage: %s; to evaluate Go that starts with %q, write: eval %s …)",
			r.cmd.Name, fs.Arg(0), r.cmd.usageLine(), r.cmd.Name, r.cmd.Name)
	}
	return nil
}

// SendFile sends data to the operator as a file transfer; the client
// saves it under name (a plain file name) and checks its SHA-256.
func (r *Request) SendFile(ctx context.Context, name string, data []byte) error {
	return r.s.sendFile(ctx, r.id, name, data, r.run.tally)
}

// SendStream sends size bytes read from src as a file transfer, in chunks
// (it holds one at a time, whatever the size); sha256 (hex) must be the
// SHA-256 of exactly those bytes: the client checks it, and the request's
// audit record lists the file by it (the console does not hash the bytes
// again). A read that ends early fails the request.
func (r *Request) SendStream(ctx context.Context, name string, size int64, sha256 string, src io.Reader) error {
	return r.s.sendStream(ctx, r.id, name, size, sha256, src, r.run.tally)
}

// Allowed reports whether the policy lets this request's subject have
// object (cmd:NAME, eval, pkg:PATH), without recording a decision: for
// output that depends on it, as help's list does. A permission the run
// needs goes through Require, which is audited.
func (r *Request) Allowed(object string) bool { return r.s.allowed(object) }

// Flush sends buffered output now: streaming commands call it after each
// sample.
func (r *Request) Flush() {
	if ew, ok := r.Out.(*eventWriter); ok {
		ew.flush()
	}
}

// Exclusive takes the process's heavy-command slot for a run that turns
// out heavy because of its flags (a busy error names who holds it); Heavy
// and StopsTheWorld commands hold it already, and get a release that does
// nothing. Call release when the heavy part is done.
func (r *Request) Exclusive() (release func(), err error) {
	if r.cmd.Cost != Cheap {
		return func() {}, nil
	}
	return process.flight.acquire(fmt.Sprintf("%s (run by %s)", r.cmd.Name, r.Subject))
}

// yesFlag is the confirmation a StopsTheWorld command needs.
const yesFlag = "--yes"

// confirm takes --yes out of args (the console's confirmation flag, for
// every command), and refuses a StopsTheWorld command without it.
func confirm(cmd *Command, args []string) (rest []string, yes bool, err error) {
	rest = args[:0:0]
	for _, a := range args {
		if a == yesFlag || a == "-yes" {
			yes = true
			continue
		}
		rest = append(rest, a)
	}
	if cmd.Cost == StopsTheWorld && !yes {
		var pause time.Duration
		if cmd.Pause != nil {
			pause = cmd.Pause()
		}
		r := &Request{cmd: cmd}
		return nil, false, r.Confirm(cmd.Name, pause)
	}
	return rest, yes, nil
}

// flight lets one Heavy or StopsTheWorld command run at a time in the
// process.
type flight struct {
	mu     sync.Mutex
	holder string
	since  time.Time
}

func (f *flight) acquire(holder string) (release func(), err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holder != "" {
		return nil, wire.Errorf(wire.CodeBusy, "%s is already running (since %s, %s ago); heavy commands run one at a time: try again when it ends",
			f.holder, f.since.UTC().Format(time.TimeOnly), time.Since(f.since).Round(time.Second))
	}
	f.holder, f.since = holder, time.Now()
	return func() {
		f.mu.Lock()
		f.holder = ""
		f.mu.Unlock()
	}, nil
}
