package audit

import (
	"regexp"
	"slices"
	"strings"
	"sync"
)

// redacted replaces a secret in a record.
const redacted = "[REDACTED]"

// secretPatterns find secrets in what an operator typed, with what a
// match becomes. They are compiled on first use, not at package init,
// which every start of a program linking the audit (the one-shot CLI
// included) would pay.
var secretPatterns = sync.OnceValue(func() []secretPattern {
	return []secretPattern{
		// "Authorization: Bearer x", "authorization=x", Go strings too.
		{regexp.MustCompile(`(?i)(authorization["']?\s*[:=,]\s*[\["'\x60]*\s*)(?:(?:bearer|basic|token|digest)\s+["'\x60]?)?[^\s"'\x60,;)}\]]+`), "${1}" + redacted},
		{regexp.MustCompile(`(?i)\b(bearer\s+["'\x60]?)[A-Za-z0-9._~+/=-]{8,}`), "${1}" + redacted},
		{regexp.MustCompile(`(ops-repl\.bearer\.)[^\s"'\x60,;)}]+`), "${1}" + redacted},
		// ops-repl tokens (and other 256-bit secrets) are 64 hex digits:
		// any run of 64 or more, whatever surrounds it (tok_…, 0x…).
		{regexp.MustCompile(`[0-9A-Fa-f]{64,}`), redacted},
		// password = "…", api_key: …, secret := "…"
		{regexp.MustCompile(`(?i)\b((?:password|passwd|secret|api[_-]?key|access[_-]?key|private[_-]?key)\w*["']?\s*(?::=|[:=])\s*)("[^"]*"|'[^']*'|\x60[^\x60]*\x60|[^\s,;)}]+)`), "${1}" + redacted},
	}
})

type secretPattern struct {
	re   *regexp.Regexp
	repl string
}

// quoted is a secret as it appears in an operator's text (with what
// introduces it: "api_key: k-456", "Bearer abc…"), and that text
// redacted.
type quoted struct{ match, redacted string }

// findSecrets returns the secrets in s, in context.
func findSecrets(s string) []quoted {
	var out []quoted
	for _, p := range secretPatterns() {
		for _, m := range p.re.FindAllStringSubmatchIndex(s, -1) {
			match := s[m[0]:m[1]]
			out = append(out, quoted{match, string(p.re.ExpandString(nil, p.repl, s, m))})
		}
	}
	return out
}

// redactInput removes every secret the patterns find.
func redactInput(s string) string {
	for _, p := range secretPatterns() {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	return s
}

// redactRecord redacts r by where its text comes from: the operator's
// input (Line, Reason) loses every secret the patterns find; the
// console's own text (Message, Detail) loses those same secrets, in the
// same context, wherever it quotes them, and nothing else: a subject or a
// hash of the console's own is not a secret. Options.Redact then applies
// to all four.
func (l *Log) redactRecord(r *Record) {
	found := append(findSecrets(r.Line), findSecrets(r.Reason)...)
	slices.SortFunc(found, func(a, b quoted) int { return len(b.match) - len(a.match) }) // a match may contain a shorter one
	r.Line = redactInput(r.Line)
	r.Reason = redactInput(r.Reason)
	for _, f := range []*string{&r.Message, &r.Detail} {
		for _, q := range found {
			*f = strings.ReplaceAll(*f, q.match, q.redacted)
		}
	}
	if l.opts.Redact != nil {
		for _, f := range []*string{&r.Line, &r.Reason, &r.Message, &r.Detail} {
			if *f != "" {
				*f = l.opts.Redact(*f)
			}
		}
	}
}
