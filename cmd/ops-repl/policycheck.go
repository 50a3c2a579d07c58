//go:build !nodemo

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/opsrepl/opsrepl/policy"
)

const policyUsage = `Usage:
  ops-repl policy check [--model FILE] [--policy FILE] SUBJECT OBJECT [ACTION]
      print allow or deny for the request, and the rule that decided it.
      OBJECT is cmd:NAME, eval or pkg:IMPORT/PATH; ACTION defaults to import
      for pkg: objects and run otherwise (require-reason asks whether the
      policy wants a reason first). Exit code 0 for allow, 1 for deny.
        --model FILE   Casbin model (default: the built-in model.conf)
        --policy FILE  policy (default: the built-in policy.csv)
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
	act := "run"
	if strings.HasPrefix(obj, "pkg:") {
		act = "import"
	}
	if fs.NArg() == 3 {
		act = fs.Arg(2)
	}
	enf, err := policy.New(policy.Options{ModelPath: *modelPath, PolicyPath: *policyPath})
	if err != nil {
		return exitf(exitUsage, "%v", err)
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
