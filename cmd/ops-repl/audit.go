package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opsrepl/opsrepl/audit"
)

const auditUsage = `Usage:
  ops-repl audit verify [--partial] [--head HASH] FILE…
      check the hash chain of an audit log and its rotated files (any order).
      Prints the first broken record (file:line, record number, reason) and
      exits 1; exits 0 when the chain is intact. A final line cut short by a
      crash is reported as an incomplete tail, not as tampering (exit 0).
        --partial    accept a chain that starts after record 1 (older rotated
                     files removed)
        --head HASH  a record hash kept elsewhere: the chain must contain it
                     (detects records removed from the end)

  ops-repl audit show [--subject S] [--cmd C] [--since T] [--denied] [--fleet ID] [--json] FILE…
      list requests (each intent joined with its outcome) and other events.
        --subject S  only this subject
        --fleet ID   only the requests of this fleet request (ops-repl
                     --targets prints its id); give every target's log
        --cmd C      only this command (or eval)
        --since T    only from T on: RFC 3339 time, a date (2006-01-02), or a
                     duration meaning "ago" (90m, 24h)
        --denied     only denied requests and refused handshakes
        --json       print the matching records as JSON lines
`

func runAudit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		io.WriteString(stdout, auditUsage)
		if len(args) == 0 {
			return exitf(exitUsage, "audit: give verify or show")
		}
		return nil
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout)
	case "show":
		return auditShow(args[1:], stdout, time.Now())
	}
	return exitf(exitUsage, "audit: unknown subcommand %q (verify or show; see ops-repl audit --help)", args[0])
}

func auditVerify(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	partial := fs.Bool("partial", false, "")
	head := fs.String("head", "", "")
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, auditUsage)
			return nil
		}
		return exitf(exitUsage, "audit verify: %v (see ops-repl audit --help)", err)
	}
	if fs.NArg() == 0 {
		return exitf(exitUsage, "audit verify: give the log file(s)")
	}
	rep, err := audit.Verify(audit.VerifyOptions{Partial: *partial, Head: *head}, fs.Args()...)
	if err != nil {
		return exitf(exitUsage, "%v", err)
	}
	for _, p := range rep.Recovered {
		fmt.Fprintf(stdout, "note: %s\n", safeText(p.String()))
	}
	if rep.Broken != nil {
		fmt.Fprintf(stdout, "BROKEN: %s\n", safeText(rep.Broken.String()))
		if rep.Records > 0 {
			fmt.Fprintf(stdout, "the %d records before it verify (records %d..%d); those after it are not checked\n", rep.Records, rep.FirstSeq, rep.LastSeq)
		}
		return &reportedError{err: exitf(exitFailed, "audit chain broken")}
	}
	fmt.Fprintf(stdout, "ok: %d records (%d..%d) in %d file(s); head %s\n", rep.Records, rep.FirstSeq, rep.LastSeq, len(rep.Files), rep.Head)
	if rep.Torn != nil {
		fmt.Fprintf(stdout, "incomplete tail: %s\n", safeText(rep.Torn.String()))
	}
	return nil
}

// parseInterspersed parses flags that may come after the file names.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		if n := len(args) - fs.NArg(); n > 0 && args[n-1] == "--" {
			pos = append(pos, fs.Args()...)
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// parseSince reads --since: RFC 3339, a date, or a duration ago.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2006-01-02T15:04:05Z), a date (2006-01-02) or a duration (90m)", s)
}

func auditShow(args []string, stdout io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("audit show", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f audit.Filter
	fs.StringVar(&f.Subject, "subject", "", "")
	fs.StringVar(&f.Command, "cmd", "", "")
	since := fs.String("since", "", "")
	fs.BoolVar(&f.Denied, "denied", false, "")
	fs.StringVar(&f.Fleet, "fleet", "", "")
	jsonOut := fs.Bool("json", false, "")
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, auditUsage)
			return nil
		}
		return exitf(exitUsage, "audit show: %v (see ops-repl audit --help)", err)
	}
	if fs.NArg() == 0 {
		return exitf(exitUsage, "audit show: give the log file(s)")
	}
	if *since != "" {
		t, err := parseSince(*since, now)
		if err != nil {
			return exitf(exitUsage, "audit show: %v", err)
		}
		f.Since = t
	}
	entries, err := audit.Entries(f, fs.Args()...)
	if err != nil {
		return exitf(exitUsage, "%v", err)
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			for _, r := range e.Records {
				enc.Encode(r)
			}
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, "(no matching record)")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	logs := fs.NArg() > 1 // which log each entry comes from matters
	if logs {
		fmt.Fprint(tw, "LOG\t")
	}
	fmt.Fprintln(tw, "TIME\tSEQ\tSUBJECT\tREMOTE\tSESSION\tRESULT\tMS\tWHAT")
	for _, e := range entries {
		r := e.Record
		result, ms, what := showResult(e)
		if logs {
			fmt.Fprintf(tw, "%s\t", safeText(e.Path))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Local().Format("2006-01-02 15:04:05"), r.Seq,
			dash(safeText(r.Subject)), dash(safeText(r.Remote)), dash(safeText(r.Session)), dash(safeText(result)), dash(ms), safeText(what))
	}
	return tw.Flush()
}

// showResult is an entry's RESULT, MS and WHAT columns.
func showResult(e *audit.Entry) (result, ms, what string) {
	r := e.Record
	if !e.IsRequest() {
		what = r.Kind
		if r.Count > 1 {
			what += fmt.Sprintf(" ×%d", r.Count)
		}
		for _, s := range []string{r.Message, r.Detail} {
			if s != "" {
				what += ": " + s
			}
		}
		if r.Kind == audit.KindPolicy {
			what += fmt.Sprintf(" (%.12s → %.12s)", r.OldHash, r.NewHash)
		}
		if r.Transcript != "" && r.Outcome == audit.OutcomeOpen {
			what += " (transcript " + r.Transcript + ")"
		}
		return r.Outcome, "", what
	}
	result = r.Decision
	if e.Outcome != nil {
		result = strings.TrimPrefix(result+" "+e.Outcome.Outcome, " ")
		ms = fmt.Sprintf("%.1f", e.Outcome.DurationMS)
	} else {
		result = strings.TrimPrefix(result+" (no outcome)", " ")
	}
	what = strings.ReplaceAll(r.Line, "\n", "⏎")
	if rs := []rune(what); len(rs) > 120 {
		what = string(rs[:117]) + "…"
	}
	if r.LineBytes > 0 {
		what += fmt.Sprintf(" [%d bytes in all, sha256 %.12s…]", r.LineBytes, r.LineSHA256)
	}
	if r.Reason != "" {
		what += "  [reason: " + r.Reason + "]"
	}
	return result, ms, what
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
