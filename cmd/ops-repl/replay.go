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
	"os"
	"strings"
	"time"
)

const replayUsage = `Usage:
  ops-repl replay FILE [--speed X] [--idle-limit D]
      play a session transcript (asciicast v2, as the console records with
      Options.TranscriptDir) in the terminal, at its recorded pace.
        --speed X       playback speed factor (default 1; 0 prints at once)
        --idle-limit D  longest pause between two events (default 2s)
      Control characters in the recording are shown escaped, never sent
      to the terminal. asciinema play FILE replays the same file.
`

// castEvent is one asciicast v2 event line: [time, code, data].
type castEvent struct {
	t    float64
	code string
	data string
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	speed := fs.Float64("speed", 1, "")
	idle := fs.Duration("idle-limit", 2*time.Second, "")
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, replayUsage)
			return nil
		}
		return exitf(exitUsage, "replay: %v (see ops-repl replay --help)", err)
	}
	if fs.NArg() != 1 {
		return exitf(exitUsage, "replay: give one transcript file (see ops-repl replay --help)")
	}
	if *speed < 0 || math.IsNaN(*speed) || math.IsInf(*speed, 0) {
		return exitf(exitUsage, "replay: --speed must be a number ≥ 0")
	}
	if *idle < 0 {
		return exitf(exitUsage, "replay: --idle-limit must be ≥ 0")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return exitf(exitUsage, "replay: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	if !sc.Scan() {
		return exitf(exitFailed, "replay: %s is empty", fs.Arg(0))
	}
	var h struct {
		Version   int    `json:"version"`
		Timestamp int64  `json:"timestamp"`
		Title     string `json:"title"`
	}
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 {
		return exitf(exitFailed, "replay: %s is not an asciicast v2 file (its first line must be a header with \"version\": 2)", fs.Arg(0))
	}
	fmt.Fprintf(stderr, "replaying %s (recorded %s); Ctrl-C stops\n", safeText(h.Title), time.Unix(h.Timestamp, 0).Format(time.RFC3339))
	prev := 0.0
	line := 1
	for sc.Scan() {
		line++
		ev, err := parseCastEvent(sc.Bytes())
		if err != nil {
			return exitf(exitFailed, "replay: %s:%d: %v", fs.Arg(0), line, err)
		}
		if ev.code != "o" {
			continue
		}
		if *speed > 0 && ev.t > prev {
			wait := time.Duration((ev.t - prev) / *speed * float64(time.Second))
			wait = min(wait, *idle)
			select {
			case <-ctx.Done():
				return errTerminated
			case <-time.After(wait):
			}
		}
		prev = max(prev, ev.t)
		io.WriteString(stdout, safeText(strings.ReplaceAll(ev.data, "\r\n", "\n")))
	}
	if err := sc.Err(); err != nil {
		return exitf(exitFailed, "replay: %s: %v", fs.Arg(0), err)
	}
	return nil
}

func parseCastEvent(b []byte) (castEvent, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || len(raw) != 3 {
		return castEvent{}, errors.New("not an asciicast event ([time, code, data])")
	}
	var ev castEvent
	if json.Unmarshal(raw[0], &ev.t) != nil || json.Unmarshal(raw[1], &ev.code) != nil || json.Unmarshal(raw[2], &ev.data) != nil || ev.t < 0 {
		return castEvent{}, errors.New("not an asciicast event ([time, code, data])")
	}
	return ev, nil
}
