// Package client is the Go client of an ops-repl console: it dials the
// console's WebSocket with a token or a client certificate, runs lines,
// streams each request's events, cancels, completes, and saves transferred
// files after checking their size and SHA-256.
//
// The protocol it speaks is PROTOCOL.md at the module's root; package
// console/wire holds its types. The client links neither the interpreter
// nor the policy engine, so it fits in tools of its own.
//
// A Conn carries any number of requests at once. Run is the callback form
// (events go to a Handler until the final one); Send returns a Request
// whose events are read with Next. Events that answer no request (id 0)
// go to Options.Notice.
//
//	c, err := client.Dial(ctx, "ws://127.0.0.1:7227/ops-repl", client.Options{Token: tok})
//	if err != nil { … }
//	defer c.Close()
//	final, err := c.Run(ctx, "memstats", client.Handler{
//		Event: func(ev wire.Event) error { fmt.Print(ev.Data); return nil },
//	})
package client
