package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func writeN(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := l.WriteSync(Record{Kind: KindIntent, Subject: "alice", Line: fmt.Sprintf("memstats %d", i), Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
}

func openLog(t *testing.T, path string, opts ...func(*Options)) *Log {
	t.Helper()
	o := Options{Path: path}
	for _, f := range opts {
		f(&o)
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func verify(t *testing.T, opts VerifyOptions, paths ...string) *Report {
	t.Helper()
	rep, err := Verify(opts, paths...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestConcurrentWritesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l.Write(Record{Kind: KindIntent, Line: strings.Repeat("x\n", i)})
		}(i)
	}
	wg.Wait()
	l.Close()
	rep := verify(t, VerifyOptions{}, path)
	if !rep.OK() || rep.Records != 50 || rep.FirstSeq != 1 || rep.LastSeq != 50 {
		t.Fatalf("got %+v (broken %v); want 50 intact records", rep, rep.Broken)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: got %v; want 0600", st.Mode().Perm())
	}
}

func TestReopenContinuesChainAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	for i := 0; i < 3; i++ {
		l := openLog(t, path)
		writeN(t, l, 2)
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
	if rep := verify(t, VerifyOptions{}, path); !rep.OK() || rep.Records != 6 {
		t.Fatalf("got %d records, broken %v; want 6 chained across reopenings", rep.Records, rep.Broken)
	}
}

func TestOpenTwiceIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path)
	defer l.Close()
	if _, err := Open(Options{Path: path}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: got %v; want in use", err)
	}
}

// tamper returns the lines of a 10-record log changed by edit.
func TestVerifyDetectsTampering(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.jsonl")
	l := openLog(t, orig)
	writeN(t, l, 10)
	l.Close()
	b, _ := os.ReadFile(orig)
	lines := strings.SplitAfter(string(b), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline

	tests := []struct {
		name     string
		edit     func([]string) []string
		wantLine int // 0: no break
		want     string
	}{
		{"intact", func(ls []string) []string { return ls }, 0, ""},
		{"edited field", func(ls []string) []string {
			ls[4] = strings.Replace(ls[4], "alice", "mallory", 1)
			return ls
		}, 5, "record 5 was changed after it was written"},
		{"edited and re-hashed one record", func(ls []string) []string {
			// Fixing the next prev moves the break one further.
			var r Record
			json.Unmarshal([]byte(ls[4]), &r)
			r.Subject = "mallory"
			nb, _ := json.Marshal(r)
			ls[4] = string(nb) + "\n"
			var n Record
			json.Unmarshal([]byte(ls[5]), &n)
			n.Prev = hashLine(nb)
			nb2, _ := json.Marshal(n)
			ls[5] = string(nb2) + "\n"
			return ls
		}, 6, "record 6 was changed after it was written"},
		{"deleted record", func(ls []string) []string { return append(ls[:3:3], ls[4:]...) }, 4, "record 4 is missing here"},
		{"deleted records", func(ls []string) []string { return append(ls[:3:3], ls[6:]...) }, 4, "records 4 to 6 are missing here"},
		{"deleted first record", func(ls []string) []string { return ls[1:] }, 1, "starts at record 2"},
		{"first prev edited", func(ls []string) []string {
			ls[0] = strings.Replace(ls[0], `"prev":"0`, `"prev":"1`, 1)
			return ls
		}, 1, "record 1 was changed after it was written: its prev must be"},
		{"huge garbage line", func(ls []string) []string {
			return append(ls[:5:5], append([]string{strings.Repeat("x", 3<<20) + "\n"}, ls[5:]...)...)
		}, 6, "not a valid audit record"},
		{"reordered", func(ls []string) []string { ls[2], ls[3] = ls[3], ls[2]; return ls }, 3, "record 3 is missing here"},
		{"garbage line inserted", func(ls []string) []string {
			return append(ls[:5:5], append([]string{"{\"hello\":1}\n"}, ls[5:]...)...)
		}, 6, "not a valid audit record"},
		{"blank line inserted", func(ls []string) []string {
			return append(ls[:5:5], append([]string{"\n"}, ls[5:]...)...)
		}, 6, "not a valid audit record"},
		{"duplicated record", func(ls []string) []string {
			return append(ls[:5:5], append([]string{ls[4]}, ls[5:]...)...)
		}, 6, "record 5 appears again here"},
		{"fake recover record after an edit", func(ls []string) []string {
			ls[4] = "{not json\n"
			return ls
		}, 5, "not a valid audit record"},
		{"last record cut mid-line", func(ls []string) []string {
			ls[9] = ls[9][:20]
			return ls
		}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := tt.edit(append([]string(nil), lines...))
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			os.WriteFile(path, []byte(strings.Join(ls, "")), 0o600)
			rep := verify(t, VerifyOptions{}, path)
			if tt.wantLine == 0 {
				if !rep.OK() {
					t.Fatalf("got broken %v; want intact", rep.Broken)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("got intact; want a break at line %d", tt.wantLine)
			}
			if rep.Broken.Line != tt.wantLine || !strings.Contains(rep.Broken.Reason, tt.want) {
				t.Fatalf("got %v; want line %d: …%s…", rep.Broken, tt.wantLine, tt.want)
			}
			// What still verifies ends before the broken record.
			if rep.LastSeq != uint64(tt.wantLine-1) || rep.Records != tt.wantLine-1 {
				t.Fatalf("verified records %d..%d (%d); want up to %d", rep.FirstSeq, rep.LastSeq, rep.Records, tt.wantLine-1)
			}
		})
	}
}

func TestTornTailThenRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path)
	writeN(t, l, 3)
	l.Close()
	// A crash in the middle of the fourth write.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":4,"prev":"ab`)
	f.Close()

	rep := verify(t, VerifyOptions{}, path)
	if !rep.OK() || rep.Torn == nil || rep.Torn.Line != 4 || rep.Records != 3 {
		t.Fatalf("got %+v; want 3 records and a torn line 4 reported as such", rep)
	}

	// Reopening closes the torn line and continues the chain.
	l = openLog(t, path)
	writeN(t, l, 2)
	l.Close()
	rep = verify(t, VerifyOptions{}, path)
	if !rep.OK() || rep.Torn != nil || len(rep.Recovered) != 1 || rep.Recovered[0].Line != 4 || rep.Records != 6 {
		t.Fatalf("got %+v (broken %v); want 6 records (3, recover, 2) and line 4 recovered", rep, rep.Broken)
	}

	// The recover record excuses exactly the bytes it describes.
	// Edit the torn line itself (line 4), not the first "ab" in the file:
	// a record's hash may start with it too.
	b, _ := os.ReadFile(path)
	ls := strings.SplitAfter(string(b), "\n")
	ls[3] = strings.Replace(ls[3], `"prev":"ab`, `"prev":"cd`, 1)
	os.WriteFile(path, []byte(strings.Join(ls, "")), 0o600)
	if rep := verify(t, VerifyOptions{}, path); rep.OK() || rep.Broken.Line != 4 {
		t.Fatalf("got %+v; want line 4 broken once its bytes changed", rep.Broken)
	}
}

func TestOpenRefusesInvalidLastRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	os.WriteFile(path, []byte("not a record\n"), 0o600)
	if _, err := Open(Options{Path: path}); err == nil || !strings.Contains(err.Error(), "not a valid audit record") {
		t.Fatalf("got %v; want a refusal", err)
	}
}

func TestRotationContinuesChain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	l := openLog(t, path, func(o *Options) { o.MaxBytes = 1000 })
	writeN(t, l, 30)
	l.Close()
	files, _ := filepath.Glob(path + "*")
	if len(files) < 3 {
		t.Fatalf("got %d files; want rotation at 1000 bytes", len(files))
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 1000 {
			t.Fatalf("%s is %d bytes; want ≤ 1000", f, st.Size())
		}
	}
	// Given in any order (the shell sorts the live file first).
	rep := verify(t, VerifyOptions{}, files...)
	if !rep.OK() || rep.Records != 30 || rep.Files[len(rep.Files)-1] != path {
		t.Fatalf("got %+v (broken %v); want 30 records, the live file last", rep, rep.Broken)
	}
	// The live file alone: a partial chain, fine only when accepted.
	if rep := verify(t, VerifyOptions{}, path); rep.OK() {
		t.Fatal("live file alone: got intact; want the missing start reported")
	}
	if rep := verify(t, VerifyOptions{Partial: true}, path); !rep.OK() {
		t.Fatalf("live file alone, partial: got %v", rep.Broken)
	}
	// A rotated file removed from the middle breaks the chain.
	var middle []string
	for _, f := range files {
		if f != files[1] {
			middle = append(middle, f)
		}
	}
	if rep := verify(t, VerifyOptions{}, middle...); rep.OK() {
		t.Fatal("a rotated file missing: got intact")
	}
	// A new Log after the live file was moved away continues from the
	// newest rotated file.
	os.Rename(path, path+".moved")
	l = openLog(t, path)
	seq, _ := l.Head()
	l.Close()
	if seq == 0 {
		t.Fatal("got a new chain; want the newest rotated file continued")
	}
}

func TestHeadDetectsTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path)
	writeN(t, l, 5)
	_, head := l.Head()
	writeN(t, l, 1)
	l.Close()
	if rep := verify(t, VerifyOptions{Head: head}, path); !rep.OK() {
		t.Fatalf("head inside the chain: got %v", rep.Broken)
	}
	b, _ := os.ReadFile(path)
	ls := strings.SplitAfter(string(b), "\n")
	os.WriteFile(path, []byte(strings.Join(ls[:4], "")), 0o600)
	if rep := verify(t, VerifyOptions{}, path); !rep.OK() {
		t.Fatalf("without a head, a cut end is not detectable: got %v", rep.Broken)
	}
	if rep := verify(t, VerifyOptions{Head: head}, path); rep.OK() || !strings.Contains(rep.Broken.Reason, "not in the chain") {
		t.Fatalf("with the head: got %v; want the cut detected", rep.Broken)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 3, errors.New("disk full")
	}
	w.n--
	return len(p), nil
}

func TestWriteFailureIsSticky(t *testing.T) {
	l := New(&failWriter{n: 1})
	if err := l.Write(Record{Kind: KindNote}); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Record{Kind: KindNote}); err == nil {
		t.Fatal("got nil; want the write error")
	}
	if err := l.Write(Record{Kind: KindNote}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("after a torn write: got %v; want every later write refused", err)
	}
}

func TestRedaction(t *testing.T) {
	tok := strings.Repeat("3f", 32)
	tests := []struct{ in, secret string }{
		{"Authorization: Bearer " + tok, tok},
		{"authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"},
		{`req.Header.Set("Authorization", "Bearer abcdefgh12345678")`, "abcdefgh12345678"},
		{`h := "bearer SuperSecretValue99"`, "SuperSecretValue99"},
		{"Sec-WebSocket-Protocol: ops-repl.v1, ops-repl.bearer." + tok, tok},
		{"ops-repl.bearer.shorttok", "shorttok"},
		{`x := "` + tok + `"`, tok},
		{`db.Connect(password="hunter2")`, "hunter2"},
		{`cfg.APIKey = 'k-123'`, "k-123"},
		{"api_key: k-456 then", "k-456"},
		{"secret := `raw value`", "raw value"},
		{"TOKEN " + strings.ToUpper(tok), strings.ToUpper(tok)},
		{"map[Authorization:[Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig]]", "eyJhbGciOiJIUzI1NiJ9"},
		{`authorization: bearer "quoted-secret-123"`, "quoted-secret-123"},
		{"tok_" + tok, tok},
		{"0x" + tok, tok},
		{"x" + tok + "y", tok},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(&buf)
			l.Write(Record{Kind: KindIntent, Line: tt.in, Message: tt.in, Detail: tt.in, Reason: tt.in})
			if strings.Contains(buf.String(), tt.secret) {
				t.Fatalf("secret %q in %s", tt.secret, buf.String())
			}
			if !strings.Contains(buf.String(), redacted) {
				t.Fatalf("no %s marker in %s", redacted, buf.String())
			}
		})
	}
	// Ordinary lines are left alone, and the hook runs after.
	var buf bytes.Buffer
	l := New(&buf)
	l.opts.Redact = func(s string) string { return strings.ReplaceAll(s, "customer-42", "customer-*") }
	l.Write(Record{Kind: KindIntent, Line: `token := demo.CacheGet("customer-42"); heapdump --gc`})
	var r Record
	json.Unmarshal(buf.Bytes(), &r)
	if r.Line != `token := demo.CacheGet("customer-*"); heapdump --gc` {
		t.Fatalf("got %q", r.Line)
	}
}

func TestLostNewlineOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path)
	writeN(t, l, 3)
	l.Close()
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)-1], 0o600) // the crash lost only the newline
	l = openLog(t, path)
	writeN(t, l, 2)
	l.Close()
	rep := verify(t, VerifyOptions{}, path)
	if !rep.OK() || rep.Records != 5 || len(rep.Recovered) != 0 {
		t.Fatalf("got %+v (broken %v); want 5 chained records and nothing to recover", rep, rep.Broken)
	}
}

func TestLargeTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l := openLog(t, path)
	writeN(t, l, 2)
	l.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(bytes.Repeat([]byte("z"), 70<<20)) // longer than any record
	f.Close()
	l = openLog(t, path) // must not fail, nor take long
	writeN(t, l, 1)      // rotates: the file is past 64 MiB
	l.Close()
	files, _ := filepath.Glob(path + "*")
	rep := verify(t, VerifyOptions{}, files...)
	if !rep.OK() || len(rep.Recovered) != 1 || rep.Records != 4 {
		t.Fatalf("got %+v (broken %v); want the huge torn line recovered", rep, rep.Broken)
	}
}

// TestRedactionBySource: what the console writes itself keeps its own
// values (a 64-hex subject, a hash), and loses only the secrets the
// operator's input carried.
func TestRedactionBySource(t *testing.T) {
	subject := strings.Repeat("ab", 32) // a SHA-256 fingerprint as a machine identity
	tok := strings.Repeat("3f", 32)
	var buf bytes.Buffer
	l := New(&buf)
	l.Write(Record{Kind: KindIntent, Subject: subject, Line: "whoami", Message: subject + " may not run whoami",
		LineBytes: 5000, LineSHA256: tok, Detail: "policy sha256 " + tok})
	l.Write(Record{Kind: KindIntent, Line: "run " + tok, Message: `unknown command "run ` + tok + `"`})
	var recs []Record
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r Record
		json.Unmarshal([]byte(line), &r)
		recs = append(recs, r)
	}
	if got, want := recs[0].Message, subject+" may not run whoami"; got != want {
		t.Errorf("the console's message about a 64-hex subject: got %q; want %q", got, want)
	}
	if recs[0].LineSHA256 != tok || recs[0].Detail != "policy sha256 "+tok {
		t.Errorf("the console's own hashes were redacted: %+v", recs[0])
	}
	if strings.Contains(recs[1].Line, tok) || strings.Contains(recs[1].Message, tok) {
		t.Errorf("a token typed by the operator and quoted by the console: %+v", recs[1])
	}
}

// TestMirror: every record goes to the mirror too, as the same JSON line;
// a mirror that stops reading never holds up the log, and says how many
// lines it lost.
func TestMirror(t *testing.T) {
	dir := t.TempDir()
	var got bytes.Buffer
	var mu sync.Mutex
	l, err := Open(Options{Path: filepath.Join(dir, "audit.jsonl"), Mirror: writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return got.Write(b)
	})})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := l.WriteSync(Record{Kind: KindSession, Subject: "alice", Outcome: OutcomeOpen}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	file, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	mu.Lock()
	if got.String() != string(file) {
		t.Fatalf("mirror:\n%s\nfile:\n%s", got.String(), file)
	}
	mu.Unlock()

	stuck := make(chan struct{})
	var out bytes.Buffer
	l, err = Open(Options{Path: filepath.Join(dir, "stuck.jsonl"), Mirror: writerFunc(func(b []byte) (int, error) {
		<-stuck
		mu.Lock()
		defer mu.Unlock()
		return out.Write(b)
	})})
	if err != nil {
		t.Fatal(err)
	}
	n := MirrorBuffer + 100
	for i := 0; i < n; i++ {
		if err := l.Write(Record{Kind: KindSession, Subject: "bob", Outcome: OutcomeOpen}); err != nil {
			t.Fatal(err)
		}
	}
	close(stuck)
	l.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(out.String(), `{"kind":"mirror","dropped":`) {
		t.Fatalf("a mirror that fell behind does not say it dropped lines (%d bytes)", out.Len())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestGroupCommit: many sessions writing durable records at once, across
// rotations, keep one intact chain with every record; and no WriteSync
// returns before an fsync that began after its record was written.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	l := openLog(t, path, func(o *Options) { o.MaxBytes = 8 << 10 })
	const writers, each = 32, 40
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := l.WriteSync(Record{Kind: KindIntent, Subject: "s", Line: "memstats"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	files, _ := filepath.Glob(path + "*")
	if len(files) < 3 {
		t.Fatalf("%d files; want rotations during the writes", len(files))
	}
	if rep := verify(t, VerifyOptions{}, files...); !rep.OK() || rep.Records != writers*each {
		t.Fatalf("%d records (want %d), broken %v", rep.Records, writers*each, rep.Broken)
	}

	// The order of writes and syncs, as a writer that can sync sees it.
	sw := &syncWriter{}
	l = New(sw)
	l.serialSync = false // syncWriter is safe for a Sync beside a Write: group commit
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				mark := fmt.Sprintf("w%d-%d", w, i)
				if err := l.WriteSync(Record{Kind: KindIntent, Line: mark}); err != nil {
					t.Error(err)
					return
				}
				if !sw.syncedThrough(mark) {
					t.Errorf("WriteSync returned before its record was synced")
					return
				}
			}
		}()
	}
	wg.Wait()
	if sw.syncs >= 8*20 {
		t.Logf("%d fsyncs for %d records: no two shared one (possible, not likely)", sw.syncs, 8*20)
	}
}

// syncWriter records how many lines were written when each Sync began.
type syncWriter struct {
	mu     sync.Mutex
	lines  int
	synced int
	syncs  int
	at     map[string]int // a record's line → its line number
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines++
	if s.at == nil {
		s.at = map[string]int{}
	}
	var r Record
	json.Unmarshal(b, &r)
	s.at[r.Line] = s.lines
	return len(b), nil
}

func (s *syncWriter) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced = s.lines
	s.syncs++
	return nil
}

// syncedThrough reports whether the record with that line, and every one
// before it, was synced.
func (s *syncWriter) syncedThrough(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.at[line]
	return ok && n <= s.synced
}
