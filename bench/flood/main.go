// Command flood measures what a flood of bad WebSocket handshakes against
// the console costs the application it is embedded in. It builds ops-repl,
// starts `ops-repl demo --serve` (all on loopback), holds idle sessions
// open, and drives a bounded HTTP load at the demo app in interleaved
// phases, A without a flood and B with one (A B A B …). For each B phase
// it starts itself again as a flooder: a second process whose workers dial
// the console with a wrong token, either in a closed loop (-flood-rate 0,
// the default) or paced to at most -flood-rate attempts per second across
// all workers, and count the answers by HTTP status.
//
// The flooder runs on the same machine, so a B phase also pays for the
// CPU the flood itself takes (the flooder's, the kernel's, loopback's).
// To tell that apart from what the console costs, -control (on by default)
// adds a control phase C to every round (A B C A B C …): the same flooder,
// at the same rate and concurrency, floods a dummy instead of the console.
// The dummy is a third process (the harness started once more, with
// -dummy, for the whole run): a bare net/http server on loopback that
// answers every request with HTTP 429 and a short body, as the console
// answers a throttled handshake.
// It reports:
//
//   - the app's p50 and p99 latency with the flood as a ratio to the same
//     load without it, B/A (target: p99 ratio at most 1.2×);
//   - with -control, the same for the control flood, C/A (the flood's own
//     cost on this machine: client CPU, kernel, loopback), and B/C (what
//     the console adds over answering the same flood with a bare 429);
//   - the flood's handshake attempts per second (against -flood-rate, if
//     set) and its status counts, for B and for C;
//   - how long opening the idle sessions took, and how many 429s it met;
//   - whether the idle sessions survived the flood, and how long a fresh
//     admin session takes to open after it (must be under 5s).
//
// The console enforces abuse limits, in this order: handshakes per source
// address (10/s, bursts of 20: 429 with Retry-After), the session cap
// (MaxSessions, 64: 503), credentials (failed authentications per source:
// 1/s after a burst of 10, then 429 instead of 401), and sessions per
// subject (32 in the demo: 429). The default -sessions 64 fills the cap:
// the idle sessions are spread round-robin over the demo's three subjects
// (admin, operator, viewer; no subject over 32) and opened at the pace the
// handshake limit allows: a 429 is retried after its Retry-After (150ms
// without one), within 60s in all. The flooder shares the harness's
// loopback address, so its handshakes mostly meet the per-source rate
// limit (429); the few that pass it meet the full session cap (503) before
// credentials are checked. (With -sessions 63 they reach authentication
// instead: 401, then 429.)
//
// After the last flood the harness closes one idle admin session, to free
// a slot, and then opens a fresh admin session, retrying a 429 or 503
// every 100ms; the time it reports runs from the end of the flood (the
// flooder has exited) to the fresh session's hello, the close included,
// and must stay under 5s. This happens right after the last B phase, so
// with -control the last round's C phase runs after it, with one idle
// session fewer (C does not touch the console).
//
// Usage (from the module root):
//
//	go run ./bench/flood [-phase 10s] [-rounds 2] [-clients 4] [-flood-conc 8] [-flood-rate 0] [-sessions 64] [-control=true] [-json]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
)

const (
	p99Target    = 1.2             // largest acceptable p99 ratio, flood to no flood
	freshBudget  = 5 * time.Second // a fresh session must open within this
	helloTimeout = 5 * time.Second

	openBudget   = 60 * time.Second       // opening all the idle sessions must fit in this
	openRetry    = 150 * time.Millisecond // wait after a 429 without a Retry-After
	freshRetry   = 100 * time.Millisecond // wait between fresh-session attempts
	maxRetryWait = 5 * time.Second        // longest Retry-After honoured as is
)

// idleSubjects are the demo's subjects, over which the idle sessions are
// spread round-robin: admin first, so there is an admin session to close
// for the fresh one.
var idleSubjects = []string{"admin", "operator", "viewer"}

func main() {
	flooder := flag.Bool("flooder", false, "run as the flooding process (internal)")
	floodURL := flag.String("url", "", "console URL to flood, loopback only (internal)")
	floodFor := flag.Duration("flood-for", 0, "upper bound of the flood (internal)")
	dummy := flag.Bool("dummy", false, "run as the control's bare HTTP 429 server (internal)")
	phase := flag.Duration("phase", 10*time.Second, "length of each load phase")
	rounds := flag.Int("rounds", 2, "rounds of one phase without and one with the flood (and one control phase, with -control)")
	clients := flag.Int("clients", 4, "concurrent HTTP clients, each in a closed loop")
	floodConc := flag.Int("flood-conc", 8, "concurrent flood workers, each in a closed loop")
	floodRate := flag.Float64("flood-rate", 0, "flood handshake attempts per second across all workers (0: unbounded closed loop)")
	sessions := flag.Int("sessions", 60, "idle sessions held open, round-robin over admin, operator and viewer (the demo allows 64, 4 of them kept for admins)")
	control := flag.Bool("control", true, "add a control phase C to each round: the same flood aimed at a bare HTTP 429 server instead of the console")
	asJSON := flag.Bool("json", false, "print the report as one JSON object")
	flag.Parse()
	if *flooder {
		if err := runFlooder(*floodURL, *floodConc, *floodRate, *floodFor); err != nil {
			fmt.Fprintln(os.Stderr, "flooder:", err)
			os.Exit(1)
		}
		return
	}
	if *dummy {
		if err := runDummy(); err != nil {
			fmt.Fprintln(os.Stderr, "dummy:", err)
			os.Exit(1)
		}
		return
	}
	cfg := config{Phase: *phase, Rounds: *rounds, Clients: *clients, FloodConc: *floodConc, FloodRate: *floodRate, Sessions: *sessions, Control: *control}
	if err := runHarness(cfg, *asJSON); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

type config struct {
	Phase     time.Duration
	Rounds    int
	Clients   int
	FloodConc int
	FloodRate float64 // attempts per second across the flood workers; 0: unbounded
	Sessions  int
	Control   bool // add the control phases C
}

// readyLine is the `ops-repl demo --serve` contract: one JSON line.
type readyLine struct {
	URL    string            `json:"url"`
	App    string            `json:"app"`
	Audit  string            `json:"audit"`
	Policy string            `json:"policy"`
	Tokens map[string]string `json:"tokens"`
}

// floodResult is what the flooder prints on exit, as one JSON line.
type floodResult struct {
	Attempts   int64            `json:"attempts"`
	Seconds    float64          `json:"seconds"`
	PerSec     float64          `json:"per_sec"`
	Status     map[string]int64 `json:"status"` // "401", "429", … or "error:KIND"
	FirstError string           `json:"first_error,omitempty"`
}

// ---------------------------------------------------------------------
// The flooder.

// runFlooder dials the console with a wrong token on conc workers, each in
// a closed loop (dial, read the answer, close), until d has passed, its
// stdin closes (the harness is done or gone) or it is signalled. When
// perSec > 0 the workers share a token bucket (perSec tokens a second,
// bursts of conc, so a worker held up for a moment can catch up) and each
// takes a token before every dial: on average the attempts never exceed
// perSec, and fall short of it only if the workers cannot keep up. It
// prints "started" once the workers run, and its floodResult on exit.
func runFlooder(rawURL string, conc int, perSec float64, d time.Duration) error {
	if err := checkLoopbackURL(rawURL); err != nil {
		return err
	}
	if conc < 1 || d <= 0 || perSec < 0 || math.IsNaN(perSec) || math.IsInf(perSec, 0) {
		return fmt.Errorf("need -flood-conc ≥ 1, -flood-for > 0 and a finite -flood-rate ≥ 0")
	}
	var pace *rate.Limiter // nil: unbounded
	if perSec > 0 {
		pace = rate.NewLimiter(rate.Limit(perSec), conc)
	}
	// A well-formed token that the server does not know.
	tok, _, err := auth.NewToken("flood")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()

	// Well-formed handshakes with a wrong token, through package client:
	// no retry of a 429 (the flooder counts refusals, it does not wait
	// them out), and the loopback-only, reset-on-close dialer.
	opts := client.Options{
		Token:            tok,
		HandshakeTimeout: 5 * time.Second,
		HandshakeRetries: -1,
		ThrottleWait:     -1,
		NetDialContext:   loopbackDial,
	}
	type tally struct {
		n        int64
		status   map[string]int64
		firstErr string
	}
	tallies := make(chan tally, conc)
	start := time.Now()
	for range conc {
		go func() {
			t := tally{status: map[string]int64{}}
			for ctx.Err() == nil {
				if pace != nil && pace.Wait(ctx) != nil { // the flood is over
					break
				}
				c, err := client.Dial(ctx, rawURL, opts)
				if ctx.Err() != nil { // cut short by the end of the flood: not counted
					if c != nil {
						c.Close()
					}
					break
				}
				t.n++
				var refused *client.RefusedError
				switch {
				case c != nil: // the wrong token got in: should never happen
					t.status["101"]++
					c.Close()
				case errors.As(err, &refused):
					t.status[strconv.Itoa(refused.Status)]++
				default:
					t.status["error:"+errKind(err)]++
					if t.firstErr == "" {
						t.firstErr = err.Error()
					}
				}
			}
			tallies <- t
		}()
	}
	fmt.Println("started")
	res := floodResult{Status: map[string]int64{}}
	for range conc {
		t := <-tallies
		res.Attempts += t.n
		for k, v := range t.status {
			res.Status[k] += v
		}
		if res.FirstError == "" {
			res.FirstError = t.firstErr
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.PerSec = float64(res.Attempts) / res.Seconds
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// checkLoopbackURL accepts only ws:// or wss:// URLs whose host is
// localhost or a loopback IP: the flooder never aims anywhere else.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("refusing %q: not a ws:// or wss:// URL", raw)
	}
	if !loopbackHost(u) {
		return fmt.Errorf("refusing %q: the flooder only targets loopback", raw)
	}
	return nil
}

// loopbackHost reports whether u's host is localhost or a loopback IP.
func loopbackHost(u *url.URL) bool {
	h := u.Hostname()
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback() || strings.EqualFold(h, "localhost")
}

// loopbackDial dials and checks that the peer really is on loopback (a
// name could resolve elsewhere). It sets SO_LINGER 0, so the client's
// close is a reset rather than a TIME_WAIT: a fast closed loop would
// otherwise run out of ephemeral ports.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || !ta.IP.IsLoopback() {
		c.Close()
		return nil, fmt.Errorf("refusing non-loopback peer %s", c.RemoteAddr())
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	return c, nil
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_port"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

// ---------------------------------------------------------------------
// The control's dummy.

// dummyBody is what the dummy answers: the shape of the console's answer
// to a throttled handshake ("CODE: message"), a little shorter.
const dummyBody = string(wire.CodeThrottled) + ": too many connection attempts; retry later"

// runDummy serves the control phases' target: it listens on a free
// loopback port, answers every request with HTTP 429 (Retry-After: 1 and
// dummyBody, as the console answers a throttled handshake), prints its
// ws:// URL as one line, and runs until its stdin closes (the harness is
// done or gone) or it is signalled.
func runDummy() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, dummyBody, http.StatusTooManyRequests)
		}),
		ReadHeaderTimeout: 10 * time.Second, // as the demo's server
		MaxHeaderBytes:    16 << 10,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("ws://%s/\n", ln.Addr())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// startDummy starts the harness again as the control's dummy and reads
// the URL it prints. The returned stop closes the dummy's stdin and stops
// it (SIGTERM, then a kill); on an error the dummy is already stopped.
func startDummy(ctx context.Context, self string) (u string, stop func(), err error) {
	cmd := exec.Command(self, "-dummy")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	halt := func() {
		stdin.Close()
		stopProcess(cmd)
	}
	defer func() {
		if err != nil {
			halt()
		}
	}()
	type lineErr struct {
		line string
		err  error
	}
	ch := make(chan lineErr, 1)
	go func() {
		br := bufio.NewReader(out)
		l, err := br.ReadString('\n')
		ch <- lineErr{strings.TrimSpace(l), err}
		if err == nil {
			io.Copy(io.Discard, br)
		}
	}()
	select {
	case <-ctx.Done():
		return "", nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return "", nil, errors.New("the dummy printed no URL within 10s")
	case le := <-ch:
		if le.err != nil {
			return "", nil, fmt.Errorf("the dummy did not start: %w", le.err)
		}
		if err := checkLoopbackURL(le.line); err != nil {
			return "", nil, fmt.Errorf("the dummy's URL: %w", err)
		}
		return le.line, halt, nil
	}
}

// ---------------------------------------------------------------------
// The harness.

type phaseResult struct {
	Round    int          `json:"round"`
	Name     string       `json:"phase"`             // "A", "B" or "C"
	Flood    bool         `json:"flood"`             // a flooder ran: B and C
	Control  bool         `json:"control,omitempty"` // it flooded the dummy, not the console: C
	Requests int          `json:"requests"`
	Errors   int          `json:"errors"`
	P50ms    float64      `json:"p50_ms"`
	P99ms    float64      `json:"p99_ms"`
	Flooder  *floodResult `json:"flooder,omitempty"`

	lat []time.Duration
}

type latency struct {
	Requests int     `json:"requests"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
}

type report struct {
	Phase      string        `json:"phase"`
	Rounds     int           `json:"rounds"`
	Clients    int           `json:"clients"`
	FloodConc  int           `json:"flood_conc"`
	FloodRate  float64       `json:"flood_rate"` // the -flood-rate target; 0: unbounded
	NumCPU     int           `json:"num_cpu"`
	AppURL     string        `json:"app_url"`
	ConsoleURL string        `json:"console_url"`
	Phases     []phaseResult `json:"phases"`

	Control    bool   `json:"control"`               // whether the C phases ran
	ControlURL string `json:"control_url,omitempty"` // the dummy's URL

	NoFlood      latency `json:"no_flood"`               // pooled over the A phases
	WithFlood    latency `json:"flood"`                  // pooled over the B phases
	ControlFlood latency `json:"control_flood,omitzero"` // pooled over the C phases
	P99Ratio     float64 `json:"p99_ratio"`              // B/A
	P50Ratio     float64 `json:"p50_ratio"`              // B/A
	P99Target    float64 `json:"p99_target"`
	P99OK        bool    `json:"p99_ok"`
	// With -control: the flood's own cost on this machine, C/A, and what
	// the console adds over a bare 429 server, B/C.
	ControlP99Ratio float64 `json:"control_p99_ratio,omitzero"` // C/A
	ControlP50Ratio float64 `json:"control_p50_ratio,omitzero"` // C/A
	ConsoleP99Ratio float64 `json:"console_p99_ratio,omitzero"` // B/C
	ConsoleP50Ratio float64 `json:"console_p50_ratio,omitzero"` // B/C

	FloodAttempts int64            `json:"flood_attempts"` // B phases only
	FloodPerSec   float64          `json:"flood_per_sec"`
	FloodStatus   map[string]int64 `json:"flood_status"`

	ControlFloodAttempts int64            `json:"control_flood_attempts,omitzero"` // C phases
	ControlFloodPerSec   float64          `json:"control_flood_per_sec,omitzero"`
	ControlFloodStatus   map[string]int64 `json:"control_flood_status,omitempty"`

	IdleSessions  int            `json:"idle_sessions"`
	IdleSubjects  map[string]int `json:"idle_subjects"` // subject → idle sessions opened
	IdleOpenMS    float64        `json:"idle_open_ms"`  // how long opening them all took
	IdleOpen429   int            `json:"idle_open_429"` // 429s met (and retried) while opening them
	IdleAlive     int            `json:"idle_alive"`    // counted before one is closed for the fresh session
	IdleLostErr   string         `json:"idle_lost_error,omitempty"`
	IdleClosedMS  float64        `json:"idle_closed_ms"` // closing one idle admin session after the flood
	IdleClosedErr string         `json:"idle_closed_error,omitempty"`

	FreshOK       bool           `json:"fresh_session_ok"`
	FreshMS       float64        `json:"fresh_session_ms"`      // from the end of the flood to the hello
	FreshDialMS   float64        `json:"fresh_session_dial_ms"` // from the first dial to the hello
	FreshAttempts int            `json:"fresh_session_attempts"`
	FreshRefusals map[string]int `json:"fresh_session_refusals,omitempty"`
	FreshErr      string         `json:"fresh_session_error,omitempty"`
}

func runHarness(cfg config, asJSON bool) error {
	if cfg.Phase <= 0 || cfg.Rounds < 1 || cfg.Clients < 1 || cfg.FloodConc < 1 || cfg.Sessions < 0 ||
		cfg.FloodRate < 0 || math.IsNaN(cfg.FloodRate) || math.IsInf(cfg.FloodRate, 0) {
		return errors.New("need -phase > 0, -rounds ≥ 1, -clients ≥ 1, -flood-conc ≥ 1, a finite -flood-rate ≥ 0, -sessions ≥ 0")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	modFile := strings.TrimSpace(string(gomod))
	if modFile == "" || modFile == os.DevNull {
		return errors.New("run from inside the opsrepl module")
	}
	root := filepath.Dir(modFile)
	tmp, err := os.MkdirTemp("", "ops-repl-flood-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// 1. Build ops-repl once and start the demo.
	progress("building ops-repl")
	bin := filepath.Join(tmp, "ops-repl")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ops-repl")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/ops-repl: %w", err)
	}
	demo := exec.Command(bin, "demo", "--serve", "--dir", filepath.Join(tmp, "state"))
	demo.Stderr = os.Stderr
	out, err := demo.StdoutPipe()
	if err != nil {
		return err
	}
	if err := demo.Start(); err != nil {
		return err
	}
	defer stopProcess(demo)
	rd, err := readReady(ctx, out)
	if err != nil {
		return err
	}
	if err := checkLoopbackURL(rd.URL); err != nil {
		return fmt.Errorf("the demo's console: %w", err)
	}
	if app, err := url.Parse(rd.App); err != nil || !loopbackHost(app) {
		return fmt.Errorf("the demo's app %q is not on loopback", rd.App)
	}
	for _, sub := range idleSubjects {
		if rd.Tokens[sub] == "" {
			return fmt.Errorf("the ready line has no %s token", sub)
		}
	}
	admin := rd.Tokens["admin"]
	progress("demo pid %d: app %s, console %s", demo.Process.Pid, rd.App, rd.URL)

	// The control's dummy, for the whole run: stopped on every way out
	// (and, should the harness die, by its stdin closing).
	var dummyURL string
	if cfg.Control {
		var stopDummy func()
		if dummyURL, stopDummy, err = startDummy(ctx, self); err != nil {
			return err
		}
		defer stopDummy()
		progress("control: a bare HTTP 429 server at %s", dummyURL)
	}

	// 2. Idle sessions, round-robin over the subjects, each with a reader
	// so pings get answered.
	var idle []*idleSession
	defer func() {
		for _, s := range idle {
			s.close()
		}
	}()
	opened, err := openIdle(ctx, rd.URL, rd.Tokens, cfg.Sessions, &idle)
	if err != nil {
		return err
	}
	progress("%d idle sessions open (%s) in %s, %d × 429 met", len(idle), subjectText(opened.bySubject),
		opened.took.Round(time.Millisecond), opened.throttled)

	// 3–5. Phases A B (C) A B (C) …, after a short warm-up.
	httpc := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients},
		Timeout:   10 * time.Second,
	}
	defer httpc.CloseIdleConnections()
	if _, _, err := load(ctx, httpc, rd.App, cfg.Clients, min(time.Second, cfg.Phase)); err != nil {
		return err
	}
	rep := report{
		Phase: cfg.Phase.String(), Rounds: cfg.Rounds, Clients: cfg.Clients, FloodConc: cfg.FloodConc,
		FloodRate: cfg.FloodRate, NumCPU: runtime.NumCPU(), AppURL: rd.App, ConsoleURL: rd.URL,
		P99Target: p99Target, FloodStatus: map[string]int64{}, IdleSessions: len(idle),
		IdleSubjects: opened.bySubject, IdleOpenMS: ms(opened.took), IdleOpen429: opened.throttled,
		Control: cfg.Control, ControlURL: dummyURL,
	}
	names := []string{"A", "B"}
	if cfg.Control {
		rep.ControlFloodStatus = map[string]int64{}
		names = append(names, "C")
	}
	var floodSeconds, controlSeconds float64
	for r := 1; r <= cfg.Rounds; r++ {
		for _, name := range names {
			pr := phaseResult{Round: r, Name: name, Flood: name != "A", Control: name == "C"}
			switch name {
			case "A":
				progress("round %d/%d, phase A (no flood), %s", r, cfg.Rounds, cfg.Phase)
				pr.lat, pr.Errors, err = load(ctx, httpc, rd.App, cfg.Clients, cfg.Phase)
			case "B":
				progress("round %d/%d, phase B (flood), %s", r, cfg.Rounds, cfg.Phase)
				pr.lat, pr.Errors, pr.Flooder, err = floodPhase(ctx, self, rd.URL, cfg, httpc, rd.App)
			case "C":
				progress("round %d/%d, phase C (control: the flood at the bare 429 server), %s", r, cfg.Rounds, cfg.Phase)
				pr.lat, pr.Errors, pr.Flooder, err = floodPhase(ctx, self, dummyURL, cfg, httpc, rd.App)
			}
			if err != nil {
				return err
			}
			slices.Sort(pr.lat)
			pr.Requests = len(pr.lat)
			pr.P50ms, pr.P99ms = ms(percentile(pr.lat, 0.50)), ms(percentile(pr.lat, 0.99))
			if f := pr.Flooder; f != nil {
				attempts, seconds, status := &rep.FloodAttempts, &floodSeconds, rep.FloodStatus
				if pr.Control {
					attempts, seconds, status = &rep.ControlFloodAttempts, &controlSeconds, rep.ControlFloodStatus
				}
				*attempts += f.Attempts
				*seconds += f.Seconds
				for k, v := range f.Status {
					status[k] += v
				}
			}
			rep.Phases = append(rep.Phases, pr)
			if name == "B" && r == cfg.Rounds {
				afterFlood(ctx, &rep, &idle, rd.URL, admin)
			}
		}
	}

	var a, b, c []time.Duration
	for _, p := range rep.Phases {
		switch p.Name {
		case "A":
			a = append(a, p.lat...)
		case "B":
			b = append(b, p.lat...)
		case "C":
			c = append(c, p.lat...)
		}
	}
	rep.NoFlood, rep.WithFlood = summarize(a), summarize(b)
	rep.P99Ratio = ratio(rep.WithFlood.P99ms, rep.NoFlood.P99ms)
	rep.P50Ratio = ratio(rep.WithFlood.P50ms, rep.NoFlood.P50ms)
	rep.P99OK = rep.P99Ratio <= p99Target
	if floodSeconds > 0 {
		rep.FloodPerSec = float64(rep.FloodAttempts) / floodSeconds
	}
	if cfg.Control {
		rep.ControlFlood = summarize(c)
		rep.ControlP99Ratio = ratio(rep.ControlFlood.P99ms, rep.NoFlood.P99ms)
		rep.ControlP50Ratio = ratio(rep.ControlFlood.P50ms, rep.NoFlood.P50ms)
		rep.ConsoleP99Ratio = ratio(rep.WithFlood.P99ms, rep.ControlFlood.P99ms)
		rep.ConsoleP50Ratio = ratio(rep.WithFlood.P50ms, rep.ControlFlood.P50ms)
		if controlSeconds > 0 {
			rep.ControlFloodPerSec = float64(rep.ControlFloodAttempts) / controlSeconds
		}
	}
	if asJSON {
		b, _ := json.Marshal(rep)
		fmt.Println(string(b))
	} else {
		printReport(rep)
	}
	return nil
}

// afterFlood runs right after the last B phase, whose flooder has exited:
// the last flood at the console is over. Did the idle sessions survive
// it? Can an admin still get in? It records the answers in rep, and
// closes (and drops from *idle) one idle admin session to free a slot.
func afterFlood(ctx context.Context, rep *report, idle *[]*idleSession, u, admin string) {
	floodEnd := time.Now()
	for _, s := range *idle {
		if !s.alive() {
			if err := s.lostErr(); rep.IdleLostErr == "" && err != nil {
				rep.IdleLostErr = err.Error()
			}
			continue
		}
		rep.IdleAlive++
	}
	// Can an admin still get in? Free a slot first (the idle sessions may
	// fill the session cap): close one live idle admin session.
	if i := slices.IndexFunc(*idle, func(s *idleSession) bool { return s.subject == "admin" && s.alive() }); i >= 0 {
		s := (*idle)[i]
		*idle = slices.Delete(*idle, i, i+1)
		t := time.Now()
		if err := s.close(); err != nil {
			rep.IdleClosedErr = err.Error()
		}
		rep.IdleClosedMS = ms(time.Since(t))
	}
	progress("opening a fresh admin session")
	fresh := freshSession(ctx, u, admin, floodEnd)
	rep.FreshOK, rep.FreshMS, rep.FreshDialMS, rep.FreshAttempts, rep.FreshRefusals, rep.FreshErr =
		fresh.err == nil && fresh.took < freshBudget, ms(fresh.took), ms(fresh.dial), fresh.attempts, fresh.refusals, fresh.errText()
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flood: "+format+"\n", args...)
}

// readReady reads the demo's ready line, and then drains its stdout.
func readReady(ctx context.Context, out io.Reader) (readyLine, error) {
	type lineErr struct {
		line string
		err  error
	}
	ch := make(chan lineErr, 1)
	br := bufio.NewReader(out)
	go func() {
		l, err := br.ReadString('\n')
		ch <- lineErr{l, err}
		if err == nil {
			io.Copy(io.Discard, br)
		}
	}()
	var rd readyLine
	select {
	case <-ctx.Done():
		return rd, ctx.Err()
	case <-time.After(30 * time.Second):
		return rd, errors.New("the demo printed no ready line within 30s")
	case le := <-ch:
		if le.err != nil {
			return rd, fmt.Errorf("the demo did not start: %w", le.err)
		}
		if err := json.Unmarshal([]byte(le.line), &rd); err != nil {
			return rd, fmt.Errorf("the demo's ready line %q: %w", strings.TrimSpace(le.line), err)
		}
		return rd, nil
	}
}

// stopProcess sends SIGTERM (a kill where there are no signals), waits up
// to 10s, then kills.
func stopProcess(cmd *exec.Cmd) {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		cmd.Process.Kill()
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// dialHello opens a console session and waits for its hello. A refused
// handshake is a *client.RefusedError, never retried here (the callers
// count and pace their own retries).
func dialHello(ctx context.Context, u, token string) (*client.Conn, error) {
	return client.Dial(ctx, u, client.Options{
		Token:            token,
		HandshakeTimeout: helloTimeout,
		HandshakeRetries: -1,
		ThrottleWait:     -1,
	})
}

type openResult struct {
	took      time.Duration
	throttled int            // 429s met, and retried
	bySubject map[string]int // sessions opened per subject
}

// openIdle opens n idle sessions, round-robin over idleSubjects, appending
// each to *idle as it opens (so the caller closes them whatever happens).
// It keeps to the console's per-source handshake rate limit: a 429 is
// retried after its Retry-After (openRetry without one) for as long as
// openBudget allows. Any other refusal, or a 429 for a session cap ("limit"
// rather than "throttled"), is an error: retrying would not help.
func openIdle(ctx context.Context, u string, tokens map[string]string, n int, idle *[]*idleSession) (openResult, error) {
	start := time.Now()
	deadline := start.Add(openBudget)
	octx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	r := openResult{bySubject: map[string]int{}}
	for len(*idle) < n {
		i := len(*idle)
		sub := idleSubjects[i%len(idleSubjects)]
		c, err := dialHello(octx, u, tokens[sub])
		if err == nil {
			*idle = append(*idle, newIdleSession(c, sub))
			r.bySubject[sub]++
			continue
		}
		r.took = time.Since(start)
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		what := fmt.Sprintf("idle session %d of %d (%s)", i+1, n, sub)
		var refused *client.RefusedError
		if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests || refused.Code == wire.CodeLimit {
			return r, fmt.Errorf("%s: %w", what, err)
		}
		r.throttled++
		wait := retryAfter(refused, openRetry)
		if time.Now().Add(wait).After(deadline) {
			return r, fmt.Errorf("%s: still throttled after %s (%d × 429): %w", what, r.took.Round(time.Millisecond), r.throttled, err)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(wait):
		}
	}
	r.took = time.Since(start)
	return r, nil
}

// retryAfter is the wait a refusal's Retry-After asks for (capped at
// maxRetryWait), or def without a usable one.
func retryAfter(e *client.RefusedError, def time.Duration) time.Duration {
	if e.RetryAfter <= 0 {
		return def
	}
	return min(e.RetryAfter, maxRetryWait)
}

// subjectText renders per-subject counts in idleSubjects order:
// "admin 22, operator 21, viewer 21".
func subjectText(m map[string]int) string {
	var parts []string
	for _, sub := range idleSubjects {
		if m[sub] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", sub, m[sub]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

type idleSession struct {
	c       *client.Conn // its reading goroutine answers the server's pings
	subject string
}

func newIdleSession(c *client.Conn, subject string) *idleSession {
	return &idleSession{c: c, subject: subject}
}

// alive reports whether the session is still open.
func (s *idleSession) alive() bool {
	select {
	case <-s.c.Done():
		return false
	default:
		return true
	}
}

// lostErr is why a session that is no longer alive ended (a
// *client.ClosedError, usually).
func (s *idleSession) lostErr() error { return s.c.Err() }

// close ends the session with a normal close. Conn.Close waits up to 1s
// for the server's reply to the close frame, and closes the connection
// anyway once that has passed: a close that took that long is reported as
// the reply that did not come. (Its net.ErrClosed only says the reply
// came and the connection is already closed.)
func (s *idleSession) close() error {
	start := time.Now()
	err := s.c.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if err == nil && time.Since(start) >= time.Second {
		err = errors.New("no reply to the close frame within 1s")
	}
	return err
}

// load drives clients concurrent closed-loop GETs at u for d, and returns
// the latencies of the requests that completed and the number that failed.
func load(ctx context.Context, httpc *http.Client, u string, clients int, d time.Duration) ([]time.Duration, int, error) {
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type part struct {
		lat  []time.Duration
		errs int
	}
	parts := make(chan part, clients)
	for range clients {
		go func() {
			var p part
			for pctx.Err() == nil {
				req, _ := http.NewRequestWithContext(pctx, http.MethodGet, u, nil)
				start := time.Now()
				resp, err := httpc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %s", resp.Status)
					}
				}
				took := time.Since(start)
				switch {
				case pctx.Err() != nil: // cut short by the end of the phase
				case err != nil:
					p.errs++
				default:
					p.lat = append(p.lat, took)
				}
			}
			parts <- p
		}()
	}
	var lat []time.Duration
	errs := 0
	for range clients {
		p := <-parts
		lat = append(lat, p.lat...)
		errs += p.errs
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	return lat, errs, nil
}

// floodPhase runs the load for one phase while a flooder process floods u.
func floodPhase(ctx context.Context, self, u string, cfg config, httpc *http.Client, app string) ([]time.Duration, int, *floodResult, error) {
	// The flooder's own bound is a safety net; the harness stops it by
	// closing its stdin as soon as the load is over.
	cmd := exec.Command(self, "-flooder", "-url", u,
		"-flood-conc", strconv.Itoa(cfg.FloodConc), "-flood-rate", strconv.FormatFloat(cfg.FloodRate, 'g', -1, 64),
		"-flood-for", (cfg.Phase + 5*time.Second).String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, 0, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, 0, nil, err
	}
	lines := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waited := false
	defer func() {
		if !waited {
			stdin.Close()
			stopProcess(cmd)
		}
	}()
	select {
	case l, ok := <-lines:
		if !ok || l != "started" {
			return nil, 0, nil, fmt.Errorf("the flooder did not start (%q)", l)
		}
	case <-time.After(10 * time.Second):
		return nil, 0, nil, errors.New("the flooder did not start within 10s")
	case <-ctx.Done():
		return nil, 0, nil, ctx.Err()
	}
	lat, errs, err := load(ctx, httpc, app, cfg.Clients, cfg.Phase)
	stdin.Close()
	if err != nil {
		return nil, 0, nil, err
	}
	var res floodResult
	select {
	case l, ok := <-lines:
		if !ok {
			return nil, 0, nil, errors.New("the flooder exited without a result")
		}
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			return nil, 0, nil, fmt.Errorf("the flooder's result %q: %w", l, err)
		}
	case <-time.After(15 * time.Second):
		return nil, 0, nil, errors.New("the flooder gave no result within 15s of the phase's end")
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		return nil, 0, nil, fmt.Errorf("flooder: %w", err)
	}
	return lat, errs, &res, nil
}

type freshResult struct {
	took     time.Duration // from the end of the flood
	dial     time.Duration // from the first dial
	attempts int
	refusals map[string]int // HTTP status → count, for refused attempts
	err      error
}

func (f freshResult) errText() string {
	if f.err == nil {
		return ""
	}
	return f.err.Error()
}

// freshSession opens one admin session and waits for its hello. Its
// budget, freshBudget, runs from since (the end of the flood). A 429 or
// 503 refusal is retried every freshRetry within it; anything else ends
// the attempt.
func freshSession(ctx context.Context, u, token string, since time.Time) freshResult {
	start := time.Now()
	deadline := since.Add(freshBudget)
	r := freshResult{refusals: map[string]int{}}
	for {
		r.attempts++
		dctx, cancel := context.WithDeadline(ctx, deadline)
		c, err := dialHello(dctx, u, token)
		cancel()
		r.took, r.dial, r.err = time.Since(since), time.Since(start), err
		if err == nil { // any earlier refusal is history now
			c.Close()
			return r
		}
		var refused *client.RefusedError
		if !errors.As(err, &refused) {
			return r
		}
		r.refusals[strconv.Itoa(refused.Status)]++
		if refused.Status != http.StatusTooManyRequests && refused.Status != http.StatusServiceUnavailable {
			return r
		}
		select {
		case <-ctx.Done():
			return r
		case <-time.After(min(freshRetry, time.Until(deadline))):
		}
		if !time.Now().Before(deadline) {
			r.took, r.dial = time.Since(since), time.Since(start)
			r.err = fmt.Errorf("still refused %s after the flood: %w", freshBudget, err)
			return r
		}
	}
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func summarize(lat []time.Duration) latency {
	slices.Sort(lat)
	return latency{Requests: len(lat), P50ms: ms(percentile(lat, 0.50)), P99ms: ms(percentile(lat, 0.99))}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// statusText renders status counts in a stable order: "401:1200 429:800".
func statusText(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

func printReport(r report) {
	pacing := "closed loop"
	if r.FloodRate > 0 {
		pacing = fmt.Sprintf("at most %g/s", r.FloodRate)
	}
	fmt.Printf("ops-repl flood: %d idle sessions (%s), %d HTTP clients (GET %s), %d flood workers (%s), %s per phase, %d round(s), %d CPUs\n",
		r.IdleSessions, subjectText(r.IdleSubjects), r.Clients, r.AppURL, r.FloodConc, pacing, r.Phase, r.Rounds, r.NumCPU)
	if r.Control {
		fmt.Printf("phases: A no flood, B flood at the console %s, C control: the same flood at a bare HTTP 429 server %s\n", r.ConsoleURL, r.ControlURL)
	} else {
		fmt.Printf("phases: A no flood, B flood at the console %s (no control phase)\n", r.ConsoleURL)
	}
	fmt.Println()
	fmt.Printf("%-8s %-6s %9s %7s %9s %9s %10s  %s\n", "round", "phase", "requests", "errors", "p50 ms", "p99 ms", "flood/s", "flood statuses")
	for _, p := range r.Phases {
		perSec, st := "", ""
		if f := p.Flooder; f != nil {
			perSec, st = fmt.Sprintf("%.0f", f.PerSec), statusText(f.Status)
		}
		fmt.Printf("%-8d %-6s %9d %7d %9.3f %9.3f %10s  %s\n", p.Round, p.Name, p.Requests, p.Errors, p.P50ms, p.P99ms, perSec, st)
	}
	fmt.Println()
	fmt.Printf("HTTP without flood (pooled A)   p50 %8.3f ms   p99 %8.3f ms   (%d requests)\n", r.NoFlood.P50ms, r.NoFlood.P99ms, r.NoFlood.Requests)
	fmt.Printf("HTTP with flood    (pooled B)   p50 %8.3f ms   p99 %8.3f ms   (%d requests)\n", r.WithFlood.P50ms, r.WithFlood.P99ms, r.WithFlood.Requests)
	if r.Control {
		fmt.Printf("HTTP control flood (pooled C)   p50 %8.3f ms   p99 %8.3f ms   (%d requests)\n", r.ControlFlood.P50ms, r.ControlFlood.P99ms, r.ControlFlood.Requests)
	}
	fmt.Printf("ratio with/without flood        p99 %.2f× (target ≤ %.1f×: %s)   p50 %.2f×   (B/A)\n", r.P99Ratio, r.P99Target, verdict(r.P99OK), r.P50Ratio)
	if r.Control {
		fmt.Printf("ratio control/without flood     p99 %.2f×   p50 %.2f×   (C/A: the flood's own cost here: client CPU, kernel, loopback)\n", r.ControlP99Ratio, r.ControlP50Ratio)
		fmt.Printf("ratio with flood/control        p99 %.2f×   p50 %.2f×   (B/C: what the console adds over a bare 429 server)\n", r.ConsoleP99Ratio, r.ConsoleP50Ratio)
	}
	achieved := func(perSec float64) string {
		if r.FloodRate > 0 {
			return fmt.Sprintf("%.0f/s achieved of %g/s asked (%.0f%%)", perSec, r.FloodRate, 100*perSec/r.FloodRate)
		}
		return fmt.Sprintf("%.0f/s achieved (closed loop)", perSec)
	}
	fmt.Printf("flood                           %d bad handshakes, %s; %s\n", r.FloodAttempts, achieved(r.FloodPerSec), statusText(r.FloodStatus))
	if r.Control {
		fmt.Printf("control flood                   %d bad handshakes at the 429 server, %s; %s\n", r.ControlFloodAttempts, achieved(r.ControlFloodPerSec), statusText(r.ControlFloodStatus))
	}
	fmt.Printf("idle sessions opened            %d (%s) in %.1f ms, %d × 429 met and retried\n",
		r.IdleSessions, subjectText(r.IdleSubjects), r.IdleOpenMS, r.IdleOpen429)
	idle := fmt.Sprintf("%d/%d", r.IdleAlive, r.IdleSessions)
	if r.IdleLostErr != "" {
		idle += " (first loss: " + r.IdleLostErr + ")"
	}
	fmt.Printf("idle sessions open after flood  %s %s\n", idle, verdict(r.IdleAlive == r.IdleSessions))
	if r.IdleClosedErr != "" {
		fmt.Printf("closing one idle admin session  after %.1f ms: %s\n", r.IdleClosedMS, r.IdleClosedErr)
	}
	closing := ""
	if r.IdleClosedMS > 0 {
		closing = fmt.Sprintf("closing an idle admin session first: %.1f ms; ", r.IdleClosedMS)
	}
	fresh := fmt.Sprintf("opened %.1f ms after the flood ended (%sdialling: %.1f ms)", r.FreshMS, closing, r.FreshDialMS)
	if r.FreshErr != "" {
		fresh = fmt.Sprintf("failed %.1f ms after the flood ended: %s", r.FreshMS, r.FreshErr)
	}
	refused := ""
	if len(r.FreshRefusals) > 0 {
		m := map[string]int64{}
		for k, v := range r.FreshRefusals {
			m[k] = int64(v)
		}
		refused = ", refused " + statusText(m)
	}
	fmt.Printf("fresh admin session after flood %s (%d attempt(s)%s; must be < %s: %s)\n", fresh, r.FreshAttempts, refused, freshBudget, verdict(r.FreshOK))
}
