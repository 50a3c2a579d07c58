// Package console is the ops-repl endpoint a Go service mounts: an
// http.Handler that authenticates WebSocket upgrades and serves operator
// sessions, in which every command and every Go evaluation is authorized
// by a policy and written to an audit log. The protocol is in package
// wire and in PROTOCOL.md.
//
// Usage (Go evaluation needs sandbox.Main() as the first line of main):
//
//	srv, err := console.New(console.Options{
//		Authenticator: tokens,  // *auth.Tokens
//		Authorizer:    enf,     // *policy.Enforcer
//		Audit:         auditLog, // *audit.Log (required; audit.Discard to opt out)
//		Exports:       new(interp.Exports).Func("shop/cache", "Len", cache.Len),
//	})
//	if err != nil { ... }
//	defer srv.Close()
//	go srv.ListenAndServe(ctx, "", nil) // 127.0.0.1:7227
//
// One guard pipeline runs in ServeHTTP, in order: shutting down, no
// credentials in the URL, authentication (bearer token or client
// certificate; failures rate-limited per source address, so a flood never
// refuses a valid credential), the subject's handshake rate, a policy that
// grants the subject something, the session count (with sessions reserved
// for admins), the subject's session count, same-origin check,
// subprotocol, upgrade. Nothing but a bounded
// per-source rate bucket is kept for a request that fails a guard. Each
// request then runs: parse the line, authorize (cmd:<name> or eval, and
// whether the policy wants a reason first), write the intent record to
// the audit log and sync it (or refuse the request), run with limits,
// write the outcome record. Commands exist only in the command table,
// which drives dispatch, help, completion and policy validation, so no
// command can run around the policy or the audit.
//
// # Security
//
// The console gives whoever the policy allows commands that inspect and
// act on the process and, for admins by default, Go evaluation. Each
// session evaluates in a child process of its own (package sandbox; the
// program must call sandbox.Main first in main), capped and filtered, so
// an evaluation can end its child but not the service; the child can
// still call every exported function its subject may import. With
// Options.InProcessEval the interpreter runs in the service instead, and
// is not a security boundary (see package interp): grant eval then as you
// would grant a shell on the host. Tokens travel only
// in the Authorization header (or, for browsers, a subprotocol), never in
// URLs; they are compared as SHA-256 hashes in constant time and never
// logged. Cross-origin browser requests are refused, compression is off,
// frames, queues, rates, sessions and output are bounded (see Options for
// each default), and ListenAndServe binds loopback unless told otherwise.
package console
