package diag

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadMemStats(t *testing.T) {
	stats := ReadMemStats()
	for _, m := range []string{"/gc/heap/live:bytes", "/memory/classes/heap/objects:bytes", "/sched/goroutines:goroutines"} {
		v, ok := Lookup(stats, m)
		if !ok {
			t.Fatalf("ReadMemStats lacks %s", m)
		}
		if m == "/sched/goroutines:goroutines" && v < 1 {
			t.Fatalf("%s: got %v; want ≥ 1", m, v)
		}
	}
	var buf bytes.Buffer
	if err := WriteStats(&buf, stats); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "heap in use (objects)") || !strings.Contains(buf.String(), "MiB") && !strings.Contains(buf.String(), "KiB") {
		t.Fatalf("WriteStats: %s", buf.String())
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{512, "bytes", "512 B"},
		{1536, "bytes", "1.5 KiB"},
		{3 << 30, "bytes", "3.0 GiB"},
		{1 << 63, "bytes", "unlimited"},
		{100, "percent", "100%"},
		{-1, "percent", "off"},
		{0.0125, "seconds", "12.5ms"},
		{0.25, "seconds", "0.250 s"},
		{1234, "count", "1234"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.v, tt.unit); got != tt.want {
			t.Errorf("FormatValue(%v, %q): got %q; want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestRegroup(t *testing.T) {
	in := "goroutine profile: total 3\n" +
		"2 @ 0x1 0x2\n" +
		"# labels: {\"k\":\"v\"}\n" +
		"#\t0x46a5a0\tmain.worker+0x20\t\t\t/src/main.go:10\n" +
		"#\t0x46a5b0\tmain.main.func1+0x30\t\t/src/main.go:20\n\n" +
		"1 @ 0x3\n" +
		"#\t0x46a5c0\truntime.gopark+0x1\t/usr/go/proc.go:1\n"
	var out bytes.Buffer
	if err := regroup(&out, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	want := "3 goroutines\n\n2 goroutines with this stack:\n    labels {\"k\":\"v\"}\n    main.worker\n        /src/main.go:10\n    main.main.func1\n        /src/main.go:20\n\n1 goroutine with this stack:\n    runtime.gopark\n        /usr/go/proc.go:1\n"
	if got := out.String(); got != want {
		t.Fatalf("regroup:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteGoroutinesGroups(t *testing.T) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); parkedForDiagTest(stop) }()
	}
	defer func() { close(stop); wg.Wait() }()
	var head string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) { // until all 100 are parked
		var out bytes.Buffer
		if err := WriteGoroutines(&out); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		if i := strings.Index(s, "diag.parkedForDiagTest"); i >= 0 {
			head = s[strings.LastIndex(s[:i], "\n\n")+2:]
			if strings.HasPrefix(head, "100 goroutines with this stack") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("want the 100 parked goroutines in one group; got:\n%.300s", head)
}

func parkedForDiagTest(stop chan struct{}) { <-stop }

func TestWriteHeapProfile(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHeapProfile(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatalf("heap profile is not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil || len(raw) == 0 {
		t.Fatalf("heap profile: %d bytes, %v", len(raw), err)
	}
	if !bytes.Contains(raw, []byte("inuse_space")) {
		t.Fatal("heap profile has no inuse_space sample type")
	}
}
