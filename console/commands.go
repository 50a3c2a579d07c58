package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opsrepl/opsrepl/access"

	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/diag"
)

const (
	evalWord = "eval" // line prefix that forces Go evaluation
	heapName = "heap-%s.pb.gz"
)

func builtinCommands() []*Command {
	return []*Command{
		{Name: "help", Usage: "[COMMAND]", Summary: "list your commands, or show how to use one", Run: runHelp},
		{Name: "whoami", Summary: "show your subject, roles and session", Run: runWhoami},
		{Name: "memstats", Usage: "[--json] [--watch INTERVAL [--count N]]", Summary: "memory and GC figures (no stop-the-world)", Run: runMemstats,
			Help: "From runtime/metrics. --json prints one JSON object; --watch prints them every INTERVAL, --count times (default: until cancelled)."},
		{Name: "goroutines", Usage: "[--full --yes] [--filter REGEX]", Summary: "goroutine stacks, grouped, with counts", Run: runGoroutines,
			Help: "Identical stacks are grouped; --filter keeps the groups whose stack matches REGEX. --full lists every goroutine, at the cost of one stop-the-world pause."},
		{Name: "gcwatch", Usage: "[--count N]", Summary: "one line per GC cycle, until cancelled", Run: runGCWatch,
			Help: "Each line shows the heap live after the cycle and its longest pause; --count stops after N cycles."},
		{Name: "buildinfo", Summary: "Go version, module versions, build settings", Run: runBuildinfo},
		{Name: "gc", Summary: "run a GC; show the heap before and after", Cost: Heavy, Run: runGC},
		{Name: "heapdump", Usage: "[--gc | --after-gc [--wait DURATION] | --full --yes]", Summary: "download a heap profile (pprof)", Cost: Heavy, Run: runHeapdump,
			Requires: []string{objHeapdumpFull},
			Help:     "Open it with go tool pprof. --gc runs a GC first; --after-gc waits for the next GC cycle (at most --wait, 10m or less) and snapshots right after it. --full --yes writes a runtime heap dump instead: it stops the world, and needs cmd:heapdump-full."},
		{Name: "leakcheck", Usage: "[--for DURATION | --cycles N] [--top N]", Summary: "does the heap grow across GC cycles, and where?", Cost: Heavy, Run: runLeakcheck,
			Help: leakcheckHelp},
		{Name: "profile", Usage: "cpu|heap|allocs|block|mutex|goroutine|threadcreate [--seconds N]", Summary: "download a pprof profile", Cost: Heavy, Run: runProfile,
			Help: "cpu is sampled for --seconds (default 10); the others are snapshots. Open it with go tool pprof."},
		{Name: "trace", Usage: "[--seconds N]", Summary: "download an execution trace (go tool trace)", Cost: Heavy, Run: runTrace,
			Help: "It records --seconds of execution, default 1."},
		{Name: "freeosmemory", Summary: "run a GC, return freed memory to the OS", Cost: Heavy, Run: runFreeOSMemory},
		{Name: "setgc", Usage: "PERCENT|off [--ttl DURATION]", Summary: "set GOGC for a while", Run: runSetGC,
			Help: "It reverts after --ttl (default 15m; 0 keeps it)."},
		{Name: "setmemlimit", Usage: "BYTES|off [--ttl DURATION]", Summary: "set the soft memory limit (GOMEMLIMIT)", Run: runSetMemLimit,
			Help: "BYTES such as 512MiB or 2GiB. It reverts after --ttl (default 15m; 0 keeps it)."},
		{Name: "loglevel", Usage: "[debug|info|warn|error]", Summary: "show or set the application's log level", Run: runLogLevel},
		{Name: "reset", Summary: "discard your Go interpreter and its state", Run: runReset},
		{Name: "vars", Summary: "list the packages and variables your Go reaches", Run: runVars},
		{Name: "reason", Usage: "[TEXT]", Summary: "say why you are here (for the audit log)", Run: runReason, open: true,
			Help: "The reason is recorded with each later request. Everyone may run it; a policy may require one before some requests."},
	}
}

func noFlags(c *Request) error {
	return c.ParseFlags(flag.NewFlagSet(c.cmd.Name, flag.ContinueOnError), false)
}

func runHelp(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("help", flag.ContinueOnError)
	if err := c.ParseFlags(fs, true); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return wire.Errorf(wire.CodeBadRequest, "help: takes at most one command name")
	}
	if fs.NArg() == 1 {
		name := fs.Arg(0)
		if name == evalWord {
			fmt.Fprint(c.Out, evalHelp)
			return nil
		}
		cmd := c.s.srv.commands[name]
		if cmd == nil {
			return wire.Errorf(wire.CodeBadRequest, "help: unknown command %.40q; type help for the list", name)
		}
		allowed := c.s.mayRun(cmd)
		fmt.Fprint(c.Out, wrap("usage: ", cmd.usageLine(), helpWidth, "         "))
		fmt.Fprint(c.Out, wrap("  ", cmd.Summary+costNote(cmd), helpWidth, "  "))
		if cmd.Help != "" {
			fmt.Fprint(c.Out, wrap("  ", cmd.Help, helpWidth, "  "))
		}
		if cmd.Cost == StopsTheWorld {
			fmt.Fprint(c.Out, wrap("  ", "It pauses the whole process: add "+yesFlag+" to run it.", helpWidth, "  "))
		}
		if !allowed {
			fmt.Fprint(c.Out, wrap("  ", "Your policy does not let you run it (object "+cmd.object()+", action run).", helpWidth, "  "))
		}
		return nil
	}
	fmt.Fprintln(c.Out, "Commands you may run (help COMMAND shows one):")
	var mine []*Command
	width := 0
	for _, name := range c.s.srv.names {
		if cmd := c.s.srv.commands[name]; c.s.mayRun(cmd) {
			mine = append(mine, cmd)
			width = max(width, len(name))
		}
	}
	width = min(width, 16)
	for _, cmd := range mine {
		name := cmd.Name
		if len(name) > width {
			fmt.Fprintf(c.Out, "  %s\n", name)
			name = ""
		}
		indent := strings.Repeat(" ", 2+width+2)
		fmt.Fprint(c.Out, wrap(fmt.Sprintf("  %-*s  ", width, name), cmd.Summary+costNote(cmd), helpWidth, indent))
	}
	if hidden := len(c.s.srv.names) - len(mine); hidden > 0 {
		fmt.Fprintf(c.Out, "(%d more commands exist that your policy does not let you run.)\n", hidden)
	}
	if c.Allowed(access.Eval) {
		fmt.Fprint(c.Out, "\n"+evalHelp)
	}
	return nil
}

// helpWidth is the width help text fits in: an 80-column terminal.
const helpWidth = 79

// costNote marks the commands that are not cheap.
func costNote(cmd *Command) string {
	if cmd.Cost == Cheap {
		return ""
	}
	return " [" + cmd.Cost.String() + "]"
}

// wrap writes prefix then the words of s, broken at spaces into lines of
// at most width columns; lines after the first start with indent. A word
// longer than a line stays whole.
func wrap(prefix, s string, width int, indent string) string {
	var b strings.Builder
	line, empty := prefix, true
	for _, w := range strings.Fields(s) {
		switch {
		case empty || utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) <= width:
			if !empty {
				line += " "
			}
			line += w
			empty = false
		default:
			b.WriteString(line + "\n")
			line = indent + w
		}
	}
	b.WriteString(line + "\n")
	return b.String()
}

const evalHelp = `Go: any line that does not start with a command name is evaluated as Go
(1+2, x := 3, fmt.Println(x), multi-line blocks). To evaluate Go that starts
with a command name, prefix it with "eval": eval gc := 1.
`

func runWhoami(ctx context.Context, c *Request) error {
	if err := noFlags(c); err != nil {
		return err
	}
	s := c.s
	fmt.Fprintf(c.Out, "subject  %s\nroles    %s\nsession  %s\nremote   %s\nsince    %s\n",
		s.subject, strings.Join(s.roles, ", "), s.id, s.remote, s.start.UTC().Format(time.RFC3339))
	return nil
}

func runMemstats(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("memstats", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "")
	watch := fs.Duration("watch", 0, "")
	count := fs.Int("count", 0, "")
	if err := c.ParseFlags(fs, false); err != nil {
		return err
	}
	if *watch != 0 && *watch < 10*time.Millisecond {
		return wire.Errorf(wire.CodeBadRequest, "memstats: --watch must be at least 10ms")
	}
	if *count < 0 || (*count > 0 && *watch == 0) {
		return wire.Errorf(wire.CodeBadRequest, "memstats: --count N (N > 0) goes with --watch")
	}
	write := func() error {
		stats := diag.ReadMemStats()
		if *asJSON {
			b, err := json.Marshal(map[string]any{"time": time.Now().UTC(), "stats": stats})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.Out, "%s\n", b)
			return err
		}
		if *watch != 0 {
			fmt.Fprintf(c.Out, "-- %s\n", time.Now().UTC().Format(time.RFC3339Nano))
		}
		return diag.WriteStats(c.Out, stats)
	}
	if *watch == 0 {
		return write()
	}
	t := time.NewTicker(*watch)
	defer t.Stop()
	for n := 1; ; n++ {
		if err := write(); err != nil {
			return err
		}
		c.Flush()
		if *count > 0 && n >= *count {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func runGoroutines(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("goroutines", flag.ContinueOnError)
	full := fs.Bool("full", false, "")
	filter := fs.String("filter", "", "")
	if err := c.ParseFlags(fs, false); err != nil {
		return err
	}
	if *full {
		if err := c.Confirm(fmt.Sprintf("goroutines --full (%d goroutines)", runtime.NumGoroutine()), diag.PredictStackPause()); err != nil {
			return err
		}
	}
	var re *regexp.Regexp
	if *filter != "" {
		var err error
		if re, err = regexp.Compile(*filter); err != nil {
			return wire.Errorf(wire.CodeBadRequest, "goroutines: --filter: %v", err)
		}
	}
	if !*full {
		return diag.WriteGoroutinesFiltered(c.Out, re)
	}
	release, err := c.Exclusive() // one stop-the-world pause: one at a time
	if err != nil {
		return err
	}
	defer release()
	return diag.WriteGoroutinesFull(c.Out, re)
}

func runGCWatch(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("gcwatch", flag.ContinueOnError)
	count := fs.Int("count", 0, "")
	if err := c.ParseFlags(fs, false); err != nil {
		return err
	}
	if *count < 0 {
		return wire.Errorf(wire.CodeBadRequest, "gcwatch: --count must be positive")
	}
	w := diag.NewGCWatcher()
	cycles := diag.GCCycles(ctx)
	fmt.Fprintf(c.Out, "%-8s  %-12s  %-12s  %s\n", "cycle", "heap live", "heap goal", "longest pause")
	c.Flush()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cycles:
		}
		st := w.Read()
		fmt.Fprintf(c.Out, "%-8d  %-12s  %-12s  %s\n", st.Cycle, diag.FormatBytes(float64(st.HeapLive)),
			diag.FormatBytes(float64(st.Goal)), time.Duration(st.PauseMax*float64(time.Second)).Round(time.Microsecond))
		c.Flush()
		if *count > 0 && n >= *count {
			return nil
		}
	}
}

func runBuildinfo(ctx context.Context, c *Request) error {
	if err := noFlags(c); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(c.Out, "go      %s\n(no module build information in this binary)\n", runtime.Version())
		return nil
	}
	fmt.Fprintf(c.Out, "go      %s\npath    %s\nmain    %s %s\n", bi.GoVersion, bi.Path, bi.Main.Path, bi.Main.Version)
	deps := append([]*debug.Module(nil), bi.Deps...)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	for _, d := range deps {
		fmt.Fprintf(c.Out, "dep     %s %s\n", d.Path, d.Version)
	}
	for _, st := range bi.Settings {
		// Only settings that describe the build; -ldflags can carry
		// -X values (keys, passwords), so it is never shown.
		switch {
		case st.Key == "-ldflags":
			fmt.Fprintf(c.Out, "build   -ldflags (not shown)\n")
		default:
			fmt.Fprintf(c.Out, "build   %s=%s\n", st.Key, st.Value)
		}
	}
	return nil
}

func runGC(ctx context.Context, c *Request) error {
	if err := noFlags(c); err != nil {
		return err
	}
	beforeAfter(c, runtime.GC, "/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes")
	return nil
}

// beforeAfter runs action and shows the given runtime/metrics figures
// before and after it, and how long it took.
func beforeAfter(c *Request, action func(), metrics ...string) {
	before := diag.ReadMemStats()
	start := time.Now()
	action()
	took := time.Since(start)
	after := diag.ReadMemStats()
	for _, m := range metrics {
		b, _ := diag.Lookup(before, m)
		a, _ := diag.Lookup(after, m)
		fmt.Fprintf(c.Out, "%-40s %10s -> %10s\n", m, diag.FormatBytes(b), diag.FormatBytes(a))
	}
	fmt.Fprintf(c.Out, "took %s\n", took.Round(time.Microsecond))
}

func runHeapdump(ctx context.Context, c *Request) error {
	fs := flag.NewFlagSet("heapdump", flag.ContinueOnError)
	gc := fs.Bool("gc", false, "run a garbage collection first, so the profile reflects the current heap")
	afterGC := fs.Bool("after-gc", false, "wait for the next GC cycle to complete, then take the profile")
	wait := fs.Duration("wait", time.Minute, "how long --after-gc waits for a cycle")
	full := fs.Bool("full", false, "")
	if err := c.ParseFlags(fs, false); err != nil {
		return err
	}
	if *full {
		if *gc || *afterGC {
			return wire.Errorf(wire.CodeBadRequest, "heapdump: --full does not combine with --gc or --after-gc")
		}
		return fullHeapdump(ctx, c)
	}
	switch {
	case *wait <= 0 || *wait > 10*time.Minute:
		return wire.Errorf(wire.CodeBadRequest, "heapdump: --wait must be between 1ms and 10m")
	case *gc && *afterGC:
		return wire.Errorf(wire.CodeBadRequest, "heapdump: --gc and --after-gc cannot be used together")
	case *gc:
		runtime.GC()
	case *afterGC:
		// A heap profile describes the heap as of the last completed
		// cycle: taken right after a cycle ends, it is that moment's heap.
		wctx, cancel := context.WithTimeout(ctx, *wait)
		defer cancel()
		select {
		case <-diag.GCCycles(wctx):
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return wire.Errorf(wire.CodeTimeout, "heapdump: no GC cycle completed within %s (use --gc to force one)", *wait)
		}
		fmt.Fprintf(c.Out, "GC cycle %d completed; profile taken after it\n", diag.NewGCWatcher().Read().Cycle)
		c.Flush()
	}
	var buf bytes.Buffer
	if err := diag.WriteHeapProfile(&buf); err != nil {
		return err
	}
	name := fmt.Sprintf(heapName, time.Now().UTC().Format("20060102T150405Z"))
	return c.SendFile(ctx, name, buf.Bytes())
}

func runReset(ctx context.Context, c *Request) error {
	if err := noFlags(c); err != nil {
		return err
	}
	had := c.s.interp != nil
	c.s.dropInterp(c.id, "")
	if had {
		fmt.Fprintln(c.Out, "interpreter discarded; the next Go line starts from a clean state")
	} else {
		fmt.Fprintln(c.Out, "no interpreter to reset")
	}
	return nil
}

func runVars(ctx context.Context, c *Request) error {
	if err := noFlags(c); err != nil {
		return err
	}
	if !c.s.allowed(access.Eval) {
		return wire.Errorf(wire.CodeForbidden, "%s may not evaluate Go (policy object eval, action run)", c.s.subject)
	}
	in, err := c.s.interpreter(ctx, c.id)
	if err != nil {
		return err
	}
	return in.Vars(c.Out)
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// maxReason bounds a reason's length.
const maxReason = 1000

func runReason(ctx context.Context, c *Request) error {
	text := strings.TrimSpace(c.raw)
	s := c.s
	if text == "" {
		s.mu.Lock()
		cur := s.reason
		s.mu.Unlock()
		if cur == "" {
			fmt.Fprintln(c.Out, "no reason given yet; reason TEXT records one with every later request")
		} else {
			fmt.Fprintf(c.Out, "reason: %s\n", cur)
		}
		return nil
	}
	if len(text) > maxReason {
		return wire.Errorf(wire.CodeBadRequest, "reason: at most %d bytes", maxReason)
	}
	for _, r := range text {
		if r < ' ' || r == 0x7f {
			return wire.Errorf(wire.CodeBadRequest, "reason: one line of text, without control characters")
		}
	}
	s.mu.Lock()
	s.reason = text
	s.mu.Unlock()
	c.detail = "reason: " + text
	fmt.Fprintf(c.Out, "reason recorded: %s\n", text)
	return nil
}
