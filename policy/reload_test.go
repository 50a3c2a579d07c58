package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const basePolicy = "p, role:viewer, cmd:memstats, run, allow\ng, alice, role:viewer\n"

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	os.WriteFile(path, []byte(basePolicy), 0o600)
	e, err := New(Options{PolicyPath: path})
	if err != nil {
		t.Fatal(err)
	}
	unknown := func(objs []string) error {
		for _, o := range objs {
			if o == "cmd:nope" {
				return errors.New("no command nope")
			}
		}
		return nil
	}
	tests := []struct {
		name      string
		content   string
		wantErr   string // "" : applied
		gcAllowed bool   // alice may run cmd:gc afterwards
	}{
		{"grant appended", basePolicy + "p, alice, cmd:gc, run, allow\n", "", true},
		{"same content again", basePolicy + "p, alice, cmd:gc, run, allow\n", "-", true},
		{"empty file", "", "no rule", true},
		{"comments only", "# nothing\n", "no rule", true},
		{"parse error", basePolicy + "p, alice, cmd:gc, run\n", "line 3", true},
		{"bad effect", basePolicy + "p, alice, cmd:gc, run, maybe\n", "effect", true},
		{"binary garbage", "\x00\xff\xfe", "line 1", true},
		{"unknown command", basePolicy + "p, alice, cmd:nope, run, allow\n", "no command nope", true},
		{"grant removed", basePolicy, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(path, []byte(tt.content), 0o600)
			old := e.cur.Load().hash
			ch, changed := e.Reload(unknown)
			switch {
			case tt.wantErr == "-":
				if changed {
					t.Fatalf("got a change for the content in force: %+v", ch)
				}
			case tt.wantErr == "":
				if ch.Err != nil || !changed || ch.OldHash != old || ch.NewHash != hash([]byte(tt.content)) {
					t.Fatalf("got %+v; want applied with old and new hashes", ch)
				}
			default:
				if ch.Err == nil || !strings.Contains(ch.Err.Error(), tt.wantErr) || e.cur.Load().hash != old || ch.NewHash == old {
					t.Fatalf("got %+v; want rejected (%s), old policy kept, both hashes reported", ch, tt.wantErr)
				}
			}
			if ok, _ := e.Authorize("alice", "cmd:gc", "run"); ok != tt.gcAllowed {
				t.Fatalf("alice cmd:gc: got %v; want %v", ok, tt.gcAllowed)
			}
			if ok, _ := e.Authorize("alice", "cmd:memstats", "run"); !ok {
				t.Fatal("alice lost cmd:memstats")
			}
		})
	}
	os.Remove(path)
	if ch, _ := e.Reload(nil); ch.Err == nil {
		t.Fatal("missing file: got no error")
	}
	if ok, _ := e.Authorize("alice", "cmd:memstats", "run"); !ok {
		t.Fatal("a missing file changed decisions")
	}
}

// TestReloadUnderLoad: decisions made while policies swap are each wholly
// the old policy's or the new one's, and the race detector stays quiet.
func TestReloadUnderLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	a := basePolicy + "p, alice, cmd:gc, run, allow\np, alice, cmd:trace, run, allow\n"
	b := basePolicy
	os.WriteFile(path, []byte(a), 0o600)
	e, err := New(Options{PolicyPath: path})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ok, err := e.Authorize("alice", "cmd:memstats", "run")
				if !ok || err != nil {
					t.Errorf("memstats denied mid-swap: %v", err)
					return
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		content := a
		if i%2 == 1 {
			content = b
		}
		os.WriteFile(path, []byte(content), 0o600)
		if ch, _ := e.Reload(nil); ch.Err != nil {
			t.Fatal(ch.Err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	os.WriteFile(path, []byte(basePolicy), 0o600)
	e, err := New(Options{PolicyPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Change, 10)
	done := make(chan struct{})
	go func() {
		e.Watch(ctx, WatchOptions{Interval: 20 * time.Millisecond, Quiet: 100 * time.Millisecond, OnChange: func(ch Change) { changes <- ch }})
		close(done)
	}()
	wait := func() Change {
		select {
		case ch := <-changes:
			return ch
		case <-time.After(5 * time.Second):
			t.Fatal("no change reported")
		}
		return Change{}
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("p, alice, cmd:gc, run, allow\n")
	f.Close()
	if ch := wait(); ch.Err != nil {
		t.Fatalf("append: %v", ch.Err)
	}
	if ok, _ := e.Authorize("alice", "cmd:gc", "run"); !ok {
		t.Fatal("the appended grant is not in force")
	}
	os.WriteFile(path, nil, 0o600)
	if ch := wait(); ch.Err == nil {
		t.Fatal("emptied file: got no rejection")
	}
	if ok, _ := e.Authorize("alice", "cmd:gc", "run"); !ok {
		t.Fatal("emptying the file changed decisions")
	}
	select {
	case ch := <-changes:
		t.Fatalf("the rejected content was reported twice: %+v", ch)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	<-done
}

func TestExplain(t *testing.T) {
	e, err := New(Options{PolicyText: "p, role:admin, cmd:*, run, allow\n\np, bob, cmd:gc, run, deny\ng, bob, role:admin\n"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sub, obj string
		allowed  bool
		line     int // 0: no rule
	}{
		{"bob", "cmd:memstats", true, 1},
		{"bob", "cmd:gc", false, 3},
		{"carol", "cmd:gc", false, 0},
	}
	for _, tt := range tests {
		ok, rule, err := e.Explain(tt.sub, tt.obj, "run")
		if err != nil || ok != tt.allowed || (tt.line == 0) != (rule == nil) || rule != nil && rule.Line != tt.line {
			t.Fatalf("%s %s: got %v %+v %v; want %v line %d", tt.sub, tt.obj, ok, rule, err, tt.allowed, tt.line)
		}
	}
}

// TestWatchPausedWriter: a writer that pauses at the end of a line (less
// than Quiet) does not get its first half taken; a last line without a
// newline is never taken.
func TestWatchPausedWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	os.WriteFile(path, []byte(basePolicy), 0o600)
	e, err := New(Options{PolicyPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan Change, 10)
	go e.Watch(ctx, WatchOptions{Interval: 20 * time.Millisecond, Quiet: 2 * time.Second, OnChange: func(ch Change) { changes <- ch }})

	// The finished file grants bob gc and denies him memstats; its first
	// half only grants gc.
	first := basePolicy + "p, bob, cmd:gc, run, allow\n"
	f, _ := os.OpenFile(path, os.O_TRUNC|os.O_WRONLY, 0)
	f.WriteString(first)
	deadline := time.Now().Add(time.Second) // the writer's pause
	for time.Now().Before(deadline) {
		if ok, _ := e.Authorize("bob", "cmd:gc", "run"); ok {
			t.Fatal("the first half of a file being written was taken")
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.WriteString("p, bob, cmd:memstats, run, deny\n")
	f.Close()
	select {
	case ch := <-changes:
		if ch.Err != nil {
			t.Fatal(ch.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the finished file was not taken")
	}
	if ok, _ := e.Authorize("bob", "cmd:gc", "run"); !ok {
		t.Fatal("the finished file is not in force")
	}

	os.WriteFile(path, []byte(first+"p, bob, cmd:gc, run, deny"), 0o600) // cut off before its newline
	select {
	case ch := <-changes:
		if ch.Err == nil || !strings.Contains(ch.Err.Error(), "newline") {
			t.Fatalf("a cut-off last line: got %v; want it rejected", ch.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cut-off file was not reported")
	}
}

// TestWatchConfigMapSwap: a Kubernetes ConfigMap volume updates by
// writing the new files into a fresh timestamped folder and renaming a
// ..data symlink over the old one; the file the console reads is a
// symlink through ..data. That exact swap is taken, and so is the next.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, text string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "policy.csv"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		// kubelet's atomic writer: a new symlink, renamed over ..data.
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_02_08_00_00.1", basePolicy)
	path := filepath.Join(dir, "policy.csv")
	if err := os.Symlink(filepath.Join("..data", "policy.csv"), path); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{PolicyPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan Change, 10)
	go e.Watch(ctx, WatchOptions{Interval: 20 * time.Millisecond, Quiet: 100 * time.Millisecond, OnChange: func(ch Change) { changes <- ch }})
	for i, grant := range []string{"p, alice, cmd:gc, run, allow\n", "p, bob, cmd:gc, run, allow\n"} {
		old := fmt.Sprintf("..2026_12_02_08_00_0%d.1", i)
		version(fmt.Sprintf("..2026_12_02_08_00_0%d.1", i+1), basePolicy+grant)
		os.RemoveAll(filepath.Join(dir, old)) // kubelet removes the old version
		select {
		case ch := <-changes:
			if ch.Err != nil {
				t.Fatalf("swap %d: %v", i+1, ch.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("swap %d: not taken", i+1)
		}
		subject := strings.Fields(grant)[1]
		if ok, _ := e.Authorize(strings.TrimSuffix(subject, ","), "cmd:gc", "run"); !ok {
			t.Fatalf("swap %d: the new grant is not in force", i+1)
		}
	}
}
