package audit

import "regexp"

// Redacted replaces a secret in a record.
const Redacted = "[REDACTED]"

var (
	// "Authorization: Bearer x", "authorization=x", Go strings too.
	reAuthorization = regexp.MustCompile(`(?i)(authorization["']?\s*[:=,]\s*[\["'\x60]*\s*)(?:(?:bearer|basic|token|digest)\s+["'\x60]?)?[^\s"'\x60,;)}\]]+`)
	reBearer        = regexp.MustCompile(`(?i)\b(bearer\s+["'\x60]?)[A-Za-z0-9._~+/=-]{8,}`)
	reProtocol      = regexp.MustCompile(`(ops-repl\.bearer\.)[^\s"'\x60,;)}]+`)
	// ops-repl tokens (and other 256-bit secrets) are 64 hex digits: any
	// run of 64 or more, whatever surrounds it (tok_…, 0x…).
	reHex64 = regexp.MustCompile(`[0-9A-Fa-f]{64,}`)
	// password = "…", api_key: …, secret := "…"
	reAssign = regexp.MustCompile(`(?i)\b((?:password|passwd|secret|api[_-]?key|access[_-]?key|private[_-]?key)\w*["']?\s*(?::=|[:=])\s*)("[^"]*"|'[^']*'|\x60[^\x60]*\x60|[^\s,;)}]+)`)
)

// redact applies the built-in redaction, then Options.Redact.
func (l *Log) redact(s string) string {
	if s == "" {
		return s
	}
	s = reAuthorization.ReplaceAllString(s, "${1}"+Redacted)
	s = reBearer.ReplaceAllString(s, "${1}"+Redacted)
	s = reProtocol.ReplaceAllString(s, "${1}"+Redacted)
	s = reHex64.ReplaceAllString(s, Redacted)
	s = reAssign.ReplaceAllString(s, "${1}"+Redacted)
	if l.opts.Redact != nil {
		s = l.opts.Redact(s)
	}
	return s
}
