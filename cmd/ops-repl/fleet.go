package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/fleet"
	"github.com/opsrepl/opsrepl/internal/diag"
)

// fleetFlags are the flags of a run on many targets (--targets).
type fleetFlags struct {
	spec        string
	tokensFile  string
	concurrency int
	timeout     time.Duration
	yes         bool
	resolver    string // a DNS server (host:port) for dns:, dnssrv: and the targets' names
}

// resolver is a DNS resolver that asks the server at addr, over UDP, or
// over TCP for answers too long for UDP; nil for "".
func resolver(addr string) (*net.Resolver, error) {
	if addr == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, exitf(exitUsage, "--resolver %q: want HOST:PORT (127.0.0.1:8600 for a local Consul agent)", addr)
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, network, addr)
	}}, nil
}

// readOnly are the commands that fan out without --yes: they read the
// process and change nothing in it. Everything else (Go, tuning, gc,
// reset, an application's own commands, --full dumps) asks for --yes.
var readOnly = map[string]bool{"help": true, "whoami": true, "memstats": true, "goroutines": true, "gcwatch": true,
	"buildinfo": true, "heapdump": true, "leakcheck": true, "profile": true, "trace": true, "vars": true, "loglevel": true}

func needsYes(line string) bool {
	f := strings.Fields(line)
	if len(f) == 0 {
		return false
	}
	if !readOnly[f[0]] {
		return true
	}
	for _, a := range f[1:] {
		if a == "--full" || strings.HasPrefix(a, "--full=") {
			return true
		}
	}
	return f[0] == "loglevel" && len(f) > 1
}

// readTargetTokens reads lines "TARGET TOKEN", TARGET written as in the
// spec (a URL, or the item a target came from: dns:NAME:PORT, file:PATH).
func readTargetTokens(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, exitf(exitUsage, "--target-tokens: %v", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 2 {
			return nil, exitf(exitUsage, "--target-tokens %s:%d: want \"TARGET TOKEN\"", path, n)
		}
		out[fs[0]] = fs[1]
	}
	return out, sc.Err()
}

// runFleet runs lines on every target of the spec and prints the merged
// results. The exit code is the worst target's: 0 all ok, 1 a line failed,
// 3 refused, 4 unreachable.
func runFleet(ctx context.Context, ff fleetFlags, lines []string, tok string, tlsConf *tls.Config, p *printer, stderr io.Writer) error {
	res, err := resolver(ff.resolver)
	if err != nil {
		return err
	}
	targets, err := fleet.Discover(ctx, ff.spec, fleet.DiscoverOptions{Resolver: res})
	if err != nil {
		return exitf(exitUsage, "--targets: %v", err)
	}
	var tokens map[string]string
	if ff.tokensFile != "" {
		if tokens, err = readTargetTokens(ff.tokensFile); err != nil {
			return err
		}
	}
	for _, l := range lines {
		if needsYes(l) && !ff.yes {
			return exitf(exitUsage, "%q would run on %s, and it evaluates Go or may change them: check the targets, then add --yes", l, plural(len(targets), "target"))
		}
	}
	id := fleet.NewID()
	fmt.Fprintf(stderr, "%s, fleet request %s\n", plural(len(targets), "target"), id)

	// memstats, whoami, buildinfo and leakcheck alone merge into one
	// table, a row a target (memstats is asked for as JSON).
	table := ""
	if f := strings.Fields(strings.Join(lines, "\n")); len(lines) == 1 && len(f) > 0 && !p.json {
		switch {
		case len(f) == 1 && f[0] == "memstats":
			table, lines = "memstats", []string{"memstats --json"}
		case len(f) == 1 && (f[0] == "whoami" || f[0] == "buildinfo"):
			table = f[0]
		case f[0] == "leakcheck":
			table = "leakcheck"
		}
	}
	opts := fleet.Options{
		Fleet:       id,
		Concurrency: ff.concurrency,
		Timeout:     ff.timeout,
		Client: client.Options{Token: tok, TLS: tlsConf, Proxy: http.ProxyFromEnvironment,
			Header: http.Header{"User-Agent": {"ops-repl/" + version()}}},
		Token: func(t fleet.Target) string {
			if v, ok := tokens[t.URL]; ok {
				return v
			}
			if v, ok := tokens[t.Source]; ok {
				return v
			}
			return tok
		},
		Files: func(t fleet.Target) client.FileFunc {
			if p.dir == "" {
				return nil
			}
			return client.Save(filepath.Join(p.dir, targetDir(t.URL)), func(f *client.File) {
				fmt.Fprintf(stderr, "%s: saved %s\n", t.URL, f.Path())
			})
		},
	}
	if res != nil { // the targets' own names (SRV targets) are the DNS server's too
		d := &net.Dialer{Resolver: res}
		opts.Client.NetDialContext = d.DialContext
		opts.Client.Proxy = nil
	}
	if p.progress != nil {
		opts.Progress = func(done, total int) {
			fmt.Fprintf(p.progress, "\r%d/%d done", done, total)
			if done == total {
				fmt.Fprint(p.progress, "\r\033[K")
			}
		}
	}
	results := fleet.Run(ctx, targets, lines, opts)

	switch {
	case p.json:
		enc := json.NewEncoder(p.stdout)
		for _, r := range results {
			enc.Encode(fleetJSON(r, id))
		}
	case table == "memstats":
		memstatsTable(p.stdout, results)
	case table == "whoami":
		whoamiTable(p.stdout, results)
	case table == "buildinfo":
		textTable(p.stdout, results, []string{"GO", "MAIN", "REVISION"}, buildinfoRow)
	case table == "leakcheck":
		textTable(p.stdout, results, []string{"VERDICT", "EVIDENCE", "TOP GROWING SITE"}, leakcheckRow)
	default:
		for _, r := range results {
			fmt.Fprintf(p.stdout, "== %s  %s%s\n", r.Target.URL, r.Class, errSuffix(r))
			if r.Output != "" {
				io.WriteString(p.stdout, safeText(r.Output))
				if !strings.HasSuffix(r.Output, "\n") {
					io.WriteString(p.stdout, "\n")
				}
			}
			if r.Cut {
				fmt.Fprintln(p.stdout, "(output cut)")
			}
		}
	}
	counts := map[fleet.Class]int{}
	for _, r := range results {
		counts[r.Class]++
	}
	fmt.Fprintf(stderr, "%s: %d ok, %d failed, %d refused, %d unreachable (fleet request %s)\n",
		plural(len(results), "target"), counts[fleet.OK], counts[fleet.Failed], counts[fleet.Refused], counts[fleet.Unreachable], id)
	switch fleet.Worst(results) {
	case fleet.Failed:
		return &exitError{code: exitFailed, err: errReported}
	case fleet.Refused:
		return &exitError{code: exitDenied, err: errReported}
	case fleet.Unreachable:
		return &exitError{code: exitConnect, err: errReported}
	}
	return nil
}

// targetDir is a target's own download folder: its host and port.
func targetDir(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "target"
	}
	return strings.NewReplacer(":", "_", "[", "", "]", "").Replace(u.Host)
}

func errSuffix(r fleet.Result) string {
	if r.Err == nil {
		return ""
	}
	return ": " + safeText(r.Err.Error())
}

// fleetJSON is one target's line of --json output.
func fleetJSON(r fleet.Result, id string) map[string]any {
	m := map[string]any{"type": "target", "target": r.Target.URL, "fleet": id, "class": r.Class.String(),
		"subject": r.Hello.Subject, "output": r.Output, "finals": r.Finals}
	if r.Err != nil {
		m["error"] = r.Err.Error()
	}
	return m
}

func memstatsTable(w io.Writer, results []fleet.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tHEAP LIVE\tHEAP GOAL\tGC CYCLES\tGOROUTINES\tRESULT")
	for _, r := range results {
		var m struct{ Stats []diag.Stat }
		cells := []string{"-", "-", "-", "-"}
		if r.Class == fleet.OK && json.Unmarshal([]byte(r.Output), &m) == nil {
			for i, key := range []string{"/gc/heap/live:bytes", "/gc/heap/goal:bytes", "/gc/cycles/total:gc-cycles", "/sched/goroutines:goroutines"} {
				if v, ok := diag.Lookup(m.Stats, key); ok {
					unit := "count"
					if i < 2 {
						unit = "bytes"
					}
					cells[i] = diag.FormatValue(v, unit)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\n", r.Target.URL, strings.Join(cells, "\t"), r.Class, errSuffix(r))
	}
	tw.Flush()
}

func whoamiTable(w io.Writer, results []fleet.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSUBJECT\tROLES\tSESSION\tRESULT")
	for _, r := range results {
		h := r.Hello
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s%s\n", r.Target.URL, dash(safeText(h.Subject)), dash(safeText(strings.Join(h.Roles, ","))),
			dash(safeText(h.Session)), r.Class, errSuffix(r))
	}
	tw.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// textTable prints a row a target, with cells read from its text output.
func textTable(w io.Writer, results []fleet.Result, head []string, row func(string) []string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TARGET\t%s\tRESULT\n", strings.Join(head, "\t"))
	for _, r := range results {
		cells := make([]string, len(head))
		if r.Class == fleet.OK {
			copy(cells, row(r.Output))
		}
		for i := range cells {
			cells[i] = dash(safeText(cells[i]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\n", r.Target.URL, strings.Join(cells, "\t"), r.Class, errSuffix(r))
	}
	tw.Flush()
}

// buildinfoRow reads the Go version, the main module's version and the
// VCS revision from buildinfo's output: version skew shows at once.
func buildinfoRow(out string) []string {
	cells := make([]string, 3)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "go":
			cells[0] = f[1]
		case len(f) >= 3 && f[0] == "main":
			cells[1] = f[2]
		case len(f) >= 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			rev := strings.TrimPrefix(f[1], "vcs.revision=")
			cells[2] = rev[:min(len(rev), 12)]
		}
	}
	return cells
}

// topSite is the first of leakcheck's growing allocation sites:
// "1. +12.0 MiB   main.leakRequestLog".
var topSite = regexp.MustCompile(`^1\.\s+([+-]?[0-9.]+ \S+)\s+(\S+)`)

// leakcheckRow reads the verdict, the live heap's trend and the
// allocation site that grew most.
func leakcheckRow(out string) []string {
	cells := make([]string, 3)
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "verdict: "):
			v := strings.TrimPrefix(t, "verdict: ")
			if i := strings.Index(v, ":"); i > 0 {
				v = v[:i]
			}
			cells[0] = v
		case strings.HasPrefix(t, "live heap trend"):
			cells[1] = strings.Join(strings.Fields(strings.TrimPrefix(t, "live heap trend")), " ")
		case cells[2] == "":
			if m := topSite.FindStringSubmatch(t); m != nil {
				cells[2] = m[2] + " (" + m[1] + ")"
			}
		}
	}
	return cells
}
