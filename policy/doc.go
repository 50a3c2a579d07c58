// Package policy decides who may do what in an ops-repl console.
//
// It wraps a Casbin synchronized, cached enforcer behind a small type.
// Requests are (subject, object, action) triples, in the vocabulary of
// package access:
//
//	cmd:<name>         run      a console command
//	eval               run      evaluating Go
//	pkg:<import path>  import   an exported app package in the interpreter
//
// Decisions are deny by default, and a deny overrides every allow. Policy
// text is parsed strictly: a malformed line is an error with its line
// number, never silently skipped; so is a rule on an object or with an
// action the console never asks about (access.Check); and a policy with no
// rule at all is refused, because an empty or truncated policy silently
// changes decisions.
//
// Usage:
//
//	enf, err := policy.New(policy.Options{PolicyPath: "/etc/app/policy.csv"})
//	if err != nil { ... }
//	ok, err := enf.Authorize("alice", "cmd:heapdump", "run")
package policy
