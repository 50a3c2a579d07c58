package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Subprotocol is the WebSocket subprotocol a client must offer. A new
// incompatible protocol gets a new name.
const Subprotocol = "ops-repl.v1"

// BearerProtocolPrefix lets clients that cannot set an Authorization header
// (browsers) offer their token as a second subprotocol,
// BearerProtocolPrefix + token. The server never selects or echoes it.
const BearerProtocolPrefix = "ops-repl.bearer."

// Request types, sent by the client.
const (
	TypeRun      = "run"      // run a command line or Go source
	TypeComplete = "complete" // ask for completion candidates
	TypeCancel   = "cancel"   // stop request Target
)

// Event types, sent by the server.
const (
	EventHello       = "hello"       // first frame of a session (id 0)
	EventOutput      = "output"      // a chunk of text output
	EventResult      = "result"      // the request succeeded (final)
	EventError       = "error"       // the request failed (final)
	EventIncomplete  = "incomplete"  // the source needs more lines (final)
	EventCompletions = "completions" // completion candidates (final)
	EventFile        = "file"        // a file transfer starts; binary chunks follow
	EventFileEnd     = "file_end"    // the file transfer is complete
	EventNotice      = "notice"      // information not tied to success or failure
)

// Code is a stable, machine-readable error code.
type Code string

// Error codes. They are part of the protocol: they never change meaning.
const (
	CodeUnauthenticated Code = "unauthenticated" // no or bad credentials
	CodeForbidden       Code = "forbidden"       // the policy denies the request
	CodeBadRequest      Code = "bad_request"     // malformed frame, unknown command, bad flags
	CodeTimeout         Code = "timeout"         // the request ran past its time limit
	CodeCanceled        Code = "canceled"        // the client cancelled the request
	CodeBusy            Code = "busy"            // too many requests in flight; try later
	CodeLimit           Code = "limit"           // a size or count limit was reached
	CodeEval            Code = "eval"            // Go source failed to compile or run
	CodeUnavailable     Code = "unavailable"     // the server is shutting down
	CodeInternal        Code = "internal"        // a server-side failure
	CodeThrottled       Code = "throttled"       // a rate limit was reached; slow down
	CodeReasonRequired  Code = "reason_required" // the policy wants a reason first (the reason command)
)

// MaxLine is the largest line or source a request may carry, in bytes.
const MaxLine = 512 << 10

// Request is a client-to-server frame.
type Request struct {
	Type string `json:"type"`
	// ID identifies the request; the client chooses it (1, 2, 3, …). Events
	// for this request carry the same id. Must be positive.
	ID uint64 `json:"id"`
	// Line is the input: a command line or Go source (run, complete).
	Line string `json:"line,omitempty"`
	// Pos is the cursor position in Line, in bytes (complete). Default: the
	// end of Line.
	Pos *int `json:"pos,omitempty"`
	// Target is the id of the request to stop (cancel).
	Target uint64 `json:"target,omitempty"`
	// Fleet names the fleet request this run belongs to, when a client
	// sends the same line to many consoles: each writes it into its audit
	// record of the request. 1 to 64 letters, digits and . _ - (run only).
	Fleet string `json:"fleet,omitempty"`
}

// MaxFleet is the longest fleet id.
const MaxFleet = 64

// ValidFleet reports whether id may be a fleet id.
func ValidFleet(id string) bool {
	if id == "" || len(id) > MaxFleet {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Event is a server-to-client frame. Which fields are set depends on Type.
type Event struct {
	Type string `json:"type"`
	ID   uint64 `json:"id"`

	Data    string `json:"data,omitempty"`    // output
	Value   string `json:"value,omitempty"`   // result: the value of an expression, if any
	Code    Code   `json:"code,omitempty"`    // error
	Message string `json:"message,omitempty"` // error, notice

	Items []string `json:"items,omitempty"` // completions: full replacements…
	Start int      `json:"start,omitempty"` // …of Line[Start:Pos]

	Name   string `json:"name,omitempty"`   // file: suggested file name
	Size   int64  `json:"size,omitempty"`   // file: exact size in bytes
	SHA256 string `json:"sha256,omitempty"` // file: hex SHA-256 of the content

	Session string   `json:"session,omitempty"` // hello
	Subject string   `json:"subject,omitempty"` // hello
	Roles   []string `json:"roles,omitempty"`   // hello
	Server  string   `json:"server,omitempty"`  // hello: server version
}

// Error is an error as the client sees it: a stable code and a human
// message. It never carries internal details.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// DecodeRequest parses and validates one client frame strictly: unknown
// fields, trailing data, a missing or zero id, an unknown type, or a line
// that is too long or not UTF-8 are errors (*Error with CodeBadRequest or
// CodeLimit). The returned request is always safe to act on.
func DecodeRequest(b []byte) (Request, error) {
	r, err := decodeRequest(b)
	if err != nil && r.ID == 0 {
		// The error event answers the request's id when it can be read,
		// so that a client waiting for that request's final event gets it.
		r = Request{ID: readableID(b)}
	}
	return r, err
}

// MaxID is the largest request id: 2^53−1, the largest integer every JSON
// library (JavaScript's numbers included) reads exactly.
const MaxID = 1<<53 - 1

// rawRequest is a request with its numbers as written: 3 and 3.0 are the
// same id (JSON does not tell integers from floats, and some libraries
// write every number with a fraction).
type rawRequest struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id"`
	Line   string          `json:"line"`
	Pos    json.RawMessage `json:"pos"`
	Target json.RawMessage `json:"target"`
	Fleet  *string         `json:"fleet"`
}

// whole reads the JSON value n as a whole number from 0 to MaxID; absent
// or null is 0.
func whole(n json.RawMessage, field string) (uint64, error) {
	if len(n) == 0 || string(n) == "null" {
		return 0, nil
	}
	if n[0] != '-' && (n[0] < '0' || n[0] > '9') {
		return 0, Errorf(CodeBadRequest, "malformed request: %q must be a number", field)
	}
	// The number's text, read exactly: 1.0000000000000001 is not 1, though
	// a float64 would say it is. The text is bounded first (exact
	// arithmetic on a megabyte of digits would take seconds), and so is
	// the exponent it may carry.
	text := string(n)
	if len(text) > MaxNumberText {
		return 0, Errorf(CodeBadRequest, "malformed request: %q is a number of %d characters; at most %d", field, len(text), MaxNumberText)
	}
	if i := strings.IndexAny(text, "eE"); i >= 0 {
		if e, err := strconv.Atoi(strings.TrimPrefix(text[i+1:], "+")); err != nil || e > MaxNumberText || e < -MaxNumberText {
			return 0, Errorf(CodeBadRequest, "malformed request: %q must be a whole number from 0 to %d; got %s", field, uint64(MaxID), n)
		}
	}
	if len(text) <= 15 && strings.Trim(text, "0123456789") == "" {
		// Plain digits (valid JSON has no leading zeros): below 10^15,
		// so below MaxID.
		v, err := strconv.ParseUint(text, 10, 64)
		if err == nil {
			return v, nil
		}
	}
	v, ok := new(big.Rat).SetString(text)
	switch {
	case !ok || !v.IsInt() || v.Sign() < 0:
		return 0, Errorf(CodeBadRequest, "malformed request: %q must be a whole number; got %s", field, n) // n is at most MaxNumberText
	case v.Num().Cmp(big.NewInt(MaxID)) > 0:
		return 0, Errorf(CodeBadRequest, "malformed request: %q is above %d (2^53−1, the largest integer every JSON library reads exactly)", field, uint64(MaxID))
	}
	return v.Num().Uint64(), nil
}

// MaxNumberText is the longest text a number of a request may have.
const MaxNumberText = 40

// requestKeys are the object keys a request may have, spelt exactly:
// encoding/json would also take "ID" or "Type".
var requestKeys = map[string]bool{"type": true, "id": true, "line": true, "pos": true, "target": true, "fleet": true}

// exactKeys checks that the object b has only requestKeys, as spelt, each
// at most once (encoding/json would take "ID" for "id", and the last of
// two "id"s). It reads the object's top-level keys in one pass, without
// allocating; a frame that is not a valid JSON object is left to the
// decoder after it, which says what is wrong.
func exactKeys(b []byte) error {
	if !json.Valid(b) {
		return nil
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	var seen [len(requestKeyList)]bool
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		end := skipString(b, i)
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			// An escaped key: read it as JSON does (rare; allocates).
			var k string
			if json.Unmarshal(b[i:end], &k) != nil {
				return nil
			}
			key = []byte(k)
		}
		n := slices.Index(requestKeyList[:], string(key))
		switch {
		case n < 0:
			return Errorf(CodeBadRequest, "malformed request: unknown field %.40q (fields are type, id, line, pos, target, fleet, in lower case)", key)
		case seen[n]:
			return Errorf(CodeBadRequest, "malformed request: the field %q is given twice", key)
		}
		seen[n] = true
		i = skipSpace(b, end)
		i = skipSpace(b, skipValue(b, i+1)) // past the ':' and the value
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return nil
}

// requestKeyList are requestKeys in an array, for exactKeys.
var requestKeyList = [...]string{"type", "id", "line", "pos", "target", "fleet"}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at b[i]
// (a '"'), in valid JSON.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the value that starts at or after
// b[i], in valid JSON.
func skipValue(b []byte, i int) int {
	i = skipSpace(b, i)
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = skipString(b, i) - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
		if depth == 0 && (b[i] == '"' || b[i] == '}' || b[i] == ']') {
			return i + 1
		}
	}
	return i
}

// readableID is the id of a frame that failed to decode, if it has a
// whole one, else 0.
func readableID(b []byte) uint64 {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	var id json.RawMessage
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0
		}
		if t == "id" { // exactly "id"
			if id != nil {
				return 0 // two ids: neither is the frame's
			}
			id = v
		}
	}
	n, err := whole(id, "id")
	if err != nil {
		return 0
	}
	return n
}

func decodeRequest(b []byte) (Request, error) {
	if !utf8.Valid(b) {
		// encoding/json would quietly turn bad bytes into U+FFFD.
		return Request{}, Errorf(CodeBadRequest, "malformed request: text frames must be valid UTF-8")
	}
	if err := exactKeys(b); err != nil {
		return Request{}, err
	}
	var raw rawRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Request{}, Errorf(CodeBadRequest, "malformed request: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, Errorf(CodeBadRequest, "malformed request: data after the JSON object")
	}
	r := Request{Type: raw.Type, Line: raw.Line}
	var err error
	if r.ID, err = whole(raw.ID, "id"); err != nil {
		return Request{}, err
	}
	if r.ID == 0 {
		return Request{}, Errorf(CodeBadRequest, "request needs a positive \"id\"")
	}
	if r.Target, err = whole(raw.Target, "target"); err != nil {
		return r, err
	}
	if len(raw.Pos) > 0 && string(raw.Pos) != "null" {
		p, err := whole(raw.Pos, "pos")
		if err != nil {
			return r, err
		}
		pos := int(min(p, uint64(len(r.Line))+1))
		r.Pos = &pos
	}
	if raw.Fleet != nil {
		if r.Type != TypeRun {
			return r, Errorf(CodeBadRequest, "only run takes \"fleet\"")
		}
		if !ValidFleet(*raw.Fleet) {
			return r, Errorf(CodeBadRequest, "\"fleet\" must be 1 to %d letters, digits and . _ -", MaxFleet)
		}
		r.Fleet = *raw.Fleet
	}
	if len(r.Line) > MaxLine {
		return r, Errorf(CodeLimit, "line is %d bytes; the limit is %d", len(r.Line), MaxLine)
	}
	switch r.Type {
	case TypeRun:
		if r.Pos != nil || r.Target != 0 {
			return r, Errorf(CodeBadRequest, "run takes only \"line\"")
		}
	case TypeComplete:
		if r.Target != 0 {
			return r, Errorf(CodeBadRequest, "complete takes only \"line\" and \"pos\"")
		}
		if r.Pos != nil && (*r.Pos < 0 || *r.Pos > len(r.Line)) {
			return r, Errorf(CodeBadRequest, "pos %d is outside the line (0..%d)", *r.Pos, len(r.Line))
		}
	case TypeCancel:
		if r.Target == 0 || r.Line != "" || r.Pos != nil {
			return r, Errorf(CodeBadRequest, "cancel takes only a positive \"target\"")
		}
	case "":
		return r, Errorf(CodeBadRequest, "request needs a \"type\" (run, complete or cancel)")
	default:
		return r, Errorf(CodeBadRequest, "unknown request type %.40q (want run, complete or cancel)", r.Type)
	}
	return r, nil
}

// DecodeEvent parses one server frame. Unknown fields are ignored, so a
// client keeps working when a server adds fields.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("wire: malformed event: %w", err)
	}
	if e.Type == "" {
		return Event{}, errors.New("wire: malformed event: no type")
	}
	return e, nil
}

// Final reports whether e ends its request: no more events follow for its id.
func (e Event) Final() bool {
	switch e.Type {
	case EventResult, EventError, EventIncomplete, EventCompletions:
		return true
	}
	return false
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF):
		return "empty frame"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	msg := err.Error()
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

// IsSubject reports whether s can name a subject (a token's or a client
// certificate's identity): 1 to 64 letters, digits and . _ @ -. Colons are
// excluded so a subject is never mistaken for a role ("role:admin") or an
// object.
func IsSubject(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '@' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
