package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from this run")

// render plays the client's output on an emulated terminal, as a person
// would see it once it is done: carriage returns, backspaces and readline's
// erase sequences applied, every other control sequence dropped.
func render(raw string) string {
	var lines [][]rune
	var line []rune
	col := 0
	rs := []rune(raw)
	for i := 0; i < len(rs); i++ {
		switch c := rs[i]; {
		case c == '\r':
			col = 0
		case c == '\n':
			lines = append(lines, line)
			line, col = nil, 0
		case c == '\b':
			col = max(col-1, 0)
		case c == 0x1b && i+1 < len(rs) && rs[i+1] == '[':
			j := i + 2
			for j < len(rs) && (rs[j] >= '0' && rs[j] <= '9' || rs[j] == ';' || rs[j] == '?') {
				j++
			}
			if j < len(rs) {
				n := 1
				if v, err := strconv.Atoi(string(rs[i+2 : j])); err == nil {
					n = v
				}
				switch rs[j] {
				case 'C': // cursor forward
					col += n
				case 'D': // cursor back
					col = max(col-n, 0)
				case 'K', 'J': // erase to the end of the line (or screen)
					if string(rs[i+2:j]) == "2" && rs[j] == 'K' {
						line = nil // the whole line
					} else if col < len(line) {
						line = line[:col]
					}
				}
			}
			i = j
		case c < ' ':
		default:
			for len(line) < col {
				line = append(line, ' ')
			}
			if col < len(line) {
				line[col] = c
			} else {
				line = append(line, c)
			}
			col++
		}
	}
	lines = append(lines, line)
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(strings.TrimRight(string(l), " ") + "\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// volatile are the parts of a session that change from run to run.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`\b[0-9a-f]{16}\b`), "SESSION"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "TIME"},
}

// TestInteractiveGolden drives sessions in a pseudo-terminal and compares
// what the terminal shows with testdata/*.golden (go test -run Golden
// -update rewrites them).
func TestInteractiveGolden(t *testing.T) {
	d := startDemo(t)
	sessions := []struct {
		name    string
		subject string
		script  func(tm *term, prompt string)
	}{
		{"viewer", "viewer", func(tm *term, prompt string) {
			tm.send("whoami\r")
			tm.expect("since")
			tm.expect("\n" + prompt)
			tm.send("heapdump\r")
			tm.expect("forbidden")
			tm.expect("\n" + prompt)
			tm.send("1+2\r")
			tm.expect("may not evaluate Go")
			tm.expect("\n" + prompt)
			tm.send("exit\r")
		}},
		{"admin", "admin", func(tm *term, prompt string) {
			tm.send("x := 20\r")
			tm.expect("\n" + prompt)
			tm.send("func double(n int) int {\r")
			tm.expect("\n   ... ")
			tm.send("return 2 * n\r")
			tm.expect("\n   ... ")
			tm.send("}\r")
			tm.expect("\n" + prompt)
			tm.send("double(x) + 2\r")
			tm.expect("42")
			tm.expect("\n" + prompt)
			tm.send("for {\r")
			tm.expect("\n   ... ")
			tm.send(ctrlD)
			tm.expect("discarded")
			tm.expect("\n" + prompt)
			tm.send("quit\r")
		}},
	}
	for _, s := range sessions {
		t.Run(s.name, func(t *testing.T) {
			tm := startTerm(t, "--url", d.ConsoleURL, "--token", d.Tokens[s.subject])
			prompt := s.subject + "> "
			tm.expect("\n" + prompt) // "\n": a new prompt, not a redraw of the line being typed
			s.script(tm, prompt)
			if code := tm.exit(); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			<-tm.read
			tm.mu.Lock()
			got := render(tm.out.String())
			tm.mu.Unlock()
			for _, v := range volatile {
				got = v.re.ReplaceAllString(got, v.with)
			}
			path := filepath.Join("testdata", s.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -run Golden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("the terminal shows:\n%s\nwant (%s):\n%s", got, path, want)
			}
		})
	}
}

func TestRender(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"a\r\nb\r\n", "a\nb\n"},
		{"\x1b[J\x1b[2K\rp> w\x1b[J\x1b[2K\rp> wh\r\nout\r\n", "p> wh\nout\n"},
		{"abc\b\bX\r\n", "aXc\n"},
		{"abcdef\r\x1b[3C\x1b[K\r\n", "abc\n"},
		{"abc\x1b[2Dx\r\n", "axc\n"},
		{"\x1b]0;title\x07shown\r\n", "]0;titleshown\n"},
	}
	for _, tt := range tests {
		if got := render(tt.raw); got != tt.want {
			t.Errorf("render(%q) = %q; want %q", tt.raw, got, tt.want)
		}
	}
}
