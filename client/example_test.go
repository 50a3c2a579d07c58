package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/policy"
)

// Example runs a command and reads its events as a stream.
func Example() {
	// A console to talk to (a service embeds one; see package console).
	tokens, _ := auth.NewTokens(map[string]string{"bob": "bob-secret-token-0123456789ab"})
	enf, _ := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy + "g, bob, role:viewer\n"})
	srv, _ := console.New(console.Options{Authenticator: tokens, Authorizer: enf, Audit: audit.Discard})
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	ctx := context.Background()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), client.Options{Token: "bob-secret-token-0123456789ab"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println("subject:", c.Hello().Subject)

	r, err := c.Send(wire.Request{Type: wire.TypeRun, Line: "whoami"}, nil)
	if err != nil {
		panic(err)
	}
	for {
		ev, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(ev.Type)
	}

	// The callback form; a refusal is a *wire.Error.
	_, err = c.Run(ctx, "heapdump", client.Handler{})
	var we *wire.Error
	fmt.Println(errors.As(err, &we), we.Code)
	// Output:
	// subject: bob
	// output
	// result
	// true forbidden
}
