// Command fleet measures `ops-repl --targets … -c memstats` against many
// consoles: most in this process, each on a port of its own, and some as
// real `ops-repl demo --serve` processes. For each size it reports the
// client's wall time (median of -runs) against one target's, and the
// client's peak RSS; then the same run with one target that accepts
// connections and never answers, to show that the slowest target costs
// its own timeout, not one per target.
//
// Usage:
//
//	go run ./bench/fleet [-sizes 1,10,100,300] [-demos 3] [-runs 3] [-json]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/policy"
)

func main() {
	sizes := flag.String("sizes", "1,10,100,300", "target counts measured")
	demos := flag.Int("demos", 3, "targets that are real demo --serve processes (the rest run in this process)")
	runs := flag.Int("runs", 3, "runs per size (the median is reported)")
	asJSON := flag.Bool("json", false, "print the figures as JSON")
	timeout := flag.Duration("timeout", 5*time.Second, "the client's --target-timeout (what a target that never answers costs)")
	flag.Parse()
	if err := run(*sizes, *demos, *runs, *timeout, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// Row is one size's figures.
type Row struct {
	Targets   int     `json:"targets"`
	WallS     float64 `json:"wall_s"`
	Ratio     float64 `json:"ratio_to_one"`
	PeakRSSMB float64 `json:"client_peak_rss_mib"`
	CPUms     float64 `json:"client_cpu_ms"` // the client's user and system time (median)
	OK        int     `json:"ok"`
}

func run(sizeList string, demos, runs int, timeout time.Duration, asJSON bool) error {
	var sizes []int
	for _, s := range strings.Split(sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-sizes: %q", s)
		}
		sizes = append(sizes, n)
	}
	most := slices.Max(sizes)
	dir, err := os.MkdirTemp("", "ops-repl-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "ops-repl")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/ops-repl").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}

	// The targets: real demos first, then consoles in this process.
	tokens := map[string]string{}
	var urls []string
	for i := 0; i < min(demos, most); i++ {
		cmd := exec.Command(bin, "demo", "--serve", "--dir", filepath.Join(dir, fmt.Sprint("demo", i)))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
		var ready struct {
			URL    string            `json:"url"`
			Tokens map[string]string `json:"tokens"`
		}
		line, err := bufio.NewReader(out).ReadBytes('\n')
		if err != nil || json.Unmarshal(line, &ready) != nil {
			return fmt.Errorf("demo %d: no ready line (%v)", i, err)
		}
		urls = append(urls, ready.URL)
		tokens[ready.URL] = ready.Tokens["operator"]
	}
	tok, stop, err := consoles(most-len(urls), &urls)
	if err != nil {
		return err
	}
	defer stop()
	tokFile := filepath.Join(dir, "tokens")
	var tf strings.Builder
	for u, t := range tokens {
		fmt.Fprintf(&tf, "%s %s\n", u, t)
	}
	os.WriteFile(tokFile, []byte(tf.String()), 0o600)

	measure := func(n int, extra ...string) (float64, float64, float64, int, error) {
		list := filepath.Join(dir, fmt.Sprint("targets-", n))
		os.WriteFile(list, []byte(strings.Join(append(slices.Clone(urls[:n]), extra...), "\n")+"\n"), 0o600)
		var walls, rss, cpu []float64
		ok := 0
		for r := 0; r < runs; r++ {
			cmd := exec.Command(bin, "--targets", "file:"+list, "--target-tokens", tokFile, "--target-timeout", timeout.String(), "-c", "memstats")
			cmd.Env = append(os.Environ(), "OPS_REPL_TOKEN="+tok)
			start := time.Now()
			out, err := cmd.Output()
			walls = append(walls, time.Since(start).Seconds())
			if err != nil && len(extra) == 0 {
				return 0, 0, 0, 0, fmt.Errorf("%d targets: %v\n%s", n, err, out)
			}
			rss = append(rss, float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024)
			cpu = append(cpu, (cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()).Seconds()*1000)
			ok = strings.Count(string(out), " ok\n")
		}
		return median(walls), slices.Max(rss), median(cpu), ok, nil
	}

	var rows []Row
	for _, n := range sizes {
		wall, rss, cpu, ok, err := measure(n)
		if err != nil {
			return err
		}
		rows = append(rows, Row{Targets: n, WallS: wall, PeakRSSMB: rss, CPUms: cpu, OK: ok})
	}
	for i := range rows {
		rows[i].Ratio = rows[i].WallS / rows[0].WallS
	}
	// One target that accepts and never answers: it costs its timeout once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	stalledWall, _, _, _, _ := measure(most, "ws://"+ln.Addr().String()+"/ops-repl")

	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"sizes": rows, "stalled_target_wall_s": stalledWall,
			"stalled_targets": most + 1, "target_timeout_s": timeout.Seconds()})
	}
	fmt.Printf("%-8s %-10s %-10s %-17s %-12s %s\n", "targets", "wall", "vs one", "client peak RSS", "client CPU", "ok")
	for _, r := range rows {
		fmt.Printf("%-8d %-10s %-10s %-17s %-12s %d\n", r.Targets, fmt.Sprintf("%.3f s", r.WallS), fmt.Sprintf("%.2f×", r.Ratio),
			fmt.Sprintf("%.1f MiB", r.PeakRSSMB), fmt.Sprintf("%.0f ms", r.CPUms), r.OK)
	}
	fmt.Printf("%d targets and one that never answers (timeout %s): %.3f s\n", most, timeout, stalledWall)
	fmt.Printf("targets: 100 targets ≤ 3× one; client RSS ≤ 64 MiB (%d of the targets are demo processes)\n", min(demos, most))
	return nil
}

// consoles starts n consoles in this process, each on a loopback port of
// its own, adds their URLs, and returns the token they share.
func consoles(n int, urls *[]string) (string, func(), error) {
	tok, _, err := auth.NewToken("operator")
	if err != nil {
		return "", nil, err
	}
	tokens, err := auth.NewTokens(map[string]string{"operator": tok})
	if err != nil {
		return "", nil, err
	}
	enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy + "g, operator, role:operator\n"})
	if err != nil {
		return "", nil, err
	}
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	for i := 0; i < n; i++ {
		srv, err := console.New(console.Options{Authenticator: tokens, Authorizer: enf, Audit: audit.Discard})
		if err != nil {
			stop()
			return "", nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return "", nil, err
		}
		hs := &http.Server{Handler: srv}
		go hs.Serve(ln)
		stops = append(stops, func() { srv.Close(); hs.Close() })
		*urls = append(*urls, "ws://"+ln.Addr().String()+"/ops-repl")
	}
	return tok, stop, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
