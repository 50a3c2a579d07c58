package console

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/diag"
)

// defaultTTL is how long a runtime setting stays before it reverts.
const defaultTTL = 15 * time.Minute

// process is what belongs to the process rather than to one Server: the
// Go runtime's settings (GOGC, the memory limit), and the one slot in
// which heavy and stop-the-world commands run. Every Server in the
// process shares it, so two consoles (an app that mounts one per
// listener, say) neither revert each other's settings in the wrong order
// nor stop the world at the same time; and how long the full heap dumps
// it observed took, which calibrates the next one's predicted pause.
var process struct {
	flight flight
	tuning tuning
	dumps  dumpHistory
}

// tuning remembers, per setting, the value before the first change and
// the timer that puts it back.
type tuning struct {
	mu      sync.Mutex
	pending map[string]*revert
}

type revert struct {
	original int64
	apply    func(int64) int64
	timer    *time.Timer
	show     func(int64) string
	owner    *Server // whose change is pending: it audits the revert
}

// set applies v with apply, prints before and after, and arranges the
// revert to the value before the first pending change after ttl (0: the
// change stays, and cancels a pending revert).
func (t *tuning) set(s *Server, r *Request, name string, v int64, ttl time.Duration, apply func(int64) int64, show func(int64) string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending = map[string]*revert{}
	}
	before := apply(v)
	original := before
	if old := t.pending[name]; old != nil {
		old.timer.Stop() // if it already fired, its callback finds itself replaced
		original = old.original
	}
	p := &revert{original: original, apply: apply, show: show, owner: s}
	fmt.Fprintf(r.Out, "%s: %s -> %s\n", name, show(before), show(v))
	r.detail = fmt.Sprintf("%s %s -> %s", name, show(before), show(v))
	if ttl == 0 {
		delete(t.pending, name)
		fmt.Fprintln(r.Out, "kept (--ttl 0): it will not revert by itself")
		r.detail += "; kept"
		return
	}
	t.pending[name] = p
	at := time.Now().Add(ttl)
	fmt.Fprintf(r.Out, "reverts to %s at %s (in %s)\n", show(p.original), at.UTC().Format(time.TimeOnly), ttl)
	r.detail += fmt.Sprintf("; reverts to %s at %s", show(p.original), at.UTC().Format(time.RFC3339))
	p.timer = time.AfterFunc(ttl, func() { t.revert(name, p) })
}

func (t *tuning) revert(name string, p *revert) {
	t.mu.Lock()
	defer t.mu.Unlock() // applied under the lock: a concurrent set sees the reverted value
	if t.pending[name] != p {
		return
	}
	delete(t.pending, name)
	was := p.apply(p.original)
	p.owner.auditWrite(audit.Record{Kind: audit.KindRevert, Outcome: audit.OutcomeOK, Detail: fmt.Sprintf("%s %s -> %s (TTL ended)", name, p.show(was), p.show(p.original))})
	p.owner.log.Info("console: runtime setting reverted", "setting", name, "value", p.show(p.original))
}

// revertOwned puts back at once the pending settings whose last change
// came through s (s closes). A setting another Server changed since stays
// with that Server, which reverts it to the value before either change.
func (t *tuning) revertOwned(s *Server) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, p := range t.pending {
		if p.owner != s {
			continue
		}
		delete(t.pending, name)
		p.timer.Stop()
		was := p.apply(p.original)
		s.auditWrite(audit.Record{Kind: audit.KindRevert, Outcome: audit.OutcomeOK, Detail: fmt.Sprintf("%s %s -> %s (console closed)", name, p.show(was), p.show(p.original))})
	}
}

// tuneArgs parses "VALUE [--ttl D]".
func tuneArgs(c *Request) (value string, ttl time.Duration, err error) {
	fs := flag.NewFlagSet(c.cmd.Name, flag.ContinueOnError)
	d := fs.Duration("ttl", defaultTTL, "")
	if err := c.ParseFlags(fs, true); err != nil {
		return "", 0, err
	}
	if fs.NArg() != 1 {
		return "", 0, wire.Errorf(wire.CodeBadRequest, "%s: want one value (usage: %s)", c.cmd.Name, c.cmd.usageLine())
	}
	if *d < 0 {
		return "", 0, wire.Errorf(wire.CodeBadRequest, "%s: --ttl must not be negative", c.cmd.Name)
	}
	return fs.Arg(0), *d, nil
}

func runSetGC(ctx context.Context, c *Request) error {
	arg, ttl, err := tuneArgs(c)
	if err != nil {
		return err
	}
	v := int64(-1)
	if arg != "off" {
		n, err := strconv.Atoi(strings.TrimSuffix(arg, "%"))
		if err != nil || n < 1 || n > 100000 {
			return wire.Errorf(wire.CodeBadRequest, "setgc: want a percentage from 1 to 100000, or off; got %q", arg)
		}
		v = int64(n)
	}
	show := func(p int64) string {
		if p < 0 {
			return "off"
		}
		return strconv.FormatInt(p, 10) + "%"
	}
	process.tuning.set(c.s.srv, c, "GOGC", v, ttl, func(p int64) int64 { return int64(debug.SetGCPercent(int(p))) }, show)
	return nil
}

func runSetMemLimit(ctx context.Context, c *Request) error {
	arg, ttl, err := tuneArgs(c)
	if err != nil {
		return err
	}
	v := int64(math.MaxInt64)
	if arg != "off" {
		if v, err = parseBytes(arg); err != nil || v < 1<<20 {
			return wire.Errorf(wire.CodeBadRequest, "setmemlimit: want a size of at least 1MiB (512MiB, 2GiB, 1073741824) or off; got %q", arg)
		}
	}
	show := func(b int64) string {
		if b == math.MaxInt64 {
			return "off"
		}
		return diag.FormatBytes(float64(b))
	}
	process.tuning.set(c.s.srv, c, "GOMEMLIMIT", v, ttl, debug.SetMemoryLimit, show)
	return nil
}

// parseBytes reads 1073741824, 512MiB, 2GiB, 100MB, 64KiB.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * mult), nil
}

func runFreeOSMemory(ctx context.Context, c *Request) error {
	if err := noFlags(c); err != nil {
		return err
	}
	beforeAfter(c, debug.FreeOSMemory, "/memory/classes/heap/released:bytes", "/memory/classes/total:bytes")
	return nil
}

func runLogLevel(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("loglevel", flag.ContinueOnError)
	if err := c.ParseFlags(fs, true); err != nil {
		return err
	}
	lv := c.s.srv.opts.LogLevel
	if lv == nil {
		return wire.Errorf(wire.CodeBadRequest, "loglevel: this application registered no log level (console.Options.LogLevel)")
	}
	switch fs.NArg() {
	case 0:
		fmt.Fprintln(c.Out, lv.Level())
		return nil
	case 1:
		var l slog.Level
		if err := l.UnmarshalText([]byte(strings.ToUpper(fs.Arg(0)))); err != nil {
			return wire.Errorf(wire.CodeBadRequest, "loglevel: want debug, info, warn or error (optionally +N/-N); got %q", fs.Arg(0))
		}
		before := lv.Level()
		lv.Set(l)
		fmt.Fprintf(c.Out, "log level: %s -> %s\n", before, l)
		c.detail = fmt.Sprintf("log level %s -> %s", before, l)
		return nil
	}
	return wire.Errorf(wire.CodeBadRequest, "loglevel: takes at most one level")
}
