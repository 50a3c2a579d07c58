//go:build !nodemo

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/opsrepl/opsrepl/demo"
	"github.com/opsrepl/opsrepl/sandbox"
)

// sandboxMain hands control to the interpreter child when this process is
// one (the demo evaluates Go in children of this executable).
func sandboxMain() { sandbox.Main() }

const demoUsage = `Usage:
  ops-repl demo [--listen ADDR] [--dir DIR] [--leak]
      start the demo service and open an interactive session as admin
      (the service logs to DIR/demo.log)
  ops-repl demo --serve [--listen ADDR] [--dir DIR] [--leak]
      run the demo headless, logging to stderr; once ready, print one JSON
      line on stdout:
      {"url":…,"web":…,"app":…,"audit":…,"policy":…,"tokens":{"viewer":…,"operator":…,"admin":…}}
      then serve until SIGINT or SIGTERM, and exit 0

Flags:
  --listen ADDR  address of the demo (app at /, console at /ops-repl,
                 web console at /ops-repl/);
                 a missing host means 127.0.0.1 (default 127.0.0.1:0, a free port)
  --dir DIR      state folder: tokens, live policy.csv, audit.jsonl
                 (default: a new temporary folder)
  --leak         leak about 1 MiB/s from a function named leakRequestLog
`

// readyLine is the --serve contract: one JSON line on stdout.
type readyLine struct {
	URL    string            `json:"url"`
	Web    string            `json:"web"` // the web console's page; added with it (fields are only ever added)
	App    string            `json:"app"`
	Audit  string            `json:"audit"`
	Policy string            `json:"policy"`
	Tokens map[string]string `json:"tokens"`
}

func runDemo(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	serve := fs.Bool("serve", false, "")
	listen := fs.String("listen", "", "")
	dir := fs.String("dir", "", "")
	leak := fs.Bool("leak", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, demoUsage)
			return nil
		}
		return exitf(exitUsage, "demo: %v (see ops-repl demo --help)", err)
	}
	if fs.NArg() > 0 {
		return exitf(exitUsage, "demo: unexpected argument %q (see ops-repl demo --help)", fs.Arg(0))
	}
	// The demo's log: stderr with --serve; otherwise DIR/demo.log, so that
	// it does not write over the interactive session.
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if !*serve {
		if *dir == "" {
			tmp, err := os.MkdirTemp("", "ops-repl-demo-")
			if err != nil {
				return exitf(exitFailed, "demo: %v", err)
			}
			*dir = tmp
		}
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return exitf(exitFailed, "demo: %v", err)
		}
		lf, err := os.OpenFile(filepath.Join(*dir, "demo.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return exitf(exitFailed, "demo: %v", err)
		}
		defer lf.Close()
		logger = slog.New(slog.NewTextHandler(lf, nil))
	}
	d, err := demo.Start(ctx, demo.Options{Listen: *listen, Dir: *dir, Leak: *leak, Logger: logger})
	if err != nil {
		return exitf(exitFailed, "%v", err)
	}
	defer d.Close()

	if *serve {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		b, _ := json.Marshal(readyLine{URL: d.ConsoleURL, Web: d.WebURL, App: d.AppURL, Audit: d.AuditPath, Policy: d.PolicyPath, Tokens: d.Tokens})
		fmt.Fprintf(stdout, "%s\n", b)
		if f, ok := stdout.(*os.File); ok {
			f.Sync()
		}
		<-ctx.Done()
		return nil
	}

	fmt.Fprintf(stderr, `ops-repl demo
  app      %s
  console  %s
  web      %s (sign in with a token from the state folder)
  state    %s (tokens: token-viewer, token-operator, token-admin)
  audit    %s
  log      %s/demo.log
Try other roles from a second terminal:
  go run ./cmd/ops-repl --url %s --token-file %s/token-viewer

`, d.AppURL, d.ConsoleURL, d.WebURL, d.Dir, d.AuditPath, d.Dir, d.ConsoleURL, d.Dir)
	err = run(ctx, []string{"--url", d.ConsoleURL, "--token-file", d.Dir + "/token-admin"}, getenv, stdin, stdout, stderr)
	fmt.Fprintf(stderr, "demo stopped; its tokens, policy and audit log stay in %s\n", d.Dir)
	return err
}
