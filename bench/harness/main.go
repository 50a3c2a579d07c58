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
//   - the dump's transfer rate against a raw loopback TCP copy of the same
//     bytes.
//
// Usage:
//
//	go run ./bench/harness [-heap 1GiB] [-phase 10s] [-clients 8]
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
	"github.com/opsrepl/opsrepl/policy"
	"github.com/opsrepl/opsrepl/sandbox"
)

func main() {
	sandbox.Main()
	target := flag.Bool("target", false, "run as the measured process (internal)")
	heapMiB := flag.Int("heap-mib", 1024, "live heap of the target, in MiB")
	phase := flag.Duration("phase", 10*time.Second, "length of each load phase")
	clients := flag.Int("clients", 8, "concurrent HTTP clients")
	flag.Parse()
	if *target {
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

func runHarness(heapMiB int, phase time.Duration, clients int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-target", "-heap-mib", strconv.Itoa(heapMiB))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("target did not start: %w", err)
	}
	var rd ready
	if err := json.Unmarshal([]byte(line), &rd); err != nil {
		return err
	}
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
		return consoleRun(rd, line)
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

	rssBefore := rss(rd.PID, "VmRSS")
	peak := rssBefore
	stopPeak := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopPeak:
				return
			case <-time.After(20 * time.Millisecond):
				peak = max(peak, rss(rd.PID, "VmRSS"))
			}
		}
	}()
	text, dump, took, err := run("heapdump --full --yes")
	close(stopPeak)
	if err != nil {
		return fmt.Errorf("heapdump --full: %w", err)
	}
	m := regexp.MustCompile(`pause: predicted (\S+), observed (\S+)`).FindStringSubmatch(text)
	if m != nil {
		fmt.Printf("\nheapdump --full pause: predicted %s, observed %s\n", m[1], m[2])
	}
	fmt.Printf("dump size %.1f MiB; target peak extra RSS while dumping and streaming %.1f MiB\n", float64(len(dump))/(1<<20), float64(peak-rssBefore)/(1<<20))
	rate := float64(len(dump)) / took.Seconds() / (1 << 20)
	raw := rawTCPRate(dump)
	fmt.Printf("transfer rate (file event to file_end) %.0f MiB/s; raw loopback TCP copy %.0f MiB/s; ratio %.2f\n", rate, raw, rate/raw)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

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
func consoleRun(rd ready, line string) (string, []byte, time.Duration, error) {
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
	_, err = c.Run(ctx, line, client.Handler{
		Event: func(ev wire.Event) error {
			if ev.Type == wire.EventOutput {
				text.WriteString(ev.Data)
			}
			return nil
		},
		File: func(ev wire.Event) (client.Sink, error) {
			xferStart = time.Now()
			file.Reset()
			file.Grow(int(ev.Size))
			return timedSink{Sink: client.WriterSink(&file), end: &xferEnd}, nil
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

// rawTCPRate copies data over a loopback TCP connection and returns MiB/s.
func rawTCPRate(data []byte) float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	done := make(chan time.Duration, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		defer c.Close()
		start := time.Now()
		io.Copy(io.Discard, c)
		done <- time.Since(start)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0
	}
	c.Write(data)
	c.Close()
	d := <-done
	return float64(len(data)) / d.Seconds() / (1 << 20)
}
