// Package audit writes and checks the ops-repl audit trail: JSON lines,
// each record carrying the SHA-256 of the line before it, so that editing,
// deleting, reordering or cutting records out of the middle of the log is
// detected by Verify.
//
// For each request the console writes an intent record (who, from where,
// the exact line or Go source, the policy decision, the reason given) and
// syncs it to disk before the request runs, then an outcome record (status,
// error code, duration, size and SHA-256 of what was sent back). Sessions,
// refused handshakes (aggregated per source), policy reloads and runtime
// settings that revert are recorded too. Bearer tokens, Authorization
// values and similar secrets are redacted before a record is written, by
// where they come from: what the operator typed, and those same values
// where the console quotes them (see Options.Redact). Open continues the
// chain in every state a crash or a full disk can leave, at a rotation
// too.
//
// Usage:
//
//	log, err := audit.Open(audit.Options{Path: "/var/log/app/ops-repl.audit.jsonl"}) // created 0600
//	if err != nil { ... }
//	defer log.Close()
//	srv, err := console.New(console.Options{Audit: log, ...})
//
// and to check a log, with its rotated files in any order:
//
//	rep, err := audit.Verify(audit.VerifyOptions{}, files...)
//
// # Limits of a hash chain
//
// The chain shows that a log is internally consistent. It cannot show
// that records were removed from the end, or that someone with write
// access rewrote the whole chain: for that, keep the head (Log.Head) or a
// copy of the records somewhere the writers of the log cannot reach, and
// pass it to Verify as VerifyOptions.Head.
package audit
