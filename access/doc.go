// Package access is the vocabulary of ops-repl's access control: the
// policy objects the console asks about, the actions it asks with, and
// which pairs make sense. The console, the policy parser and the command
// line tools all use it, so a policy line the console would never ask
// about is refused where it is read, not left to match nothing.
//
// Objects and actions:
//
//	cmd:NAME   run             run the console command NAME
//	eval       run             evaluate Go in the session's interpreter
//	pkg:PATH   import          reach the exported package PATH from Go
//	cmd:NAME,  require-reason  allowed: a reason must be given first
//	eval
//
// A policy may name a pattern instead of an object: "*", "cmd:*" or
// "pkg:*" (Casbin's keyMatch).
//
// It depends on the standard library only.
package access
