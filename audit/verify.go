package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"sort"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Partial accepts a chain that starts after seq 1 (older rotated
	// files removed). Default: the first record must be seq 1.
	Partial bool
	// Head, if set, is a record hash kept elsewhere (see Log.Head); the
	// chain must contain it, which detects records removed from the end.
	Head string
}

// Problem locates a record.
type Problem struct {
	File   string
	Line   int    // 1-based line number in File
	Seq    uint64 // the record's seq, when it could be read
	Reason string
}

// String is "FILE:LINE: reason"; the reason names the records it is about.
func (p *Problem) String() string {
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
}

// Report is what Verify found.
type Report struct {
	Files    []string // in chain order
	Records  int      // valid records
	FirstSeq uint64
	LastSeq  uint64
	Head     string // hash of the last valid record
	// Broken is the first record that breaks the chain: tampering, or
	// damage. Nil when the chain is intact.
	Broken *Problem
	// Torn is an incomplete final line: a write cut short by a crash,
	// not tampering. Everything before it verified.
	Torn *Problem
	// Recovered are torn lines that a later Open closed with a recover
	// record; each is noted, none breaks the chain.
	Recovered []Problem
}

// OK reports whether the chain is intact (a torn final line allowed).
func (r *Report) OK() bool { return r.Broken == nil }

type fileHead struct {
	path string
	seq  uint64
}

// Verify checks the chain across the given files, which may be given in
// any order (they are ordered by the seq of their first record; a file
// with no complete record, which a crash at a rotation can leave, comes
// last, and an empty one is skipped): every record must carry the hash of
// the one before it and the next seq. It returns an error only when a
// file cannot be read.
func Verify(opts VerifyOptions, paths ...string) (*Report, error) {
	if len(paths) == 0 {
		return nil, errors.New("audit: no file to verify")
	}
	heads := make([]fileHead, 0, len(paths))
	for _, p := range paths {
		seq, err := firstSeq(p)
		if err != nil {
			return nil, err
		}
		if seq == 0 {
			if st, err := os.Stat(p); err == nil && st.Size() == 0 && len(paths) > 1 {
				continue // nothing to verify
			}
			seq = math.MaxUint64 // no record: a crash tail, after the records
		}
		heads = append(heads, fileHead{p, seq})
	}
	sort.SliceStable(heads, func(i, j int) bool { return heads[i].seq < heads[j].seq })
	v := &verifier{opts: opts, rep: &Report{}}
	for i, h := range heads {
		v.rep.Files = append(v.rep.Files, h.path)
		if err := v.file(h.path, i == len(heads)-1); err != nil {
			return nil, err
		}
		if v.rep.Broken != nil {
			return v.rep, nil
		}
	}
	if v.rep.Records == 0 && v.rep.Torn == nil && len(v.rep.Recovered) == 0 {
		v.rep.Broken = &Problem{File: heads[0].path, Line: 1, Reason: "no record"}
	}
	if opts.Head != "" && !v.sawHead && v.rep.Broken == nil {
		last := heads[len(heads)-1].path
		v.rep.Broken = &Problem{File: last, Line: v.line, Reason: "the expected head " + opts.Head + " is not in the chain: records were removed from the end, or the log was rewritten"}
	}
	return v.rep, nil
}

// firstSeq reads the seq of a file's first valid record (0 if none).
func firstSeq(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, _, _, _, err := readLine(br)
		var r Record
		if len(line) > 1 && json.Unmarshal(bytes.TrimSuffix(line, []byte("\n")), &r) == nil && r.Seq > 0 {
			return r.Seq, nil
		}
		if err == io.EOF {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("audit: %w", err)
		}
	}
}

type verifier struct {
	opts    VerifyOptions
	rep     *Report
	started bool
	seq     uint64
	head    string
	sawHead bool
	line    int
	// Where the last valid record is, and the head before it: an edit of
	// that record shows only at the next one.
	lastPath string
	lastLine int
	preHead  string
	// pending is an invalid line that may be a crash's torn write, if a
	// recover record follows it.
	pending *Problem
	tornLen int64
	tornSHA string
}

func (v *verifier) file(path string, last bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	v.line = 0
	for {
		raw, n, tooLong, sum, err := readLine(br)
		if n > 0 {
			v.line++
			terminated := len(raw) > 0 && raw[len(raw)-1] == '\n'
			if !terminated {
				// The last bytes of the file, without a newline.
				p := &Problem{File: path, Line: v.line, Reason: fmt.Sprintf("incomplete final line (%d bytes): a write that did not finish (a crash, a power loss or a full disk), not tampering", n)}
				if last && v.pending == nil {
					v.rep.Torn = p
				} else {
					p.Reason = fmt.Sprintf("incomplete line (%d bytes) followed by more records", n)
					v.rep.Broken = p
				}
				return nil
			}
			if tooLong {
				v.invalid(path, n-1, sum)
			} else {
				v.record(path, raw[:len(raw)-1])
			}
			if v.rep.Broken != nil {
				return nil
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	if v.pending != nil {
		v.rep.Broken = v.pending
	}
	return nil
}

// invalid notes a line that is not a record: damage, unless a recover
// record describing it follows.
func (v *verifier) invalid(path string, n int64, sum string) {
	if v.pending != nil {
		v.rep.Broken = v.pending
		return
	}
	v.pending = &Problem{File: path, Line: v.line, Seq: v.seq + 1, Reason: fmt.Sprintf("not a valid audit record, where record %d was due: edited or damaged", v.seq+1)}
	v.tornLen, v.tornSHA = n, sum
}

func (v *verifier) record(path string, b []byte) {
	r, ok := parseRecord(b)
	if !ok {
		v.invalid(path, int64(len(b)), hashLine(b))
		return
	}
	if v.pending != nil {
		// Only a recover record describing exactly these bytes excuses
		// the invalid line before it.
		if r.Kind != KindRecover || r.TornSHA256 != v.tornSHA || r.TornBytes != v.tornLen {
			v.rep.Broken = v.pending
			return
		}
		p := *v.pending
		p.Reason = fmt.Sprintf("an incomplete record (%d bytes) left by a write that did not finish, closed by the recover record after it", v.tornLen)
		v.rep.Recovered = append(v.rep.Recovered, p)
		v.pending = nil
	}
	switch {
	case !v.started:
		v.started = true
		if r.Seq == 1 && r.Prev != zeroHash {
			v.rep.Broken = &Problem{File: path, Line: v.line, Seq: r.Seq, Reason: "record 1 was changed after it was written: its prev must be " + zeroHash[:8] + "…"}
			return
		}
		if r.Seq != 1 {
			if !v.opts.Partial {
				v.rep.Broken = &Problem{File: path, Line: v.line, Seq: r.Seq, Reason: fmt.Sprintf("the chain starts at record %d, not 1: earlier records are missing (give the older rotated files too, or accept a partial chain)", r.Seq)}
				return
			}
		}
		v.rep.FirstSeq = r.Seq
	case r.Seq > v.seq+1:
		missing := fmt.Sprintf("record %d is", v.seq+1)
		if r.Seq > v.seq+2 {
			missing = fmt.Sprintf("records %d to %d are", v.seq+1, r.Seq-1)
		}
		v.rep.Broken = &Problem{File: path, Line: v.line, Seq: r.Seq, Reason: fmt.Sprintf("%s missing here (record %d follows record %d): deleted, or moved elsewhere", missing, r.Seq, v.seq)}
		return
	case r.Seq <= v.seq:
		v.rep.Broken = &Problem{File: path, Line: v.line, Seq: r.Seq, Reason: fmt.Sprintf("record %d appears again here, after record %d: copied, or moved from elsewhere", r.Seq, v.seq)}
		return
	case r.Prev != v.head:
		// The record before this one no longer hashes to what this one
		// recorded: it was changed after it was written.
		v.rep.Broken = &Problem{File: v.lastPath, Line: v.lastLine, Seq: v.seq, Reason: fmt.Sprintf("record %d was changed after it was written (record %d, which follows it, holds the hash of what it said before)", v.seq, r.Seq)}
		v.rep.Records--
		v.rep.LastSeq, v.rep.Head = v.seq-1, v.preHead
		return
	}
	v.lastPath, v.lastLine, v.preHead = path, v.line, v.head
	v.seq, v.head = r.Seq, hashLine(b)
	if v.opts.Head != "" && v.head == v.opts.Head {
		v.sawHead = true
	}
	v.rep.Records++
	v.rep.LastSeq, v.rep.Head = v.seq, v.head
}

// Scan calls fn for each valid record of the file at path, in order.
// Lines that are not valid records (a torn tail) are skipped. fn's error
// stops the scan and is returned.
func Scan(path string, fn func(Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		raw, _, tooLong, _, err := readLine(br)
		if !tooLong && len(raw) > 0 && raw[len(raw)-1] == '\n' {
			var r Record
			if json.Unmarshal(raw, &r) == nil && r.Seq > 0 {
				if ferr := fn(r); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
}

// maxRecord is the longest line Verify and Scan read as a record; a longer
// one is skipped without being held in memory (and is not a valid record).
const maxRecord = 16 << 20

// readLine reads one line of at most maxRecord bytes, with its newline if
// it has one. A longer line is consumed without being kept: tooLong, its
// length n (newline included) and the SHA-256 of its bytes (without the
// newline) describe it.
func readLine(br *bufio.Reader) (line []byte, n int64, tooLong bool, sum string, err error) {
	var h hash.Hash
	for {
		frag, e := br.ReadSlice('\n')
		n += int64(len(frag))
		if !tooLong && int64(len(line)+len(frag)) > maxRecord {
			tooLong, h = true, sha256.New()
			h.Write(line)
			line = nil
		}
		if tooLong {
			h.Write(bytes.TrimSuffix(frag, []byte("\n")))
		} else {
			line = append(line, frag...)
		}
		if e == bufio.ErrBufferFull {
			continue
		}
		if tooLong {
			sum = hex.EncodeToString(h.Sum(nil))
			if len(frag) > 0 && frag[len(frag)-1] == '\n' {
				line = []byte{'\n'} // keeps "terminated" visible to callers
			}
		}
		return line, n, tooLong, sum, e
	}
}
