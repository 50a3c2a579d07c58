// Package auth authenticates ops-repl console clients by bearer token.
//
// Tokens are 256-bit random values. The server keeps only their SHA-256,
// in a token file of "SUBJECT SHA256-HEX" lines (comments start with #) or
// in memory, and compares hashes in constant time. A token is read only
// from the Authorization header ("Bearer TOKEN") of the WebSocket upgrade
// request, or from the wire.BearerProtocolPrefix subprotocol for browsers;
// never from the URL.
//
// Usage:
//
//	tok, line, _ := auth.NewToken("alice") // give tok to alice, add line to the file
//	tokens, err := auth.LoadFile("/etc/app/ops-repl.tokens")
//	subject, err := tokens.Authenticate(r) // r: the upgrade *http.Request
//
// The package depends on the standard library only, so the client can use
// it too.
package auth
