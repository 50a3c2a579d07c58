package console

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// batchConn is a session's connection as gorilla/websocket writes to it.
// Between hold and release its writes are gathered and sent as one: the
// last output of a request and its final event then leave in one write,
// and usually arrive in one read. Outside a hold every write goes
// straight through.
type batchConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  []byte
}

// batchMax bounds what a hold gathers; past it, writes go through.
const batchMax = 64 << 10

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold && len(c.buf)+len(p) <= batchMax {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// gather starts a hold.
func (c *batchConn) gather() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
}

// release ends a hold and sends what it gathered.
func (c *batchConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if cap(c.buf) > batchMax {
		c.buf = nil
	}
	return err
}

// hijacker hands gorilla/websocket's Upgrade a batchConn around the
// hijacked connection.
type hijacker struct {
	http.ResponseWriter
	conn *batchConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &batchConn{Conn: c}
	return h.conn, brw, nil
}
