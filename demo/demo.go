package demo

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/policy"
	"github.com/opsrepl/opsrepl/sandbox"
)

// Subjects are the demo's users; each holds the role of the same name.
var Subjects = []string{"viewer", "operator", "admin"}

// ConsolePath is where the demo mounts the console.
const ConsolePath = "/ops-repl"

// Options configures Start.
type Options struct {
	// Listen is the address of the demo's HTTP server (app and console).
	// A missing host means loopback. Default: 127.0.0.1:0 (a free port).
	Listen string
	// Dir holds tokens, the live policy and the audit log; created 0700.
	// Default: a new temporary folder.
	Dir string
	// Leak makes the service leak memory steadily from a function whose
	// name contains "leak", for the leak report to find.
	Leak bool
	// Logger receives the console's logs. Default: discard.
	Logger *slog.Logger
	// Interp holds the limits of the REPL's interpreters (see
	// console.Options.Interp). Default: interp's defaults.
	Interp interp.Options
	// Sandbox holds the limits of the interpreter processes (see
	// console.Options.Sandbox). Default: sandbox's defaults.
	Sandbox sandbox.Options
	// InProcessEval evaluates Go inside the demo's process instead of in
	// child processes (see console.Options.InProcessEval): unsafe.
	InProcessEval bool
	// HandshakeRate limits one subject's connection attempts (see
	// console.Options.HandshakeRate). Default: the console's.
	HandshakeRate console.Rate
}

// Demo is a running demo service.
type Demo struct {
	ConsoleURL string // ws://…/ops-repl
	WebURL     string // http://…/ops-repl/, the web console
	AppURL     string // http://…/
	AuditPath  string // the audit log
	PolicyPath string // the live policy file (reloaded when it changes)
	// TranscriptDir holds one asciicast recording per session.
	TranscriptDir string
	Dir           string            // the state folder
	Tokens        map[string]string // subject → bearer token

	srv      *http.Server
	log      *slog.Logger
	console  *console.Server
	logLevel slog.LevelVar // the demo's log level, for the loglevel command
	audit    *audit.Log
	app      *app
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

// Start creates the state folder, tokens and policy, and serves the app
// and the console until Close, or until ctx ends.
func Start(ctx context.Context, opts Options) (*Demo, error) {
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ops-repl-demo-")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		dir = d
	} else if err := prepareDir(dir); err != nil {
		return nil, err
	}
	d := &Demo{Dir: dir, Tokens: map[string]string{}, done: make(chan struct{}), log: opts.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if err := d.writeState(); err != nil {
		return nil, err
	}
	tokens, err := auth.LoadFile(filepath.Join(dir, "tokens"))
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	enf, err := policy.New(policy.Options{PolicyPath: d.PolicyPath})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if d.audit, err = audit.Open(audit.Options{Path: d.AuditPath, Logger: d.log}); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d.app = newApp()

	// Embedding the console: exports, then console.New, then mount.
	exp := new(interp.Exports).
		Func("demo", "CacheLen", d.app.CacheLen).
		Func("demo", "CacheKeys", d.app.CacheKeys).
		Func("demo", "CacheGet", d.app.CacheGet).
		Func("demo", "Requests", d.app.Requests).
		Func("demo", "Uptime", d.app.Uptime).
		Func("demo", "LeakedBytes", d.app.LeakedBytes)
	d.console, err = console.New(console.Options{
		Authenticator: tokens,
		Authorizer:    enf,
		Audit:         d.audit,
		Exports:       exp,
		Logger:        opts.Logger,
		Interp:        opts.Interp,
		Sandbox:       opts.Sandbox,
		InProcessEval: opts.InProcessEval,
		HandshakeRate: opts.HandshakeRate,
		LogLevel:      &d.logLevel,
		DumpDir:       d.Dir,
		TranscriptDir: d.TranscriptDir,
		// Everyone trying the demo shares its three subjects: allow each
		// half of the sessions, not the default 8.
		MaxSessionsPerSubject: 32,
		Web:                   true,
		Commands: []console.Command{{
			Name:    "cache-stats",
			Summary: "the demo's cache size and request counters",
			Run:     d.app.cacheStats,
		}},
	})
	if err != nil {
		d.audit.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(ConsolePath, d.console)
	mux.Handle(ConsolePath+"/", d.console) // the web console
	mux.Handle("/", d.app)

	addr := opts.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	} else if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		d.audit.Close()
		return nil, fmt.Errorf("demo: listen: %w", err)
	}
	hostport := ln.Addr().String()
	d.ConsoleURL = "ws://" + hostport + ConsolePath
	d.WebURL = "http://" + hostport + ConsolePath + "/"
	d.AppURL = "http://" + hostport + "/"
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}

	wctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); d.app.churn(wctx) }()
	go func() {
		defer wg.Done()
		enf.Watch(wctx, policy.WatchOptions{Validate: d.console.CheckObjects, OnChange: d.policyChanged})
	}()
	go func() {
		defer wg.Done()
		// A token removed from the file ends its subject's sessions (the
		// console registered itself with the tokens).
		tokens.Watch(wctx, auth.WatchOptions{OnChange: d.tokensChanged})
	}()
	if opts.Leak {
		wg.Add(1)
		go func() { defer wg.Done(); d.app.leakLoop(wctx) }()
	}
	go func() {
		d.srv.Serve(ln)
		wg.Wait()
		close(d.done)
	}()
	go func() { // ctx ending stops the demo as Close does
		select {
		case <-ctx.Done():
			d.Close()
		case <-d.done:
		}
	}()
	return d, nil
}

// writeState writes tokens (hashed, plus one 0600 file per subject with
// the clear token) and the live policy: the default policy plus the demo
// subjects' role bindings.
func (d *Demo) writeState() error {
	var hashes strings.Builder
	hashes.WriteString("# ops-repl demo tokens: SUBJECT SHA256(token)\n")
	for _, s := range Subjects {
		tok, line, err := auth.NewToken(s)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		d.Tokens[s] = tok
		hashes.WriteString(line + "\n")
		if err := writePrivate(filepath.Join(d.Dir, "token-"+s), tok+"\n"); err != nil {
			return err
		}
	}
	if err := writePrivate(filepath.Join(d.Dir, "tokens"), hashes.String()); err != nil {
		return err
	}
	var pol strings.Builder
	pol.WriteString(opsrepl.DefaultPolicy)
	pol.WriteString("\n# demo subjects\n")
	for _, s := range Subjects {
		fmt.Fprintf(&pol, "g, %s, role:%s\n", s, s)
	}
	pol.WriteString("\n# the demo's own command\np, role:viewer, cmd:cache-stats, run, allow\n")
	d.PolicyPath = filepath.Join(d.Dir, "policy.csv")
	if err := writePrivate(d.PolicyPath, pol.String()); err != nil {
		return err
	}
	d.AuditPath = filepath.Join(d.Dir, "audit.jsonl")
	d.TranscriptDir = filepath.Join(d.Dir, "transcripts")
	if err := prepareDir(d.TranscriptDir); err != nil {
		return err
	}
	if st, err := os.Lstat(d.AuditPath); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("demo: %s exists and is not a regular file", d.AuditPath)
	}
	return nil
}

// policyChanged audits and logs a reload of the live policy file.
func (d *Demo) policyChanged(ch policy.Change) {
	rec := audit.Record{Kind: audit.KindPolicy, Outcome: audit.OutcomeReloaded, OldHash: ch.OldHash, NewHash: ch.NewHash,
		Detail: fmt.Sprintf("%s: %d rules in force", ch.Path, ch.Rules)}
	if ch.Err != nil {
		rec.Outcome, rec.Message, rec.Detail = audit.OutcomeRejected, ch.Err.Error(), ""
		d.log.Error("demo: policy change rejected; the old policy stays in force", "err", ch.Err, "old", ch.OldHash, "new", ch.NewHash)
	} else {
		d.log.Info("demo: policy reloaded", "path", ch.Path, "rules", ch.Rules, "old", ch.OldHash, "new", ch.NewHash)
	}
	if err := d.audit.Write(rec); err != nil {
		d.log.Error("demo: audit write failed", "err", err)
	}
}

// tokensChanged audits and logs a reload of the token file.
func (d *Demo) tokensChanged(ch auth.Change) {
	rec := audit.Record{Kind: audit.KindTokens, Outcome: audit.OutcomeReloaded, OldHash: ch.OldHash, NewHash: ch.NewHash,
		Detail: fmt.Sprintf("%s: %d tokens in force; revoked: %s", ch.Path, ch.Tokens, strings.Join(ch.Revoked, ", "))}
	if ch.Err != nil {
		rec.Outcome, rec.Message, rec.Detail = audit.OutcomeRejected, ch.Err.Error(), ""
		d.log.Error("demo: token file change rejected; the tokens in force stay", "err", ch.Err)
	} else {
		d.log.Info("demo: token file reloaded", "tokens", ch.Tokens, "revoked", ch.Revoked)
	}
	if err := d.audit.Write(rec); err != nil {
		d.log.Error("demo: audit write failed", "err", err)
	}
}

// prepareDir makes dir a private folder: created 0700, or, when it
// exists, a real folder (not a link) whose mode is then set to 0700.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("demo: %s is not a folder", dir)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// writePrivate writes a 0600 file by renaming a fresh temporary file over
// name, so an existing file's mode, or a link at name, is never reused.
func writePrivate(name, content string) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// Close stops the service, ends every console session and closes the
// audit log. It is idempotent.
func (d *Demo) Close() error {
	d.once.Do(func() {
		d.console.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.srv.Shutdown(ctx)
		d.cancel()
		<-d.done
		d.audit.Close()
	})
	return nil
}

// app is the demo service: a cache with request counters.
type app struct {
	start time.Time

	mu       sync.Mutex
	cache    map[string]string
	order    []string
	requests map[string]int64
	leaked   [][]byte
}

const cacheMax = 2000

// newApp returns the service with its cache already full, as a service
// that has been up for a while has it: without --leak, its heap is steady
// from the first minute, as a leak check should find it.
func newApp() *app {
	a := &app{start: time.Now(), cache: map[string]string{}, requests: map[string]int64{}}
	value := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 3)[:64]
	for i := range cacheMax {
		a.put(fmt.Sprintf("item-%04d", i), value)
	}
	return a
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests[r.Method+" "+routeOf(r.URL.Path)]++
	a.mu.Unlock()
	switch {
	case r.URL.Path == "/":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"cache_entries": a.CacheLen(), "uptime": a.Uptime().String()})
	case strings.HasPrefix(r.URL.Path, "/cache/"):
		key := strings.TrimPrefix(r.URL.Path, "/cache/")
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			var b [4096]byte
			n, _ := r.Body.Read(b[:])
			a.put(key, string(b[:n]))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		v, ok := a.CacheGet(key)
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, v)
	default:
		http.NotFound(w, r)
	}
}

func routeOf(p string) string {
	if strings.HasPrefix(p, "/cache/") {
		return "/cache/{key}"
	}
	if p == "/" {
		return "/"
	}
	return "other"
}

func (a *app) put(k, v string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cache[k]; !ok {
		a.order = append(a.order, k)
	}
	a.cache[k] = v
	for len(a.order) > cacheMax {
		delete(a.cache, a.order[0])
		a.order = a.order[1:]
	}
}

// CacheLen returns the number of cache entries.
func (a *app) CacheLen() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.cache)
}

// CacheKeys returns up to n cache keys, sorted.
func (a *app) CacheKeys(n int) []string {
	a.mu.Lock()
	keys := make([]string, 0, len(a.cache))
	for k := range a.cache {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	sort.Strings(keys)
	if n >= 0 && n < len(keys) {
		keys = keys[:n]
	}
	return keys
}

// CacheGet returns the value cached under key.
func (a *app) CacheGet(key string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.cache[key]
	return v, ok
}

// Requests returns a copy of the request counters by route.
func (a *app) Requests() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int64, len(a.requests))
	for k, v := range a.requests {
		out[k] = v
	}
	return out
}

// Uptime returns how long the service has run.
func (a *app) Uptime() time.Duration { return time.Since(a.start).Round(time.Millisecond) }

// LeakedBytes returns how much the leak (with --leak) has retained.
func (a *app) LeakedBytes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, b := range a.leaked {
		n += len(b)
	}
	return n
}

// cacheStats is the demo's application command.
func (a *app) cacheStats(ctx context.Context, r *console.Request) error {
	if err := r.ParseFlags(flag.NewFlagSet("cache-stats", flag.ContinueOnError), false); err != nil {
		return err
	}
	reqs := a.Requests()
	routes := make([]string, 0, len(reqs))
	for k := range reqs {
		routes = append(routes, k)
	}
	sort.Strings(routes)
	fmt.Fprintf(r.Out, "cache entries  %d\nuptime         %s\n", a.CacheLen(), a.Uptime())
	for _, k := range routes {
		fmt.Fprintf(r.Out, "requests       %-20s %d\n", k, reqs[k])
	}
	return nil
}

// churn allocates steadily and refreshes cache entries, like a busy app.
func (a *app) churn(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		buf := make([]byte, 16<<10+rand.IntN(16<<10))
		for j := range buf {
			buf[j] = byte('a' + j%26)
		}
		a.put(fmt.Sprintf("item-%04d", rand.IntN(3000)), string(buf[:64]))
	}
}

// leakLoop retains memory forever through leakRequestLog: about 1 MiB/s.
func (a *app) leakLoop(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.leakRequestLog()
		}
	}
}

// leakRequestLog is the demo's bug: it keeps a copy of every "request".
func (a *app) leakRequestLog() {
	b := make([]byte, 50<<10)
	for i := range b {
		b[i] = byte(i)
	}
	a.mu.Lock()
	a.leaked = append(a.leaked, b)
	a.mu.Unlock()
}
