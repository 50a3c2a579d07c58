package audit

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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
