//go:build nodemo

package main

import (
	"context"
	"io"
)

// runDemo in a client-only build (go build -tags nodemo): the binary then
// links neither the interpreter nor Casbin.
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return exitf(exitUsage, "this ops-repl was built without the demo (-tags nodemo)")
}

func runPolicy(args []string, stdout, stderr io.Writer) error {
	return exitf(exitUsage, "this ops-repl was built without the policy engine (-tags nodemo)")
}

// sandboxMain: a client-only build starts no interpreter children.
func sandboxMain() {}
