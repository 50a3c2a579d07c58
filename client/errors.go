package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/opsrepl/opsrepl/console/wire"
)

var (
	// ErrIncomplete is Run's error when the server answered incomplete: the
	// Go source is unfinished; send it again with more lines.
	ErrIncomplete = errors.New("the Go source is incomplete")
	// ErrProtocol marks a server that broke the protocol; the connection
	// is closed.
	ErrProtocol = errors.New("protocol error")
	// ErrClosed is the error of requests that were waiting when Close was
	// called.
	ErrClosed = errors.New("connection closed by the client")
)

// A request that ended in an error event returns it as a *wire.Error
// (errors.As); its Code says what happened.

// RefusedError is a handshake the server refused before the upgrade.
type RefusedError struct {
	Host, Path string
	Status     int       // HTTP status
	Code       wire.Code // the console's refusal code; empty when the answer is not a console's
	Message    string    // the console's message, or the first bytes of another body
	RetryAfter time.Duration
}

func (e *RefusedError) Error() string {
	if e.Code == "" {
		// Not a console's refusal: most likely the wrong path (the app
		// behind the same port answered) or the wrong port.
		return fmt.Sprintf("%s%s answered HTTP %d %s, not as an ops-repl console: check the URL's path (the console is mounted where the service chose, such as /ops-repl; the demo prints its URL)",
			e.Host, e.Path, e.Status, http.StatusText(e.Status))
	}
	s := fmt.Sprintf("%s refused the connection: %s: %s", e.Host, e.Code, e.Message)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Denied reports whether the refusal is about who you are: no or bad
// credentials, or nothing granted.
func (e *RefusedError) Denied() bool {
	return e.Code == wire.CodeUnauthenticated || e.Code == wire.CodeForbidden
}

// DialError is a connection that could not be made at all.
type DialError struct {
	URL string
	Err error
}

func (e *DialError) Error() string { return fmt.Sprintf("cannot connect to %s: %v", e.URL, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// ClosedError is a connection that ended while the client used it.
type ClosedError struct {
	Code   int    // the WebSocket close code; 0 when the connection broke without one
	Reason string // the server's close reason, as sent
	Err    error  // the network error, when there is no close code
}

func (e *ClosedError) Error() string {
	switch e.Code {
	case 0:
		return fmt.Sprintf("connection lost: %v", e.Err)
	case websocket.CloseMessageTooBig:
		return "the server closed the connection: a frame was larger than its limit"
	case websocket.CloseGoingAway:
		if e.Reason != "" {
			return "the server closed the connection: " + e.Reason
		}
		return "the server is shutting down"
	case websocket.CloseNormalClosure, websocket.ClosePolicyViolation:
		if e.Reason != "" {
			return "the server closed the session: " + e.Reason
		}
		return "the server closed the session"
	}
	if e.Reason != "" {
		return fmt.Sprintf("the server closed the connection (%d): %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("the server closed the connection (%d)", e.Code)
}

func (e *ClosedError) Unwrap() error { return e.Err }

// closeError turns a read error into the connection's end.
func closeError(err error, closing bool) error {
	if closing {
		return ErrClosed
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code == websocket.CloseAbnormalClosure {
			return &ClosedError{Err: errors.New("the connection closed without a close frame")}
		}
		return &ClosedError{Code: ce.Code, Reason: ce.Text}
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return fmt.Errorf("%w: a server frame larger than the client's limit", ErrProtocol)
	}
	return &ClosedError{Err: err}
}
