package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console/wire"
)

// Exit codes. They are part of the CLI contract (README, --help).
const (
	exitOK      = 0 // every request succeeded
	exitFailed  = 1 // a command or eval failed
	exitUsage   = 2 // bad command line
	exitDenied  = 3 // not authenticated, not permitted, or refused by a limit on you
	exitConnect = 4 // cannot connect, connection lost, or protocol error
)

// exitError carries the exit code for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var (
		ee *exitError
		we *wire.Error
		re *client.RefusedError
		fe *client.FileError
		ce *client.ClosedError
	)
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &we):
		switch we.Code {
		case wire.CodeForbidden, wire.CodeUnauthenticated, wire.CodeReasonRequired:
			return exitDenied
		}
		return exitFailed
	case errors.As(err, &ce) && ce.Code == closeRevoked:
		return exitDenied
	case errors.As(err, &re):
		// Refusals about you: credentials, grants, and the limits on your
		// address or subject (429: throttled, too many of your sessions).
		if re.Denied() || re.Status == http.StatusTooManyRequests {
			return exitDenied
		}
		return exitConnect
	case errors.As(err, &fe), errors.Is(err, client.ErrIncomplete):
		return exitFailed
	}
	return exitConnect
}

// closeRevoked is the close code of a session whose credentials were
// revoked (PROTOCOL.md, section 7).
const closeRevoked = 1008

// errTerminated is returned when the client is told to stop (SIGTERM).
var errTerminated = exitf(exitFailed, "terminated")

// errInterrupted: a second Ctrl-C stopped waiting for a request.
var errInterrupted = exitf(exitFailed, "interrupted: stopped waiting for the request")

// dial connects with the CLI's settings.
func dial(ctx context.Context, rawURL, token string, tlsConf *tls.Config, notice func(wire.Event)) (*client.Conn, error) {
	if _, err := client.ParseURL(rawURL); err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("--url: %w", err)}
	}
	c, err := client.Dial(ctx, rawURL, client.Options{
		Token:  token,
		TLS:    tlsConf,
		Proxy:  http.ProxyFromEnvironment,
		Notice: notice,
		Header: http.Header{"User-Agent": {"ops-repl/" + version()}},
	})
	if ctx.Err() != nil {
		return nil, errTerminated
	}
	return c, err
}

// runOne runs a line: the first interrupt (Ctrl-C) cancels it, a second
// one stops waiting for it.
func runOne(ctx context.Context, c *client.Conn, line string, p *printer, intr <-chan struct{}) (wire.Event, error) {
	rctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	cancel := make(chan struct{}, 1)
	go func() {
		n := 0
		for {
			select {
			case <-intr:
				if n++; n == 1 {
					cancel <- struct{}{}
				} else {
					stop(errInterrupted)
					return
				}
			case <-rctx.Done():
				return
			}
		}
	}()
	final, err := c.Run(rctx, line, client.Handler{Event: p.event, File: p.files(), Cancel: cancel})
	if we := (*wire.Error)(nil); errors.As(err, &we) && we.Code == wire.CodeUnavailable {
		// The session is closing: if it is because your credentials were
		// revoked, say that (exit 3), not that the request failed.
		select {
		case <-c.Done():
		case <-time.After(time.Second):
		}
		var ce *client.ClosedError
		if errors.As(c.Err(), &ce) && ce.Code == closeRevoked {
			return final, c.Err()
		}
	}
	switch {
	case ctx.Err() != nil:
		return final, errTerminated
	case errors.Is(context.Cause(rctx), errInterrupted):
		return final, errInterrupted
	}
	return final, err
}

// isLoopback reports whether host (from a URL) is a loopback name or address.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
