package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestWriteLines(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l.Write(Record{Kind: KindRequest, Line: strings.Repeat("x\n", i), Outcome: "ok"})
		}(i)
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 50 {
		t.Fatalf("got %d lines; want 50 (one per record, newlines in fields escaped)", len(lines))
	}
	for _, line := range lines {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Time.IsZero() || r.Kind != KindRequest {
			t.Fatalf("line %q: %+v, %v", line, r, err)
		}
	}
}

func TestOpenAppendsAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	for i := 0; i < 2; i++ {
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Write(Record{Kind: KindSession, Outcome: "open"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := l.Write(Record{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write after Close: got %v; want ErrClosed", err)
		}
	}
	b, _ := os.ReadFile(path)
	if n := bytes.Count(b, []byte("\n")); n != 2 {
		t.Fatalf("got %d records; want 2 (reopening appends)", n)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: got %v; want 0600", st.Mode().Perm())
	}
}
