// Command ops-repl is the operator's client for an ops-repl console, and a
// demo service to try it on. Run "ops-repl --help" for usage.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
)

const defaultURL = "ws://127.0.0.1:7227/"

const usage = `ops-repl: a secured maintenance console for Go services.

Usage:
  ops-repl [flags]                 interactive session (Tab completes, Ctrl-C
                                   cancels the running request, Ctrl-D exits)
  ops-repl [flags] -c LINE [-c …]  run lines in order in one session, then exit
  ops-repl [flags] -f FILE         run the lines of FILE (- for stdin)
  ops-repl token new SUBJECT       print a new token and its token-file line
  ops-repl demo [--serve]          start the demo service (see demo --help)
  ops-repl audit verify|show FILE… check or query an audit log (audit --help)
  ops-repl replay FILE             play a session transcript (replay --help)
  ops-repl policy check SUBJECT OBJECT [ACTION]
                                   ask a policy, and see the rule that decided

Flags:
  --url URL          console endpoint (env OPS_REPL_URL; default ` + defaultURL + `)
  --token-file FILE  read the bearer token from FILE
  --token TOKEN      bearer token (env OPS_REPL_TOKEN); visible to other local
                     users in the process list: prefer --token-file or the env
  --cert FILE        client certificate (PEM) for mutual TLS (wss:// only);
                     the server takes your subject from its Common Name
  --key FILE         the certificate's private key (PEM)
  --ca FILE          CA certificates (PEM) to verify the server with, instead
                     of the system's
  --reason TEXT      why you are connecting: recorded in the audit log with
                     each request (the policy may require one; mid-session,
                     the reason command changes it)
  -c LINE            a line to run; repeat for more (stops at the first failure)
  -f FILE            run the lines of FILE; - reads standard input
  --json             print one JSON object per event instead of text
  --out DIR          where downloads (heap profiles) are saved, 0600 (default
                     $XDG_DATA_HOME/ops-repl/downloads, or
                     ~/.local/share/ops-repl/downloads)
  --version          print the version, protocol and Go version, and exit

Many targets (instead of --url; with -c or -f):
  --targets SPEC     run on every target of SPEC, a comma-separated list of
                     ws:// URLs, file:PATH (a URL a line, or Prometheus
                     file_sd JSON), dns:NAME:PORT (every A/AAAA address),
                     dnssrv:NAME (the SRV records _ops-repl._tcp.NAME)
  --target-tokens F  lines "TARGET TOKEN", TARGET as written in SPEC;
                     otherwise the token above is used for every target
  --concurrency N    targets at once (default 32)
  --target-timeout D how long a target may stay silent, connecting or
                     within a line, before it counts as unreachable
                     (default 30s; a line that keeps reporting runs on)
  --yes              run Go, or lines that may change the targets, on all
  --resolver ADDR    ask this DNS server (host:port) for dns:, dnssrv: and
                     the targets' names, instead of the system's

Lines: a command (help lists yours), or Go source when your role allows it;
"eval SOURCE" evaluates Go that starts with a command's name.

Exit codes:
  0  every request succeeded
  1  a command or evaluation failed
  2  usage error
  3  not authenticated, not permitted (or a reason is required first),
     credentials revoked, or throttled (HTTP 429)
  4  cannot connect, connection lost, or protocol error
With --targets, the worst target's code: 4 if one was unreachable, else 3
if one refused, else 1 if a line failed on one, else 0.
`

func main() {
	sandboxMain() // first: a process started as an interpreter child stops here
	scrubEnv()
	log.SetOutput(yaegiLogFilter{os.Stderr})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, errReported) {
		fmt.Fprintf(os.Stderr, "ops-repl: %s\n", safeText(err.Error())) // it may quote the server
	}
	os.Exit(exitCode(err))
}

// scrubEnv removes the YAEGI_* variables: the interpreter library reads
// them, and one (YAEGI_DOT_CMD) names a command it runs.
func scrubEnv() {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "YAEGI_") {
			os.Unsetenv(k)
		}
	}
}

// yaegiLogFilter drops the fixed lines the interpreter library writes to
// the standard logger before some of its compiler panics ("nil type"),
// which the REPL reports as errors anyway: evaluated code could otherwise
// repeat them to flood the process's log.
type yaegiLogFilter struct{ w io.Writer }

func (f yaegiLogFilter) Write(p []byte) (int, error) {
	line := string(p)
	if i := strings.Index(line, " "); i >= 0 && strings.Count(line[:i], "/") == 2 { // "2006/01/02 15:04:05 msg"
		line = line[i+1:]
		if j := strings.Index(line, " "); j >= 0 {
			line = line[j+1:]
		}
	}
	switch strings.TrimSpace(line) {
	case "nil type", "nil reflect type":
		return len(p), nil
	}
	return f.w.Write(p)
}

// errReported wraps an error whose message was already shown.
var errReported = errors.New("reported")

type reportedError struct{ err error }

func (e *reportedError) Error() string   { return e.err.Error() }
func (e *reportedError) Unwrap() []error { return []error{e.err, errReported} }

type lines []string

func (l *lines) String() string     { return strings.Join(*l, "; ") }
func (l *lines) Set(s string) error { *l = append(*l, s); return nil }

// run is the whole program, testable: args without the program name.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "demo":
			return runDemo(ctx, args[1:], getenv, stdin, stdout, stderr)
		case "audit":
			return runAudit(args[1:], stdout, stderr)
		case "replay":
			return runReplay(ctx, args[1:], stdout, stderr)
		case "policy":
			return runPolicy(args[1:], stdout, stderr)
		case "help":
			io.WriteString(stdout, usage)
			return nil
		}
	}
	fs := flag.NewFlagSet("ops-repl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		urlFlag   = fs.String("url", "", "")
		token     = fs.String("token", "", "")
		tokenFile = fs.String("token-file", "", "")
		file      = fs.String("f", "", "")
		jsonOut   = fs.Bool("json", false, "")
		outDir    = fs.String("out", "", "")
		showVer   = fs.Bool("version", false, "")
		certFile  = fs.String("cert", "", "")
		keyFile   = fs.String("key", "", "")
		caFile    = fs.String("ca", "", "")
		reason    = fs.String("reason", "", "")
		cmds      lines
		ff        fleetFlags
	)
	fs.Var(&cmds, "c", "")
	fs.StringVar(&ff.spec, "targets", "", "")
	fs.StringVar(&ff.tokensFile, "target-tokens", "", "")
	fs.IntVar(&ff.concurrency, "concurrency", 32, "")
	fs.DurationVar(&ff.timeout, "target-timeout", 30*time.Second, "")
	fs.BoolVar(&ff.yes, "yes", false, "")
	fs.StringVar(&ff.resolver, "resolver", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, usage)
			return nil
		}
		return exitf(exitUsage, "%v (see ops-repl --help)", err)
	}
	if *showVer {
		fmt.Fprintf(stdout, "ops-repl %s (protocol %s, %s)\n", version(), wire.Subprotocol, runtime.Version())
		return nil
	}
	if fs.NArg() > 0 {
		return exitf(exitUsage, "unexpected argument %q (see ops-repl --help)", fs.Arg(0))
	}
	if len(cmds) > 0 && *file != "" {
		return exitf(exitUsage, "-c and -f cannot be used together")
	}
	u := firstNonEmpty(*urlFlag, getenv("OPS_REPL_URL"), defaultURL)
	tok, err := resolveToken(*token, *tokenFile, getenv("OPS_REPL_TOKEN"))
	if err != nil {
		return err
	}
	if ff.spec != "" {
		if *urlFlag != "" {
			return exitf(exitUsage, "--url and --targets cannot be used together")
		}
		if len(cmds) == 0 && *file == "" {
			return exitf(exitUsage, "--targets runs -c LINE or -f FILE on every target; it has no interactive session")
		}
		ls := []string(cmds)
		if *file != "" {
			if ls, err = fileLines(*file, stdin); err != nil {
				return err
			}
		}
		if ff.concurrency < 1 || ff.timeout <= 0 {
			return exitf(exitUsage, "--concurrency and --target-timeout must be positive")
		}
		tlsConf, err := clientTLS("wss://targets", *certFile, *keyFile, *caFile)
		if err != nil {
			return err
		}
		p := &printer{stdout: stdout, stderr: stderr, json: *jsonOut, dir: *outDir, lastNL: true}
		if p.dir == "" {
			p.dir, _ = defaultOutDir(getenv)
		}
		if isTerminal(stderr) {
			p.progress = stderr
		}
		return runFleet(ctx, ff, ls, tok, tlsConf, p, stderr)
	}
	if ff.yes || ff.tokensFile != "" || ff.resolver != "" {
		return exitf(exitUsage, "--yes, --target-tokens and --resolver go with --targets")
	}
	if pu, err := client.ParseURL(u); err == nil && pu.Scheme == "ws" && !isLoopback(pu.Host) && tok != "" {
		fmt.Fprintf(stderr, "ops-repl: warning: sending credentials to %s without TLS (ws://); use wss://\n", pu.Host)
	}
	tlsConf, err := clientTLS(u, *certFile, *keyFile, *caFile)
	if err != nil {
		return err
	}
	if strings.ContainsAny(*reason, "\r\n") || len(*reason) > 1000 {
		return exitf(exitUsage, "--reason: one line of at most 1000 bytes")
	}
	p := &printer{stdout: stdout, stderr: stderr, json: *jsonOut, dir: *outDir, lastNL: true}
	if p.dir == "" {
		p.dir, p.dirErr = defaultOutDir(getenv) // reported if a file arrives
	}
	if isTerminal(stderr) {
		p.progress = stderr
	}
	c, err := dial(ctx, u, tok, tlsConf, p.notice)
	if err != nil {
		if tok == "" && exitCode(err) == exitDenied {
			return fmt.Errorf("%w (no token given: use --token-file, --token or OPS_REPL_TOKEN)", err)
		}
		return err
	}
	defer c.Close()
	if r := strings.TrimSpace(*reason); r != "" {
		if _, err := c.Run(ctx, "reason "+r, client.Handler{}); err != nil {
			return fmt.Errorf("--reason: %w", err)
		}
	}
	if *jsonOut {
		p.emit(c.Hello())
	}
	switch {
	case len(cmds) > 0:
		return runLines(ctx, c, p, cmds, false, stderr)
	case *file != "":
		ls, err := fileLines(*file, stdin)
		if err != nil {
			return err
		}
		return runLines(ctx, c, p, ls, true, stderr)
	case !isTerminal(stdin):
		ls, err := readLines(stdin)
		if err != nil {
			return exitf(exitUsage, "reading standard input: %v", err)
		}
		return runLines(ctx, c, p, ls, true, stderr)
	}
	return interactive(ctx, c, p, stdin, stdout, stderr)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func resolveToken(flagTok, file, env string) (string, error) {
	if flagTok != "" && file != "" {
		return "", exitf(exitUsage, "--token and --token-file cannot be used together")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", exitf(exitUsage, "--token-file: %v", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return "", exitf(exitUsage, "--token-file %s: want exactly one token", file)
		}
		return tok, nil
	}
	return strings.TrimSpace(firstNonEmpty(flagTok, env)), nil
}

// fileLines reads the lines of -f FILE (- for stdin).
func fileLines(name string, stdin io.Reader) ([]string, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, exitf(exitUsage, "%v", err)
		}
		defer f.Close()
		r = f
	}
	ls, err := readLines(r)
	if err != nil {
		return nil, exitf(exitUsage, "reading %s: %v", name, err)
	}
	return ls, nil
}

func readLines(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), wire.MaxLine)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

// runLines runs lines in order and stops at the first failure. With join,
// a line that leaves Go source incomplete is continued by the next ones.
func runLines(ctx context.Context, c *client.Conn, p *printer, ls []string, join bool, stderr io.Writer) error {
	intr := interrupts(ctx)
	pending := ""
	for i, line := range ls {
		if ctx.Err() != nil {
			return errTerminated
		}
		if pending == "" && strings.TrimSpace(line) == "" {
			continue
		}
		src := pending + line
		_, err := runOne(ctx, c, src, p, intr)
		if errors.Is(err, client.ErrIncomplete) && join && i < len(ls)-1 {
			pending = src + "\n"
			continue
		}
		pending = ""
		if err != nil {
			if rest := len(ls) - i - 1; rest > 0 {
				fmt.Fprintf(stderr, "ops-repl: stopped; %d remaining line(s) not run\n", rest)
			}
			if isReported(err) {
				return &reportedError{err: err} // the printer showed it
			}
			if errors.Is(err, client.ErrIncomplete) {
				return exitf(exitFailed, "line %d: Go source is incomplete (the block was never closed)", i+1)
			}
			return err
		}
	}
	return nil
}

// interrupts turns SIGINT into cancel requests for the running request.
func interrupts(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-sig:
				select {
				case ch <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

func runToken(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "new" {
		return exitf(exitUsage, "usage: ops-repl token new SUBJECT")
	}
	tok, line, err := auth.NewToken(args[1])
	if err != nil {
		return exitf(exitUsage, "%v", err)
	}
	fmt.Fprintf(stdout, "%s\n%s\n", tok, line)
	fmt.Fprintf(stderr, "Line 1 is the token: give it to %s (it is shown only now).\nLine 2 goes in the server's token file; bind the subject to a role in policy.csv:\n  g, %s, role:viewer\n", args[1], args[1])
	return nil
}

// clientTLS builds the TLS configuration for --cert, --key and --ca.
func clientTLS(rawURL, certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil
	}
	if (certFile == "") != (keyFile == "") {
		return nil, exitf(exitUsage, "--cert and --key go together")
	}
	if u, err := client.ParseURL(rawURL); err == nil && u.Scheme != "wss" {
		return nil, exitf(exitUsage, "--cert, --key and --ca need a wss:// (TLS) URL; got %s://", u.Scheme)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, exitf(exitUsage, "--cert/--key: %v", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, exitf(exitUsage, "--ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, exitf(exitUsage, "--ca %s: no PEM certificate in it", caFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// version is the module's version as the build recorded it: a tag, a
// pseudo-version from the commit, or "devel".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		return "devel-" + rev[:12] + dirty
	}
	return "devel"
}

// defaultOutDir is where downloads go without --out:
// $XDG_DATA_HOME/ops-repl/downloads, or ~/.local/share/ops-repl/downloads.
func defaultOutDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "ops-repl", "downloads"), nil
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "share", "ops-repl", "downloads"), nil
	}
	return "", errors.New("no folder for downloads (neither HOME nor XDG_DATA_HOME is set): give one with --out DIR")
}
