package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

var errorType = reflect.TypeFor[error]()

// encodeValue is how an argument or result crosses the channel: JSON of
// the value, or for an error its message (null for nil).
func encodeValue(v reflect.Value) (json.RawMessage, error) {
	if v.Type() == errorType {
		if v.IsNil() {
			return json.RawMessage("null"), nil
		}
		return json.Marshal(v.Interface().(error).Error())
	}
	return json.Marshal(v.Interface())
}

// decodeValue reads raw as a value of type t.
func decodeValue(t reflect.Type, raw json.RawMessage) (reflect.Value, error) {
	if t == errorType {
		var msg *string
		if err := json.Unmarshal(raw, &msg); err != nil {
			return reflect.Value{}, err
		}
		v := reflect.New(t).Elem()
		if msg != nil {
			v.Set(reflect.ValueOf(crossedError{*msg}))
		}
		return v, nil
	}
	p := reflect.New(t)
	if err := json.Unmarshal(raw, p.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return p.Elem(), nil
}

// crossedError is an error that crossed the channel: its message only.
type crossedError struct{ msg string }

func (e crossedError) Error() string { return e.msg }

// decodeArgs reads the arguments of a call to a function of type ft.
func decodeArgs(ft reflect.Type, raw []json.RawMessage) ([]reflect.Value, error) {
	if len(raw) != ft.NumIn() {
		return nil, fmt.Errorf("got %d arguments; want %d", len(raw), ft.NumIn())
	}
	args := make([]reflect.Value, len(raw))
	for i := range raw {
		v, err := decodeValue(ft.In(i), raw[i])
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		args[i] = v
	}
	return args, nil
}

// encodeAll encodes vs, failing on the first that cannot cross (a NaN, a
// cycle).
func encodeAll(vs []reflect.Value, what string) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(vs))
	for i, v := range vs {
		b, err := encodeValue(v)
		if err != nil {
			var ue *json.UnsupportedValueError
			if errors.As(err, &ue) {
				return nil, fmt.Errorf("%s %d cannot cross to the interpreter: %s", what, i+1, ue.Str)
			}
			return nil, fmt.Errorf("%s %d cannot cross to the interpreter: %w", what, i+1, err)
		}
		out[i] = b
	}
	return out, nil
}
