package audit_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opsrepl/opsrepl/audit"
)

func Example() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.jsonl")

	log, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		fmt.Println(err)
		return
	}
	log.WriteSync(audit.Record{Kind: audit.KindIntent, Subject: "alice", Line: "heapdump", Object: "cmd:heapdump", Decision: "allow"})
	log.Write(audit.Record{Kind: audit.KindOutcome, Subject: "alice", Outcome: "ok"})
	log.Close()

	rep, _ := audit.Verify(audit.VerifyOptions{}, path)
	fmt.Println(rep.OK(), rep.Records)

	// Edit the first record: the second no longer chains to it, and the
	// report names the edited one.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte("alice"), []byte("mallory"), 1), 0o600)
	rep, _ = audit.Verify(audit.VerifyOptions{}, path)
	fmt.Println(rep.OK(), rep.Broken.Line)
	fmt.Println(rep.Broken.Reason)
	// Output:
	// true 2
	// false 1
	// record 1 was changed after it was written (record 2, which follows it, holds the hash of what it said before)
}
