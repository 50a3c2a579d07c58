//go:build !nodemo

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/opsrepl/opsrepl/access"
	"github.com/opsrepl/opsrepl/audit"

	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/policy"
)

const policyUsage = `Usage:
  ops-repl policy check [--model FILE] [--policy FILE] [--command NAME…] SUBJECT OBJECT [ACTION]
      check the policy as a console would (it refuses one that does not
      parse, has no rule, does not end with a newline, or names a command
      or an object the console does not have), then print allow or deny
      for the request, and the rule that decided it.
      OBJECT is cmd:NAME, eval or pkg:IMPORT/PATH; ACTION defaults to import
      for pkg: objects and run otherwise (require-reason asks whether the
      policy wants a reason first).
      Exit code 0 for allow, 1 for deny, 2 for a policy a console refuses.
        --model FILE    Casbin model (default: the built-in model.conf)
        --policy FILE   policy (default: the built-in policy.csv)
        --command NAME  an application's own command, which the policy may
                        name (repeat for more)
`

func runPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		io.WriteString(stdout, policyUsage)
		if len(args) == 0 {
			return exitf(exitUsage, "policy: give check")
		}
		return nil
	}
	if args[0] != "check" {
		return exitf(exitUsage, "policy: unknown subcommand %q (see ops-repl policy --help)", args[0])
	}
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	modelPath := fs.String("model", "", "")
	policyPath := fs.String("policy", "", "")
	var appCommands []string
	fs.Func("command", "", func(v string) error { appCommands = append(appCommands, v); return nil })
	if err := parseInterspersed(fs, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, policyUsage)
			return nil
		}
		return exitf(exitUsage, "policy check: %v (see ops-repl policy --help)", err)
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		return exitf(exitUsage, "policy check: give SUBJECT OBJECT [ACTION] (see ops-repl policy --help)")
	}
	sub, obj := fs.Arg(0), fs.Arg(1)
	act := access.ActionOf(obj)
	if fs.NArg() == 3 {
		act = fs.Arg(2)
	}
	if err := access.Check(obj, act); err != nil {
		return exitf(exitUsage, "policy check: %v", err)
	}
	enf, err := policy.New(policy.Options{ModelPath: *modelPath, PolicyPath: *policyPath})
	if err != nil {
		return exitf(exitUsage, "%v", err)
	}
	if err := consoleWouldTake(enf, *policyPath, appCommands); err != nil {
		return exitf(exitUsage, "a console would refuse this policy: %v", err)
	}
	ok, rule, err := enf.Explain(sub, obj, act)
	if err != nil {
		return exitf(exitFailed, "%v", err)
	}
	source := *policyPath
	if source == "" {
		source = "built-in policy.csv"
	}
	verdict := "deny"
	if ok {
		verdict = "allow"
	}
	fmt.Fprintf(stdout, "%s: %s %s %s\n", verdict, safeText(sub), safeText(obj), safeText(act))
	switch {
	case rule != nil && rule.Line > 0:
		fmt.Fprintf(stdout, "  by %s:%d: %s, %s\n", source, rule.Line, rule.Type, safeText(strings.Join(rule.Fields, ", ")))
	case rule != nil:
		fmt.Fprintf(stdout, "  by the rule: %s, %s\n", rule.Type, safeText(strings.Join(rule.Fields, ", ")))
	default:
		fmt.Fprintf(stdout, "  no rule matches: denied by default\n")
	}
	if roles := enf.Roles(sub); len(roles) > 0 {
		fmt.Fprintf(stdout, "  %s holds: %s\n", safeText(sub), safeText(strings.Join(roles, ", ")))
	}
	if !ok {
		return &reportedError{err: exitf(exitFailed, "denied")}
	}
	return nil
}

// consoleWouldTake checks a policy as a console checks one it is given or
// reloads: a console with the built-in commands and the application's
// own, built on it, must accept it; and a file must end with a newline.
func consoleWouldTake(enf *policy.Enforcer, path string, appCommands []string) error {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := policy.Whole(b); err != nil {
			return err
		}
	}
	cmds := make([]console.Command, 0, len(appCommands))
	for _, name := range appCommands {
		cmds = append(cmds, console.Command{Name: name, Summary: "application command",
			Run: func(context.Context, *console.Request) error { return nil }})
	}
	srv, err := console.New(console.Options{Authorizer: enf, Audit: audit.Discard, Commands: cmds, InProcessEval: true,
		Authenticator: console.AuthenticatorFunc(func(*http.Request) (string, error) { return "", errors.New("none") })})
	if err != nil {
		return err
	}
	return srv.Close()
}
