package sandbox

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opsrepl/opsrepl/interp"
)

// The channel between host and child carries frames: a 4-byte big-endian
// length, then one JSON message. JSON, not gob: the host decodes what a
// possibly compromised child sends, and gob trusts lengths it reads (a
// map's size hint can ask for any amount of memory). What the child sends
// is bounded (childFrame), carries text as bytes (base64, no escaping
// blow-up), and its only list, the arguments of a call, is decoded element
// by element into the parameter types, so a frame can't make the host
// allocate much more than its own size.
const (
	hostFrame = 8 << 20 // largest frame the host sends (a call's results)
	outChunk  = 32 << 10
	maxText   = 64 << 10 // an error message, clipped to this in the child
	maxItems  = 1000     // completions
)

// childFrame is the largest frame a child may send: a call's arguments,
// or vars. (Output and a result's value come in parts of outChunk.)
const childFrame = 1 << 20

// maxValue bounds a result's value as it comes back: formatted, it is at
// most maxOutput bytes of the value, quoted (up to 10 bytes for one).
func maxValue(maxOutput int) int { return 10*maxOutput + 64<<10 }

// Operations, host → child.
const (
	opStart    = "start"    // limits; answered by ready
	opInit     = "init"     // exports and interpreter options; answered by ready or failed
	opEval     = "eval"     // answered by out and call frames, then result
	opRet      = "ret"      // the answer to a call
	opComplete = "complete" // answered by items
	opVars     = "vars"     // answered by items (one line each)
)

// Operations, child → host.
const (
	opReady  = "ready"
	opFailed = "failed"
	opOut    = "out"
	opValue  = "value" // a part of a result's value, before the result
	opCall   = "call"
	opResult = "result"
	opItems  = "items"
)

// Result kinds: how an eval ended, mapped back to interp's errors.
const (
	kindOK         = ""
	kindIncomplete = "incomplete"
	kindCheck      = "check"
	kindEval       = "eval"
	kindTimeout    = "timeout"
	kindOutput     = "output"
	kindMemory     = "memory"
	kindReset      = "reset"
)

type message struct {
	Op     string          `json:"op"`
	Limits *childLimits    `json:"limits,omitempty"`
	Init   *initMsg        `json:"init,omitempty"`
	Src    string          `json:"src,omitempty"`    // eval; complete's word
	Data   []byte          `json:"data,omitempty"`   // out; a result's value; vars; completions, one a line
	Pkg    string          `json:"pkg,omitempty"`    // call
	Name   string          `json:"name,omitempty"`   // call
	Values json.RawMessage `json:"values,omitempty"` // call's arguments, ret's results: a JSON array
	Kind   string          `json:"kind,omitempty"`   // result
	Text   string          `json:"text,omitempty"`   // an error message
	Spent  bool            `json:"spent,omitempty"`  // result: the interpreter should be replaced
}

// childLimits are applied by a child to itself before it reads anything
// else, and before any evaluated code exists in it.
type childLimits struct {
	MaxMemory uint64        `json:"max_memory"` // RLIMIT_DATA, and the Go soft limit below it
	MaxCPU    time.Duration `json:"max_cpu"`    // RLIMIT_CPU
	MaxStack  int           `json:"max_stack"`  // debug.SetMaxStack
	MaxFrame  int           `json:"max_frame"`  // the largest frame the child may send
	Seccomp   bool          `json:"seccomp"`
}

// initMsg makes a spare child a session's interpreter.
type initMsg struct {
	Interp   interpLimits `json:"interp"`
	Packages []string     `json:"packages"`
	Exports  []exportDesc `json:"exports"`
}

// interpLimits are the interp.Options that cross (not Exports or Packages).
type interpLimits struct {
	Timeout       time.Duration `json:"timeout"`
	MaxOutput     int           `json:"max_output"`
	MaxHeapGrowth uint64        `json:"max_heap_growth"`
	MaxAlloc      uint64        `json:"max_alloc"`
	MaxDepth      int           `json:"max_depth"`
	MaxEvals      int           `json:"max_evals"`
}

func limitsOf(o interp.Options) interpLimits {
	return interpLimits{o.Timeout, o.MaxOutput, o.MaxHeapGrowth, o.MaxAlloc, o.MaxDepth, o.MaxEvals}
}

func (l interpLimits) options() interp.Options {
	return interp.Options{Timeout: l.Timeout, MaxOutput: l.MaxOutput, MaxHeapGrowth: l.MaxHeapGrowth,
		MaxAlloc: l.MaxAlloc, MaxDepth: l.MaxDepth, MaxEvals: l.MaxEvals}
}

// exportDesc is one export as the child sees it: a function it calls
// through the channel, or a value it gets a copy of.
type exportDesc struct {
	Pkg   string          `json:"pkg"`
	Name  string          `json:"name"`
	Type  typeRef         `json:"type"`
	Value json.RawMessage `json:"value,omitempty"` // a Value export's snapshot
	Func  bool            `json:"func,omitempty"`
}

var errFrameTooLarge = errors.New("sandbox: frame too large")

// link is one end of the channel. Reads and writes are each used by one
// goroutine at a time (the caller serializes them).
type link struct {
	r       *bufio.Reader
	w       *bufio.Writer
	buf     []byte
	maxIn   int // the largest frame recv accepts
	maxOut  int // the largest frame send writes
	lastOut int // the size of the last frame send refused
	// fromChild: the host's end, decoding what a child sends.
	fromChild bool
}

// childMessage is what a child may send.
type childMessage struct {
	Op     string          `json:"op"`
	Data   []byte          `json:"data,omitempty"`
	Pkg    string          `json:"pkg,omitempty"`
	Name   string          `json:"name,omitempty"`
	Values json.RawMessage `json:"values,omitempty"`
	Kind   string          `json:"kind,omitempty"`
	Text   string          `json:"text,omitempty"`
	Spent  bool            `json:"spent,omitempty"`
}

func (c childMessage) toMessage() message {
	return message{Op: c.Op, Data: c.Data, Pkg: c.Pkg, Name: c.Name, Values: c.Values, Kind: c.Kind, Text: c.Text, Spent: c.Spent}
}

func newLink(rw io.ReadWriter, maxIn, maxOut int) *link {
	return &link{r: bufio.NewReaderSize(rw, 64<<10), w: bufio.NewWriterSize(rw, 64<<10), maxIn: maxIn, maxOut: maxOut}
}

// send writes m, or, if it is larger than maxOut, nothing (and
// errFrameTooLarge: the link is still usable).
func (l *link) send(m *message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("sandbox: encode %s: %w", m.Op, err)
	}
	if len(b) > l.maxOut {
		l.lastOut = len(b)
		return errFrameTooLarge
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	l.w.Write(n[:])
	l.w.Write(b)
	return l.w.Flush()
}

func (l *link) recv() (*message, error) {
	var n [4]byte
	if _, err := io.ReadFull(l.r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if int64(size) > int64(l.maxIn) {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", errFrameTooLarge, size, l.maxIn)
	}
	if cap(l.buf) < int(size) {
		l.buf = make([]byte, size)
	}
	b := l.buf[:size]
	if _, err := io.ReadFull(l.r, b); err != nil {
		return nil, err
	}
	m := new(message)
	var err error
	if l.fromChild {
		// Only what a child may send: a frame naming the host's own
		// structures (init, limits) does not get them allocated.
		var c childMessage
		err = json.Unmarshal(b, &c)
		*m = c.toMessage()
	} else {
		err = json.Unmarshal(b, m)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: bad frame: %v", errProtocol, err)
	}
	if cap(l.buf) > 1<<20 {
		l.buf = nil // keep a large frame's buffer no longer than it is needed
	}
	return m, nil
}
