// Command harness measures what the console's maintenance commands cost
// the process they inspect. It starts itself again as a target holding a
// large live heap behind a small HTTP app with the console mounted (all on
// loopback), drives a bounded HTTP load at it, and reports:
//
//   - the app's p99 latency while the console runs memstats --watch 100ms,
//     one heapdump, and one goroutines, each as a ratio to the same load
//     with the console idle;
//   - the stop-the-world pause of heapdump --full, predicted and observed;
//   - the target's peak extra RSS while it streams that dump;
//   - the dump's transfer rate (received and SHA-256 checked by package
//     client) against a raw loopback TCP copy of the same bytes, and
//     against a raw copy whose receiver checks the SHA-256 too;
//   - then, for each size of -pause-heaps, in a fresh target: two full
//     dumps, predicted against observed (the second prediction is
//     calibrated by the first), and the extra RSS of the target and of
//     this client while the second streams.
//
// Usage:
//
//	go run ./bench/harness [-heap-mib 1024] [-phase 10s] [-clients 8] [-pause-heaps 256,1024,2048] [-profile DIR]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/internal/loopback"
	"github.com/opsrepl/opsrepl/policy"
	"github.com/opsrepl/opsrepl/sandbox"
)

func main() {
	sandbox.Main()
	target := flag.Bool("target", false, "run as the measured process (internal)")
	dumper := flag.Bool("dumper", false, "run one full dump as a fresh client process, the target read from stdin (internal)")
	heapMiB := flag.Int("heap-mib", 1024, "live heap of the target, in MiB")
	phase := flag.Duration("phase", 10*time.Second, "length of each load phase")
	clients := flag.Int("clients", 8, "concurrent HTTP clients")
	pauseHeaps := flag.String("pause-heaps", "256,1024,2048", "live heaps (MiB, comma-separated) of the full-dump pause table; empty: none")
	flag.StringVar(&profileDir, "profile", "", "write CPU profiles of both ends of the full dump's transfer to this folder")
	flag.Parse()
	if *dumper {
		if err := runDumper(); err != nil {
			fmt.Fprintln(os.Stderr, "dumper:", err)
			os.Exit(1)
		}
		return
	}
	if *target {
		if profileDir != "" {
			profileOnSignal(profileDir)
		}
		if err := runTarget(*heapMiB); err != nil {
			fmt.Fprintln(os.Stderr, "target:", err)
			os.Exit(1)
		}
		return
	}
	if err := runHarness(*heapMiB, *phase, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
	var sizes []int
	for _, f := range strings.Split(*pauseHeaps, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "harness: -pause-heaps: %q is not a size in MiB\n", f)
			os.Exit(2)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) > 0 {
		if err := pauseTable(sizes); err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(1)
		}
	}
}

// node is one object of the target's live heap: pointerful, so the
// garbage collector has real marking work.
type node struct {
	next *node
	data [48]byte
}

type ready struct {
	URL, App, Token, Dir string
	PID                  int
}

func runTarget(heapMiB int) error {
	n := heapMiB << 20 / 64
	heap := make([]*node, n)
	for i := range heap {
		heap[i] = &node{}
		if i > 0 {
			heap[i].next = heap[i-1]
		}
	}
	dir, err := os.MkdirTemp("", "ops-repl-harness-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tok, _, _ := auth.NewToken("admin")
	tokens, _ := auth.NewTokens(map[string]string{"admin": tok})
	enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy + "g, admin, role:admin\n"})
	if err != nil {
		return err
	}
	srv, err := console.New(console.Options{Authenticator: tokens, Authorizer: enf, Audit: audit.Discard, DumpDir: dir})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/console", srv)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A little work per request, touching the heap.
		sum := 0
		for i := 0; i < 200; i++ {
			sum += int(heap[(i*7919)%len(heap)].data[0])
		}
		fmt.Fprintf(w, "ok %d\n", sum)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b, _ := json.Marshal(ready{URL: "ws://" + ln.Addr().String() + "/console", App: "http://" + ln.Addr().String() + "/", Token: tok, Dir: dir, PID: os.Getpid()})
	fmt.Println(string(b))
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	srv.Close()
	hs.Close()
	_ = heap[len(heap)-1] // keep the heap live until the end
	return nil
}

// startTarget starts this program again as a target with a live heap of
// heapMiB; stop ends it.
func startTarget(heapMiB int) (rd ready, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return rd, nil, err
	}
	cmd := exec.Command(self, "-target", "-heap-mib", strconv.Itoa(heapMiB), "-profile", profileDir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return rd, nil, err
	}
	if err := cmd.Start(); err != nil {
		return rd, nil, err
	}
	stop = func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err == nil {
		err = json.Unmarshal([]byte(line), &rd)
	}
	if err != nil {
		stop()
		return rd, nil, fmt.Errorf("target did not start: %w", err)
	}
	return rd, stop, nil
}

func runHarness(heapMiB int, phase time.Duration, clients int) error {
	rd, stop, err := startTarget(heapMiB)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("target pid %d: %d MiB live heap, %d HTTP clients, %s per phase\n\n", rd.PID, heapMiB, clients, phase)

	load := func(during func(ctx context.Context)) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), phase)
		defer cancel()
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					start := time.Now()
					resp, err := httpc.Get(rd.App)
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					lat = append(lat, time.Since(start))
					mu.Unlock()
				}
			}()
		}
		if during != nil {
			time.Sleep(phase / 4) // let the load settle first
			during(ctx)
		}
		wg.Wait()
		slices.Sort(lat)
		if len(lat) == 0 {
			return 0
		}
		return lat[len(lat)*99/100]
	}
	run := func(line string) (string, []byte, time.Duration, error) {
		return consoleRun(rd, line, true)
	}

	// Idle phases between the measured ones; their median is the baseline,
	// so drift and noise on a shared machine hit both sides alike.
	var idles []time.Duration
	idlePhase := func() { idles = append(idles, load(nil)) }
	idlePhase()
	watch := load(func(ctx context.Context) {
		c, err := consoleDial(ctx, rd)
		if err != nil {
			return
		}
		defer c.Close()
		// Streams until the phase ends; Run then cancels the request.
		c.Run(ctx, "memstats --watch 100ms", client.Handler{})
	})
	idlePhase()
	heapdump := load(func(ctx context.Context) { run("heapdump") })
	idlePhase()
	goroutines := load(func(ctx context.Context) { run("goroutines") })
	idlePhase()
	slices.Sort(idles)
	idle := idles[len(idles)/2]
	fmt.Printf("HTTP p99 with the console idle      %8.2f ms (median of %d idle phases: %v)\n", ms(idle), len(idles), idles)
	for _, r := range []struct {
		name string
		p99  time.Duration
	}{{"memstats --watch 100ms", watch}, {"one heapdump", heapdump}, {"one goroutines", goroutines}} {
		fmt.Printf("HTTP p99 during %-22s %8.2f ms  ratio %.2f×\n", r.name, ms(r.p99), float64(r.p99)/float64(idle))
	}

	extra := watchRSS(rd.PID)
	text, dump, took, err := run("heapdump --full --yes")
	targetExtra := extra()
	if err != nil {
		return fmt.Errorf("heapdump --full: %w", err)
	}
	m := regexp.MustCompile(`pause: predicted (\S+), observed (\S+)`).FindStringSubmatch(text)
	if m != nil {
		fmt.Printf("\nheapdump --full pause: predicted %s, observed %s\n", m[1], m[2])
	}
	fmt.Printf("dump size %.1f MiB; target peak extra RSS while dumping and streaming %.1f MiB\n", float64(len(dump))/(1<<20), float64(targetExtra)/(1<<20))
	rate := float64(len(dump)) / took.Seconds() / (1 << 20)
	raw, err := loopback.Rate(dump, false, 5)
	if err != nil {
		return err
	}
	checked, err := loopback.Rate(dump, true, 5)
	if err != nil {
		return err
	}
	fmt.Printf("transfer rate (file event to file_end, SHA-256 checked) %.0f MiB/s\n", rate)
	fmt.Printf("  raw loopback TCP copy                 %5.0f MiB/s; ratio %.2f\n", raw, rate/raw)
	fmt.Printf("  raw copy, receiver checks its SHA-256 %5.0f MiB/s; ratio %.2f\n", checked, rate/checked)
	return nil
}

// pauseTable starts a target per heap size, runs two full heap dumps in
// each (the first predicted from the model alone, the second calibrated
// by the first), and reports predicted against observed pauses, and the
// extra RSS of the target and of the client (a fresh process of this
// program, which checks the file and discards it) while the second dump
// streams.
func pauseTable(sizes []int) error {
	fmt.Printf("\nheapdump --full pauses, each size in a fresh target (ratio: predicted / observed; aim: within ±50%%, 0.5 to 1.5)\n")
	fmt.Printf("%9s | %-29s | %-29s | %s\n", "live heap", "first: predicted / observed", "second, calibrated by first", "extra RSS streaming the second: target, client")
	pausesRE := regexp.MustCompile(`pause: predicted (\S+), observed (\S+)`)
	for _, mib := range sizes {
		rd, stop, err := startTarget(mib)
		if err != nil {
			return err
		}
		var cells []string
		var targetRSS, clientRSS int64
		for i := range 2 {
			extra := watchRSS(rd.PID)
			d, err := dumpInChild(rd)
			tExtra := extra()
			text := d.Text
			if err != nil {
				stop()
				return fmt.Errorf("heapdump --full at %d MiB: %w", mib, err)
			}
			m := pausesRE.FindStringSubmatch(text)
			if m == nil {
				stop()
				return fmt.Errorf("heapdump --full at %d MiB: no pause line in %q", mib, text)
			}
			pred, _ := time.ParseDuration(m[1])
			obs, _ := time.ParseDuration(m[2])
			cells = append(cells, fmt.Sprintf("%7s / %-7s  %5.2f", m[1], m[2], pred.Seconds()/obs.Seconds()))
			if i == 1 {
				targetRSS, clientRSS = tExtra, d.ExtraRSS
			}
		}
		stop()
		fmt.Printf("%5d MiB | %-29s | %-29s | %.1f MiB, %.1f MiB\n", mib, cells[0], cells[1], float64(targetRSS)/(1<<20), float64(clientRSS)/(1<<20))
	}
	return nil
}

// dumped is what a dumper reports: the dump's text output, and its own
// peak RSS while the file streamed, over its RSS once connected.
type dumped struct {
	Text     string
	ExtraRSS int64
}

// dumpInChild runs one full dump of rd's target from a fresh process of
// this program, so that its memory is the client's alone.
func dumpInChild(rd ready) (dumped, error) {
	var d dumped
	self, err := os.Executable()
	if err != nil {
		return d, err
	}
	in, _ := json.Marshal(rd) // the token goes on stdin, not in argv
	cmd := exec.Command(self, "-dumper")
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return d, fmt.Errorf("dumper: %w", err)
	}
	err = json.Unmarshal(out, &d)
	return d, err
}

// runDumper is the -dumper process: one heapdump --full, the file checked
// and discarded, and its own peak extra RSS.
func runDumper() error {
	var rd ready
	if err := json.NewDecoder(os.Stdin).Decode(&rd); err != nil {
		return err
	}
	ctx := context.Background()
	c, err := consoleDial(ctx, rd)
	if err != nil {
		return err
	}
	defer c.Close()
	extra := watchRSS(os.Getpid())
	var text strings.Builder
	_, err = c.Run(ctx, "heapdump --full --yes", client.Handler{
		Event: func(ev wire.Event) error {
			if ev.Type == wire.EventOutput {
				text.WriteString(ev.Data)
			}
			return nil
		},
		File: func(wire.Event) (client.Sink, error) { return client.WriterSink(io.Discard), nil },
	})
	grew := extra()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(dumped{Text: text.String(), ExtraRSS: grew})
}

// profileDir, when set, receives CPU profiles of the full dump's
// transfer: harness-cpu.pb.gz (the client) and target-cpu.pb.gz (the
// target, between the signals profileTransfer sends it).
var profileDir string

// profileTransfer starts both profiles (the target's on SIGUSR1: heavy
// console commands run one at a time, so it can't use its own profile
// command during the dump); the returned func stops them.
func profileTransfer(rd ready) func() {
	f, err := os.Create(filepath.Join(profileDir, "harness-cpu.pb.gz"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return func() {}
	}
	pprof.StartCPUProfile(f)
	syscall.Kill(rd.PID, syscall.SIGUSR1)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		syscall.Kill(rd.PID, syscall.SIGUSR2)
	}
}

// profileOnSignal writes this process's CPU profile to
// dir/target-cpu.pb.gz between SIGUSR1 and SIGUSR2.
func profileOnSignal(dir string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		for s := range sig {
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				f, _ = os.Create(filepath.Join(dir, "target-cpu.pb.gz"))
				pprof.StartCPUProfile(f)
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				f.Close()
				f = nil
			}
		}
	}()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// watchRSS samples pid's RSS every 10 ms until the returned func is
// called, which returns the peak over the RSS at the start.
func watchRSS(pid int) (stop func() int64) {
	base := rss(pid, "VmRSS")
	peak := base
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
				peak = max(peak, rss(pid, "VmRSS"))
			}
		}
	}()
	return func() int64 {
		close(done)
		<-stopped
		return peak - base
	}
}

// rss reads a VmRSS-style field of /proc/PID/status, in bytes.
func rss(pid int, field string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// consoleDial opens a console session (hello read) with the target's
// admin token. Frames of up to 64 MiB are accepted, as the dump's chunks
// may be large.
func consoleDial(ctx context.Context, rd ready) (*client.Conn, error) {
	return client.Dial(ctx, rd.URL, client.Options{Token: rd.Token, MaxFrameBytes: 64 << 20})
}

// consoleRun runs one line and returns its text output, any file, and how
// long the file took to arrive (from its file event to its file_end). The
// file is kept in memory only after its size and SHA-256 check (by package
// client, as the bytes arrive: a client's real cost, so inside the timed
// window); a file that fails them is the error, a *client.FileError. An
// error event is a *wire.Error. Without a file, the duration is 0 on
// success and the whole run's time on an error.
func consoleRun(rd ready, line string, keep bool) (string, []byte, time.Duration, error) {
	ctx := context.Background()
	c, err := consoleDial(ctx, rd)
	if err != nil {
		return "", nil, 0, err
	}
	defer c.Close()
	start := time.Now()
	var text strings.Builder
	var file bytes.Buffer
	// The transfer's ends are taken on the client's reading goroutine, as
	// the file and file_end events arrive (Event sees them a little later).
	var xferStart, xferEnd time.Time
	xferDone, profiled := make(chan struct{}), make(chan struct{})
	defer func() {
		close(xferDone)
		if profileDir != "" && strings.Contains(line, "--full") {
			<-profiled
		}
	}()
	_, err = c.Run(ctx, line, client.Handler{
		Event: func(ev wire.Event) error {
			if ev.Type == wire.EventOutput {
				text.WriteString(ev.Data)
			}
			return nil
		},
		File: func(ev wire.Event) (client.Sink, error) {
			var sink client.Sink = client.WriterSink(io.Discard)
			if keep {
				file.Reset()
				file.Grow(int(ev.Size)) // zeroes the memory, outside the timed window
				sink = client.WriterSink(&file)
			}
			if profileDir != "" && strings.Contains(line, "--full") {
				stop := profileTransfer(rd)
				go func() { <-xferDone; stop(); close(profiled) }()
			}
			xferStart = time.Now()
			return timedSink{Sink: sink, end: &xferEnd}, nil
		},
	})
	if err != nil {
		return text.String(), file.Bytes(), time.Since(start), err
	}
	var xfer time.Duration
	if !xferStart.IsZero() {
		xfer = xferEnd.Sub(xferStart)
	}
	return text.String(), file.Bytes(), xfer, nil
}

// timedSink notes when its transfer ends (at file_end, once checked).
type timedSink struct {
	client.Sink
	end *time.Time
}

func (s timedSink) Finish(err error) error {
	*s.end = time.Now()
	return s.Sink.Finish(err)
}
