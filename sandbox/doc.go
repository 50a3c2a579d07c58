// Package sandbox runs Go evaluation in child processes: one per session,
// each the program's own executable started again, capped and filtered,
// talking to the program over a socket pair. The application's exported
// functions stay in the program: evaluated code calls stubs, each call
// crosses the channel, and the program checks the grant, runs the real
// function with a deadline and a recover, and sends the results back.
//
// Usage: the program calls Main first in main (and in TestMain), then
//
//	pool, err := sandbox.New(sandbox.Options{Exports: exp})
//	if err != nil { ... }       // ErrNotInstalled, ErrUnsupported
//	defer pool.Close()
//	in, err := pool.Start(sandbox.Spec{Packages: []string{"shop/cache"}})
//	if err != nil { ... }
//	defer in.Close()
//	v, err := in.Eval(ctx, `cache.Len() * 2`, os.Stdout)
//
// package console does this for every session that evaluates Go.
//
// # Security
//
// The child is the boundary, not the interpreter in it. A child starts
// with an empty environment, standard input and output on /dev/null, and
// no descriptor but its channel (it closes any it inherited). Before it
// reads anything from the program but its limits, it caps itself: data
// (RLIMIT_DATA: heap, stacks, every private writable mapping; not under
// the race detector, which maps terabytes of shadow memory), CPU time,
// file size 0, no core dumps, few descriptors, a small goroutine stack;
// makes itself undumpable and the OOM killer's first choice; and, on
// Linux, loads a seccomp filter (with no_new_privs) that allows only the
// system calls the Go runtime and the channel need: it cannot open a file
// or a socket, execute a program, or signal another process. The program
// also watches a child's resident set while it evaluates, and kills it
// on a cancel, at the time limit, and after any stopped eval (the
// interpreter may resume stopped code, and its compiler cannot be
// interrupted).
//
// The program treats everything a child sends as hostile: frames are
// bounded, JSON is decoded into the types the program already knows (JSON,
// not gob, whose decoder trusts sizes it reads), output is bounded, and
// only exported functions of the session's packages are called, each
// after the session's grant is checked again, at most Options.CallRate a
// second. A compromised child can therefore still call every exported
// function its session may reach, with any arguments, and nothing else.
//
// Types cross by reference into the executable both processes run (see
// typeRef), which is why a child must be this same executable: the child
// checks each type it is sent against its name and size.
package sandbox
