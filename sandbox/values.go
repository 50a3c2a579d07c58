package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"
)

var errorType = reflect.TypeFor[error]()

// encodeValues is how arguments and results cross the channel: a JSON
// array of the values, an error as its message (null for nil). A value
// that JSON would change (a string that is not UTF-8) or cannot carry (NaN,
// a cycle) is refused with an error naming it.
func encodeValues(vs []reflect.Value, what string) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		x := any(nil)
		if v.Type() == errorType {
			if !v.IsNil() {
				x = v.Interface().(error).Error()
			}
		} else {
			x = v.Interface()
			if bad := notUTF8(v, 0); bad {
				return nil, fmt.Errorf("%s %d cannot cross to the interpreter: it holds a string that is not valid UTF-8 (pass []byte)", what, i+1)
			}
		}
		e, err := json.Marshal(x)
		if err != nil {
			var ue *json.UnsupportedValueError
			if errors.As(err, &ue) {
				return nil, fmt.Errorf("%s %d cannot cross to the interpreter: %s", what, i+1, ue.Str)
			}
			return nil, fmt.Errorf("%s %d cannot cross to the interpreter: %w", what, i+1, err)
		}
		b.Write(e)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// notUTF8 reports whether v holds a string that is not valid UTF-8 (JSON
// would replace its bad bytes). It looks no deeper than JSON encodes.
func notUTF8(v reflect.Value, depth int) bool {
	if depth > 1000 {
		return false // json.Marshal reports the cycle
	}
	switch v.Kind() {
	case reflect.String:
		return !utf8.ValidString(v.String())
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && notUTF8(v.Elem(), depth+1)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return false // base64
		}
		fallthrough
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if notUTF8(v.Index(i), depth+1) {
				return true
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if notUTF8(it.Key(), depth+1) || notUTF8(it.Value(), depth+1) {
				return true
			}
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() && notUTF8(v.Field(i), depth+1) {
				return true
			}
		}
	}
	return false
}

// decodeValues reads raw, a JSON array, as values of the types ts: one
// element at a time, each straight into its type, and no more elements
// than there are types.
func decodeValues(ts []reflect.Type, raw json.RawMessage, what string) ([]reflect.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("%ss: want a JSON array", what)
	}
	out := make([]reflect.Value, 0, len(ts))
	for dec.More() {
		if len(out) == len(ts) {
			return nil, fmt.Errorf("more than %d %ss", len(ts), what)
		}
		t := ts[len(out)]
		if t == errorType {
			var msg *string
			if err := dec.Decode(&msg); err != nil {
				return nil, fmt.Errorf("%s %d: %w", what, len(out)+1, err)
			}
			v := reflect.New(t).Elem()
			if msg != nil {
				v.Set(reflect.ValueOf(crossedError{*msg}))
			}
			out = append(out, v)
			continue
		}
		p := reflect.New(t)
		if err := dec.Decode(p.Interface()); err != nil {
			return nil, fmt.Errorf("%s %d: %w", what, len(out)+1, err)
		}
		out = append(out, p.Elem())
	}
	if len(out) != len(ts) {
		return nil, fmt.Errorf("got %d %ss; want %d", len(out), what, len(ts))
	}
	return out, nil
}

// crossedError is an error that crossed the channel: its message only.
type crossedError struct{ msg string }

func (e crossedError) Error() string { return e.msg }

func ins(ft reflect.Type) []reflect.Type {
	ts := make([]reflect.Type, ft.NumIn())
	for i := range ts {
		ts[i] = ft.In(i)
	}
	return ts
}

func outs(ft reflect.Type) []reflect.Type {
	ts := make([]reflect.Type, ft.NumOut())
	for i := range ts {
		ts[i] = ft.Out(i)
	}
	return ts
}
