// Package demo is a small HTTP service with an ops-repl console mounted, to
// try the console on: an in-memory cache, request counters, steady
// allocation churn and, on request, a memory leak. It also shows how an
// application embeds the console: see Start.
//
// Usage:
//
//	d, err := demo.Start(ctx, demo.Options{})
//	if err != nil { ... }
//	defer d.Close()
//	fmt.Println(d.ConsoleURL, d.Tokens["admin"])
package demo
