// Command footprint measures what embedding the console costs a service,
// side by side in one run:
//
//   - the binary size of a small HTTP service (bench/footprint/service)
//     with the console mounted, against the same service without it, and
//     against the floor: the service using only the libraries the console
//     is built on (yaegi, Casbin, gorilla/websocket);
//   - its package initialisation time (GODEBUG=inittrace=1, the sum of
//     every package's init clock time, median of -runs starts), against
//     the same;
//   - the wall time of a one-shot `ops-repl -c memstats` against
//     `gops memstats` on the same running service (median of -runs
//     each, interleaved), with the default ops-repl binary and with the
//     client-only build (-tags nodemo).
//
// It builds everything into a temporary folder, gops with `go install
// github.com/google/gops@VERSION` (through the Go module proxy).
//
// Usage:
//
//	go run ./bench/footprint [-runs 20] [-json]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const gopsVersion = "v0.3.28"

func main() {
	runs := flag.Int("runs", 20, "starts and one-shot commands measured, each (the median is reported)")
	asJSON := flag.Bool("json", false, "print the figures as one JSON object")
	flag.Parse()
	if err := run(*runs, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "footprint:", err)
		os.Exit(1)
	}
}

// Report is what one run measured.
type Report struct {
	PlainBytes      int64   `json:"plain_bytes"`
	ConsoleBytes    int64   `json:"console_bytes"`
	ExtraMB         float64 `json:"extra_mb"`
	FloorBytes      int64   `json:"floor_bytes"`    // the service with yaegi, Casbin and gorilla/websocket only
	FloorExtraMB    float64 `json:"floor_extra_mb"` // what those libraries add on their own
	PlainInitMS     float64 `json:"plain_init_ms"`
	ConsoleInitMS   float64 `json:"console_init_ms"`
	ExtraInitMS     float64 `json:"extra_init_ms"`
	OpsReplBytes    int64   `json:"ops_repl_bytes"`
	OpsReplOneShotS float64 `json:"ops_repl_one_shot_s"`
	GopsOneShotS    float64 `json:"gops_one_shot_s"`
	OneShotRatio    float64 `json:"one_shot_ratio"`
	NodemoOneShotS  float64 `json:"nodemo_one_shot_s"` // the client-only build
	NodemoRatio     float64 `json:"nodemo_ratio"`
}

func run(runs int, asJSON bool) error {
	dir, err := os.MkdirTemp("", "ops-repl-footprint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := func(name string) string { return filepath.Join(dir, name) }
	builds := [][]string{
		{"build", "-o", bin("plain"), "./bench/footprint/service"},
		{"build", "-tags", "console", "-o", bin("console"), "./bench/footprint/service"},
		{"build", "-tags", "floor", "-o", bin("floor"), "./bench/footprint/service"},
		{"build", "-tags", "console,gops", "-o", bin("both"), "./bench/footprint/service"},
		{"build", "-o", bin("ops-repl"), "./cmd/ops-repl"},
		{"build", "-tags", "nodemo", "-o", bin("ops-repl-nodemo"), "./cmd/ops-repl"},
	}
	for _, args := range builds {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	install := exec.Command("go", "install", "github.com/google/gops@"+gopsVersion)
	install.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("go install gops: %v\n%s", err, out)
	}

	var r Report
	r.PlainBytes, r.ConsoleBytes, r.OpsReplBytes = size(bin("plain")), size(bin("console")), size(bin("ops-repl"))
	r.ExtraMB = float64(r.ConsoleBytes-r.PlainBytes) / 1e6
	r.FloorBytes = size(bin("floor"))
	r.FloorExtraMB = float64(r.FloorBytes-r.PlainBytes) / 1e6
	var plainInit, consoleInit []float64
	for i := 0; i < runs; i++ { // interleaved: machine noise hits both alike
		p, err := initMS(bin("plain"))
		if err != nil {
			return err
		}
		c, err := initMS(bin("console"))
		if err != nil {
			return err
		}
		plainInit, consoleInit = append(plainInit, p), append(consoleInit, c)
	}
	r.PlainInitMS, r.ConsoleInitMS = median(plainInit), median(consoleInit)
	r.ExtraInitMS = r.ConsoleInitMS - r.PlainInitMS

	// One service with the console and the gops agent: both clients ask
	// the same process.
	svc := exec.Command(bin("both"), "-dir", dir)
	svc.Env = append(os.Environ(), "GOPS_CONFIG_DIR="+dir)
	out, err := svc.StdoutPipe()
	if err != nil {
		return err
	}
	if err := svc.Start(); err != nil {
		return err
	}
	defer func() { svc.Process.Kill(); svc.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the service's ready line: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		return fmt.Errorf("the service's ready line: %q", line)
	}
	addr, pid, token := f[0], f[1], f[2]
	opsrepl := exec.Command(bin("ops-repl"), "--url", "ws://"+addr+"/ops-repl", "-c", "memstats")
	opsrepl.Env = append(os.Environ(), "OPS_REPL_TOKEN="+token)
	nodemo := exec.Command(bin("ops-repl-nodemo"), opsrepl.Args[1:]...)
	nodemo.Env = opsrepl.Env
	gops := exec.Command(bin("gops"), "memstats", pid)
	gops.Env = append(os.Environ(), "GOPS_CONFIG_DIR="+dir)
	var o, n, g []float64
	for i := 0; i < runs; i++ {
		d, err := wall(opsrepl)
		if err != nil {
			return fmt.Errorf("ops-repl -c memstats: %w", err)
		}
		o = append(o, d)
		if d, err = wall(nodemo); err != nil {
			return fmt.Errorf("ops-repl (nodemo) -c memstats: %w", err)
		}
		n = append(n, d)
		if d, err = wall(gops); err != nil {
			return fmt.Errorf("gops memstats: %w", err)
		}
		g = append(g, d)
	}
	r.OpsReplOneShotS, r.NodemoOneShotS, r.GopsOneShotS = median(o), median(n), median(g)
	r.OneShotRatio = r.OpsReplOneShotS / r.GopsOneShotS
	r.NodemoRatio = r.NodemoOneShotS / r.GopsOneShotS

	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	fmt.Printf("binary       service %6.1f MB   with the console %6.1f MB   extra %+.1f MB (target ≤ +8 MB)\n",
		float64(r.PlainBytes)/1e6, float64(r.ConsoleBytes)/1e6, r.ExtraMB)
	fmt.Printf("             with yaegi, Casbin and gorilla/websocket only %6.1f MB   extra %+.1f MB (the floor)\n",
		float64(r.FloorBytes)/1e6, r.FloorExtraMB)
	fmt.Printf("package init service %6.2f ms   with the console %6.2f ms   extra %+.2f ms (target ≤ 3 ms; median of %d)\n",
		r.PlainInitMS, r.ConsoleInitMS, r.ExtraInitMS, runs)
	fmt.Printf("one-shot     ops-repl -c memstats %.3f s   gops memstats %.3f s   ratio %.2f (target ≤ 0.8; ops-repl binary %.1f MB)\n",
		r.OpsReplOneShotS, r.GopsOneShotS, r.OneShotRatio, float64(r.OpsReplBytes)/1e6)
	fmt.Printf("             client-only build (-tags nodemo) %.3f s   ratio %.2f\n", r.NodemoOneShotS, r.NodemoRatio)
	return nil
}

func size(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// initLine is one package's line of GODEBUG=inittrace=1:
// "init net/http @1.2 ms, 0.11 ms clock, 1234 bytes, 12 allocs".
var initLine = regexp.MustCompile(`^init \S+ @[0-9.]+ ms, ([0-9.]+) ms clock`)

// initMS starts path -exit with inittrace on, and sums the init clocks.
func initMS(path string) (float64, error) {
	cmd := exec.Command(path, "-exit")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s -exit: %v\n%s", path, err, &stderr)
	}
	total := 0.0
	for _, l := range strings.Split(stderr.String(), "\n") {
		if m := initLine.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			total += v
		}
	}
	return total, nil
}

// wall runs a copy of cmd and returns its wall time in seconds.
func wall(cmd *exec.Cmd) (float64, error) {
	c := exec.Command(cmd.Path, cmd.Args[1:]...)
	c.Env = cmd.Env
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	start := time.Now()
	if err := c.Run(); err != nil {
		return 0, fmt.Errorf("%v\n%s", err, &out)
	}
	return time.Since(start).Seconds(), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
