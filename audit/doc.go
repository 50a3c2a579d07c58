// Package audit writes the ops-repl audit trail: one JSON object per line,
// one line per event (a request, a refused handshake, a session opening or
// closing). Records never contain credentials.
//
// Usage:
//
//	log, err := audit.Open("/var/log/app/ops-repl.audit.jsonl") // created 0600
//	if err != nil { ... }
//	defer log.Close()
//	srv, err := console.New(console.Options{Audit: log, ...})
package audit
