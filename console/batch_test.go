package console

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// writesConn records each Write that reaches the connection.
type writesConn struct {
	net.Conn
	writes [][]byte
	fail   error
}

func (c *writesConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// TestBatchConn: outside a hold every write goes through at once; inside
// one, writes leave together at release, up to batchMax; a failed write
// at release is reported.
func TestBatchConn(t *testing.T) {
	big := bytes.Repeat([]byte("x"), batchMax)
	tests := []struct {
		name   string
		script func(c *batchConn)
		want   []string // the writes that reach the connection, in order
	}{
		{name: "no hold", script: func(c *batchConn) { c.Write([]byte("a")); c.Write([]byte("b")) }, want: []string{"a", "b"}},
		{name: "hold", script: func(c *batchConn) {
			c.gather()
			c.Write([]byte("a"))
			c.Write([]byte("b"))
			c.release()
			c.Write([]byte("c"))
		}, want: []string{"ab", "c"}},
		{name: "past batchMax", script: func(c *batchConn) {
			c.gather()
			c.Write([]byte("a"))
			c.Write(big)
			c.Write([]byte("b"))
			c.release()
		}, want: []string{"a", string(big), "b"}},
		{name: "empty hold", script: func(c *batchConn) { c.gather(); c.release() }, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &writesConn{}
			tt.script(&batchConn{Conn: w})
			var got []string
			for _, b := range w.writes {
				got = append(got, string(b))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d writes; want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("write %d: got %.20q (%d bytes); want %.20q (%d bytes)", i, got[i], len(got[i]), tt.want[i], len(tt.want[i]))
				}
			}
		})
	}
	w := &writesConn{}
	c := &batchConn{Conn: w}
	c.gather()
	c.Write([]byte("a"))
	w.fail = errors.New("reset by peer")
	if err := c.release(); err == nil {
		t.Fatal("release hid a failed write")
	}
}
