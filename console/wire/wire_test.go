package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var decodeTests = []struct {
	name string
	in   string
	code Code // "" means valid
	want Request
	id   uint64 // for an error: the id its error event answers, if readable
	noID bool   // for an error: no id can be read, so it answers id 0
}{
	{name: "whole float id", in: `{"type":"run","id":3.0,"line":"x"}`, want: Request{Type: TypeRun, ID: 3, Line: "x"}},
	{name: "exponent id", in: `{"type":"run","id":30e-1,"line":"x"}`, want: Request{Type: TypeRun, ID: 3, Line: "x"}},
	{name: "fraction a float64 rounds away", in: `{"type":"run","id":1.0000000000000001,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "half above 2^52", in: `{"type":"run","id":4503599627370496.5,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "a megabyte of digits", in: `{"type":"run","id":1.` + strings.Repeat("0", 1<<20) + `1,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "exactly 1 with a long exponent", in: `{"type":"run","id":1000000000000000000000e-21,"line":"x"}`, want: Request{Type: TypeRun, ID: 1, Line: "x"}},
	{name: "id given twice", in: `{"type":"run","id":1,"id":2,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "a long unknown key", in: `{"type":"run","id":3,"` + strings.Repeat("k", 1<<16) + `":1}`, code: CodeBadRequest, id: 3},
	{name: "huge exponent", in: `{"type":"run","id":1e999999999,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "tiny exponent", in: `{"type":"run","id":1e-999999999,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "keys in upper case", in: `{"TYPE":"run","ID":11,"LINE":"whoami"}`, code: CodeBadRequest, noID: true},
	{name: "a second type in other case", in: `{"type":"complete","id":12,"line":"who","Type":"run"}`, code: CodeBadRequest, id: 12},
	{name: "Id", in: `{"type":"run","Id":13,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "exponent id", in: `{"type":"run","id":4e0,"line":"x"}`, want: Request{Type: TypeRun, ID: 4, Line: "x"}},
	{name: "whole float pos", in: `{"type":"complete","id":5,"line":"he","pos":2.0}`, want: Request{Type: TypeComplete, ID: 5, Line: "he"}},
	{name: "largest id", in: `{"type":"run","id":9007199254740991,"line":"x"}`, want: Request{Type: TypeRun, ID: MaxID, Line: "x"}},
	{name: "id past 2^53-1", in: `{"type":"run","id":9007199254740992,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "unknown field, readable id", in: `{"type":"run","id":11,"line":"whoami","extra":true}`, code: CodeBadRequest, id: 11},
	{name: "fractional pos, readable id", in: `{"type":"complete","id":12,"line":"he","pos":1.5}`, code: CodeBadRequest, id: 12},
	{name: "unknown type, readable id", in: `{"type":"exec","id":13,"line":"x"}`, code: CodeBadRequest, id: 13},
	{name: "run", in: `{"type":"run","id":1,"line":"memstats"}`, want: Request{Type: TypeRun, ID: 1, Line: "memstats"}},
	{name: "complete", in: `{"type":"complete","id":2,"line":"he","pos":2}`, want: Request{Type: TypeComplete, ID: 2, Line: "he"}},
	{name: "cancel", in: `{"type":"cancel","id":3,"target":1}`, want: Request{Type: TypeCancel, ID: 3, Target: 1}},
	{name: "empty frame", in: ``, code: CodeBadRequest},
	{name: "not JSON", in: `memstats`, code: CodeBadRequest},
	{name: "array", in: `[1,2]`, code: CodeBadRequest},
	{name: "truncated", in: `{"type":"run","id":1`, code: CodeBadRequest},
	{name: "trailing data", in: `{"type":"run","id":1,"line":"x"} {"type":"run"}`, code: CodeBadRequest},
	{name: "unknown field", in: `{"type":"run","id":1,"line":"x","token":"s3cret"}`, code: CodeBadRequest},
	{name: "no id", in: `{"type":"run","line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "zero id", in: `{"type":"run","id":0,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "negative id", in: `{"type":"run","id":-1,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "float id", in: `{"type":"run","id":1.5,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "string id", in: `{"type":"run","id":"1","line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "huge id", in: `{"type":"run","id":1e30,"line":"x"}`, code: CodeBadRequest, noID: true},
	{name: "no type", in: `{"id":1,"line":"x"}`, code: CodeBadRequest},
	{name: "unknown type", in: `{"type":"exec","id":1,"line":"x"}`, code: CodeBadRequest},
	{name: "html type", in: `{"type":"<script>alert(1)</script>","id":1}`, code: CodeBadRequest},
	{name: "line not a string", in: `{"type":"run","id":1,"line":42}`, code: CodeBadRequest},
	{name: "run with target", in: `{"type":"run","id":1,"line":"x","target":2}`, code: CodeBadRequest},
	{name: "cancel without target", in: `{"type":"cancel","id":1}`, code: CodeBadRequest},
	{name: "cancel with line", in: `{"type":"cancel","id":1,"target":2,"line":"x"}`, code: CodeBadRequest},
	{name: "pos past the end", in: `{"type":"complete","id":1,"line":"he","pos":3}`, code: CodeBadRequest},
	{name: "negative pos", in: `{"type":"complete","id":1,"line":"he","pos":-1}`, code: CodeBadRequest},
	{name: "line too long", in: `{"type":"run","id":1,"line":"` + strings.Repeat("a", MaxLine+1) + `"}`, code: CodeLimit},
	{name: "null", in: `null`, code: CodeBadRequest},
	{name: "invalid UTF-8", in: "{\"type\":\"run\",\"id\":1,\"line\":\"\xff\"}", code: CodeBadRequest},
	{name: "escaped NUL is fine", in: `{"type":"run","id":1,"line":"a\u0000b"}`, want: Request{Type: TypeRun, ID: 1, Line: "a\x00b"}},
}

func TestDecodeRequest(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRequest([]byte(tt.in))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("DecodeRequest: got error %v; want none", err)
				}
				if got.Type != tt.want.Type || got.ID != tt.want.ID || got.Line != tt.want.Line || got.Target != tt.want.Target {
					t.Fatalf("DecodeRequest: got %+v; want %+v", got, tt.want)
				}
				return
			}
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("DecodeRequest: got error %v; want a *wire.Error with code %s", err, tt.code)
			}
			if we.Code != tt.code {
				t.Fatalf("DecodeRequest: got code %q (%s); want %q", we.Code, we.Message, tt.code)
			}
			if (tt.id != 0 || tt.noID) && got.ID != tt.id {
				t.Fatalf("DecodeRequest: the error answers id %d; want %d", got.ID, tt.id)
			}
			if strings.Contains(we.Message, "s3cret") {
				t.Fatalf("error message echoes a field value: %q", we.Message)
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	ev, err := DecodeEvent([]byte(`{"type":"error","id":4,"code":"forbidden","message":"no","future_field":1}`))
	if err != nil {
		t.Fatalf("DecodeEvent: %v", err)
	}
	if ev.Type != EventError || ev.ID != 4 || ev.Code != CodeForbidden || !ev.Final() {
		t.Fatalf("DecodeEvent: got %+v", ev)
	}
	for _, bad := range []string{``, `{}`, `{"id":1}`, `[`, `"x"`} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("DecodeEvent(%q): got no error; want one", bad)
		}
	}
}

func TestFinal(t *testing.T) {
	final := map[string]bool{EventResult: true, EventError: true, EventIncomplete: true, EventCompletions: true}
	for _, typ := range []string{EventHello, EventOutput, EventResult, EventError, EventIncomplete, EventCompletions, EventFile, EventFileEnd, EventNotice} {
		if got, want := (Event{Type: typ}).Final(), final[typ]; got != want {
			t.Errorf("Event{Type: %q}.Final(): got %v; want %v", typ, got, want)
		}
	}
}

// FuzzDecodeRequest checks that the decoder never panics and that every
// request it accepts is valid and survives a round trip.
func FuzzDecodeRequest(f *testing.F) {
	for _, tt := range decodeTests {
		if len(tt.in) < 4096 {
			f.Add([]byte(tt.in))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			var we *Error
			if !errors.As(err, &we) || we.Code == "" || we.Message == "" {
				t.Fatalf("error is not a coded *wire.Error: %v", err)
			}
			return
		}
		if r.ID == 0 || (r.Type != TypeRun && r.Type != TypeComplete && r.Type != TypeCancel) {
			t.Fatalf("accepted an invalid request: %+v", r)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := DecodeRequest(again)
		if err != nil || r2.ID != r.ID || r2.Line != r.Line || r2.Type != r.Type || r2.Target != r.Target {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", r, again, r2, err)
		}
	})
}

// tokenKeys is exactKeys as encoding/json's token reader would do it:
// the reference that exactKeys' single pass must agree with.
func tokenKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := t.(string)
		switch {
		case !requestKeys[k]:
			return Errorf(CodeBadRequest, "malformed request: unknown field %.40q (fields are type, id, line, pos, target, fleet, in lower case)", k)
		case seen[k]:
			return Errorf(CodeBadRequest, "malformed request: the field %q is given twice", k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
	}
	return nil
}

// TestExactKeys: the single-pass key check agrees with encoding/json's
// token reader on objects nested, escaped, spaced and broken.
func TestExactKeys(t *testing.T) {
	frames := []string{
		`{"type":"run","id":1,"line":"x"}`,
		`{"type":"run","id":1,"ID":2}`,
		`{"type":"run","Type":"run","id":1}`,
		`{"type":"run","id":1,"id":2}`,
		`{"type":"run","id":1,"line":"{\"ID\":1,\"id\":2}"}`,
		`{"type":"run","id":1,"fleet":{"ID":2,"id":[1,{"x":"}"}]}}`,
		`{"type":"run","id":1,"fleet":{"a":{"b":{"c":[]}}},"fleet":1}`,
		`{"typ\u0065":"run","id":1}`,
		`{"typ\u0065":"run","type":"run","id":1}`,
		`{"\u0069d":1,"id":2}`,
		`{"i\"d":1}`,
		"\t{ \"type\" :\n\"run\" , \"id\" : 1 ,\"zz\":null }\r\n",
		`{"type":"run","id":1e0,"pos":-0.5,"target":true,"x":false}`,
		`{"line":"\\","junk":1}`,
		`{"line":"\\\"","junk":1}`,
		`{}`,
		`[]`,
		`"id"`,
		`{"type":"run",}`,
		`{"type":"run","id":1}{"x":1}`,
		`{"type"`,
		``,
		`{"type":"run","id":1,"line":"日本語","ünknown":1}`,
	}
	for _, f := range frames {
		got, want := exactKeys([]byte(f)), tokenKeys([]byte(f))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v; want %v", f, got, want)
		}
	}
}
