package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rotated writes n records to a log at path that rotates every 600 bytes,
// and closes it. It returns the rotated files, oldest first.
func rotated(t *testing.T, path string, n int) []string {
	t.Helper()
	l := openLog(t, path, func(o *Options) { o.MaxBytes = 600 })
	writeN(t, l, n)
	l.Close()
	files := rotatedFiles(path)
	if len(files) < 2 {
		t.Fatalf("%d rotated files; want rotation", len(files))
	}
	return files
}

// lastLine returns the last line of path, without its newline.
func lastLine(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	return lines[len(lines)-1]
}

// TestCrashAtRotation: every state a crash (or a full disk) can leave at
// a rotation boundary, made with real file operations. After Open and
// more records, the files verify as one chain, with the right seq after
// the last complete record, and a recover record where a line was cut.
func TestCrashAtRotation(t *testing.T) {
	tests := []struct {
		name    string
		crash   func(t *testing.T, path string, files []string)
		recover bool // a recover record must describe a cut line
	}{
		{"no live file: crash between the rename and the create", func(t *testing.T, path string, files []string) {
			os.Remove(path) // the records of the live file are in a rotated one
		}, false},
		{"empty live file", func(t *testing.T, path string, files []string) {
			os.WriteFile(path, nil, 0o600)
		}, false},
		{"live file holding only a torn record", func(t *testing.T, path string, files []string) {
			os.WriteFile(path, []byte(`{"seq":99,"prev":"0000`), 0o600)
		}, true},
		{"live file holding one record whose newline was lost", func(t *testing.T, path string, files []string) {
			// Move the last record of the newest rotated file into a new
			// live file, without its newline: what a crash before the
			// newline reached the disk leaves.
			newest := files[len(files)-1]
			last := lastLine(t, newest)
			b, _ := os.ReadFile(newest)
			os.WriteFile(newest, b[:len(b)-len(last)-1], 0o600)
			os.WriteFile(path, last, 0o600)
		}, false},
		{"rotated files named out of time order", func(t *testing.T, path string, files []string) {
			// The clock stepped back: the newest file has the oldest name.
			dir := filepath.Dir(path)
			old := filepath.Join(dir, "a.jsonl.19990101T000000.000000000Z")
			if err := os.Rename(files[len(files)-1], old); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(path, []byte(`{"seq":`), 0o600)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "a.jsonl")
			files := rotated(t, path, 20)
			os.Rename(path, files[len(files)-1]+"x") // put the live file's records in a rotated file of their own
			os.Rename(files[len(files)-1]+"x", path+"."+time.Now().Add(time.Hour).UTC().Format(rotateLayout))
			files = rotatedFiles(path)
			tt.crash(t, path, files)

			l := openLog(t, path)
			writeN(t, l, 3)
			seq, _ := l.Head()
			l.Close()
			if want := uint64(23 + boolInt(tt.recover)); seq != want {
				t.Fatalf("after reopening: head seq %d; want %d (the chain continued)", seq, want)
			}
			all, _ := filepath.Glob(path + "*")
			rep := verify(t, VerifyOptions{}, all...)
			if !rep.OK() || rep.Records != 23+boolInt(tt.recover) {
				t.Fatalf("verify: %+v, broken %v", rep, rep.Broken)
			}
			if tt.recover != (len(rep.Recovered) == 1) {
				t.Fatalf("recovered lines: %+v; want a recover record: %v", rep.Recovered, tt.recover)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestVerifyCrashTailAnywhere: a live file holding only a cut line, given
// first or last, is a crash tail (not tampering); a cut line followed by
// records without a recover record is tampering.
func TestVerifyCrashTailAnywhere(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jsonl")
	files := rotated(t, path, 20)
	os.WriteFile(path, []byte(`{"seq":21,"pr`), 0o600)
	for _, order := range [][]string{append([]string{path}, files...), append(files, path)} {
		rep := verify(t, VerifyOptions{}, order...)
		if !rep.OK() || rep.Torn == nil {
			t.Fatalf("order %v: broken %v, torn %v; want an incomplete tail", order, rep.Broken, rep.Torn)
		}
	}
	b, _ := os.ReadFile(files[0])
	os.WriteFile(files[0], append([]byte(`{"seq":1,"pr`+"\n"), b...), 0o600)
	if rep := verify(t, VerifyOptions{}, files...); rep.OK() {
		t.Fatal("a cut line before records, with no recover record: got intact; want broken")
	}
}

// TestFullDisk: a real ENOSPC (a small tmpfs; needs root) cuts the first
// record after a rotation; once there is room again, Open continues the
// chain (with a recover record for the cut line) and verify passes. Each
// record is two pages and the log rotates before every record, so the
// disk fills in the middle of the first record of a new file.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a full disk needs a tmpfs mount, which needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=60k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, out)
	}
	defer exec.Command("umount", dir).Run()
	path := filepath.Join(dir, "a.jsonl")
	l := openLog(t, path, func(o *Options) { o.MaxBytes = 1 })
	var err error
	n := 0
	for ; err == nil && n < 100; n++ {
		err = l.WriteSync(Record{Kind: KindIntent, Subject: "alice", Line: string(bytes.Repeat([]byte("x"), 6000)), Decision: "allow"})
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("after %d records: got %v; want no space left on the device", n, err)
	}
	l.Close()
	if out, err := exec.Command("mount", "-o", "remount,size=1m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	l = openLog(t, path)
	writeN(t, l, 2)
	l.Close()
	all, _ := filepath.Glob(path + "*")
	sort.Strings(all)
	rep := verify(t, VerifyOptions{}, all...)
	if !rep.OK() || len(rep.Recovered) != 1 || rep.Records != n+2 {
		t.Fatalf("after a full disk: %d records (want %d), recovered %v, broken %v", rep.Records, n+2, rep.Recovered, rep.Broken)
	}
}

// TestLiveFileReplaced: when the live file is replaced (as sed -i does)
// or removed, the log notices at its next write, puts a new file at the
// path, continues the chain there with a reopen record, keeps a
// replacement aside, and says so to its logger. An edit in the
// replacement shows in verify as tampering.
func TestLiveFileReplaced(t *testing.T) {
	defer func(d time.Duration) { pathCheckEvery = d }(pathCheckEvery)
	pathCheckEvery = 0
	for _, how := range []string{"replaced", "removed"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "a.jsonl")
			var logged bytes.Buffer
			l := openLog(t, path, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logged, nil)) })
			writeN(t, l, 5)
			b, _ := os.ReadFile(path)
			switch how {
			case "replaced": // sed -i 's/memstats 1/memstats 9/': a new file renamed over
				tmp := filepath.Join(dir, "sedXYZ")
				os.WriteFile(tmp, bytes.Replace(b, []byte("memstats 1"), []byte("memstats 9"), 1), 0o644)
				os.Rename(tmp, path)
			case "removed":
				os.Remove(path)
			}
			writeN(t, l, 2)
			seq, _ := l.Head()
			l.Close()
			if seq != 8 {
				t.Fatalf("head seq %d; want 8 (5, a reopen record, 2)", seq)
			}
			var first Record
			json.Unmarshal(bytes.SplitN(mustRead(t, path), []byte("\n"), 2)[0], &first)
			if first.Kind != KindReopen || first.Seq != 6 || !strings.Contains(logged.String(), "changed under the process") {
				t.Fatalf("the new file starts with %+v; log %q", first, logged.String())
			}
			if how == "replaced" {
				aside, _ := filepath.Glob(path + ".replaced-*")
				if len(aside) != 1 {
					t.Fatalf("the replacement was not kept aside: %v", aside)
				}
				rep := verify(t, VerifyOptions{}, aside[0], path)
				if rep.OK() {
					t.Fatal("the edited replacement verified; want the edit reported")
				}
			} else if rep := verify(t, VerifyOptions{Partial: true}, path); !rep.OK() {
				t.Fatalf("the new file alone, as a partial chain: %v", rep.Broken)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
