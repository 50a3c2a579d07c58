package sandbox

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

func frame(body string) []byte {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(body)))
	return append(n[:], body...)
}

// TestHostileFrames: what a compromised child could send the host is
// bounded and refused, never allocated in proportion to what it claims.
func TestHostileFrames(t *testing.T) {
	zeros := "[" + strings.Repeat("0,", 400000) + "0]"
	tests := []struct {
		name  string
		input []byte
		err   string // "" means it decodes
	}{
		{"frame larger than the limit", frame(strings.Repeat(" ", 2<<20)), "frame too large"},
		{"length only", []byte{0xff, 0xff, 0xff, 0xff}, "frame too large"},
		{"truncated frame", frame(`{"op":"out"}`)[:8], "EOF"},
		{"not JSON", frame(`{"op":`), "bad frame"},
		{"host structures ignored", frame(`{"op":"result","init":{"exports":[` + strings.Repeat(`{},`, 1000) + `{}]},"limits":{"max_memory":1}}`), ""},
		{"many values", frame(`{"op":"call","values":` + zeros + `}`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLink(&readWriter{bytes.NewReader(tt.input)}, 1<<20, hostFrame)
			l.fromChild = true
			m, err := l.recv()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Init != nil || m.Limits != nil {
				t.Fatal("a child's frame filled the host's own structures")
			}
		})
	}
}

type readWriter struct{ *bytes.Reader }

func (readWriter) Write(p []byte) (int, error) { return len(p), nil }

// TestDecodeValues: arguments decode one by one into the parameter types,
// and no more of them than there are parameters.
func TestDecodeValues(t *testing.T) {
	ints := []reflect.Type{reflect.TypeFor[int]()}
	tests := []struct {
		raw string
		ts  []reflect.Type
		err string
	}{
		{`[1]`, ints, ""},
		{`[1,2]`, ints, "more than 1"},
		{`[` + strings.Repeat("1,", 100000) + `1]`, ints, "more than 1"},
		{`[]`, ints, "got 0"},
		{`{"a":1}`, ints, "array"},
		{`["x"]`, ints, "argument 1"},
		{`[null]`, []reflect.Type{errorType}, ""},
		{`["boom"]`, []reflect.Type{errorType}, ""},
		{`[[1,2,3]]`, []reflect.Type{reflect.TypeFor[[2]int]()}, ""},
	}
	for _, tt := range tests {
		vs, err := decodeValues(tt.ts, []byte(tt.raw), "argument")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%.40s: got %v; want %q", tt.raw, err, tt.err)
			}
			continue
		}
		if err != nil || len(vs) != len(tt.ts) {
			t.Errorf("%.40s: got %v, %v", tt.raw, vs, err)
		}
	}
	if _, err := encodeValues([]reflect.Value{reflect.ValueOf(map[string][]string{"k": {"a\xffb"}})}, "result"); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("a string that is not UTF-8, deep in a value: got %v", err)
	}
}
