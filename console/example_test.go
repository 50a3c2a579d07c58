package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/client"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/policy"
)

// Example embeds the console in a service: tokens, policy, audit log,
// exports, mount.
func Example() {
	tokens, _ := auth.NewTokens(map[string]string{"alice": "alice-secret-token-0123456789"})
	enf, _ := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy + "g, alice, role:admin\n"})
	dir, _ := os.MkdirTemp("", "ops-repl-example")
	defer os.RemoveAll(dir)
	log, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.jsonl")}) // 0600, hash-chained
	if err != nil {
		panic(err)
	}
	defer log.Close()
	exports := new(interp.Exports).Func("shop/orders", "Pending", func() int { return 3 })
	srv, err := console.New(console.Options{Authenticator: tokens, Authorizer: enf, Audit: log, Exports: exports})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/debug/ops-repl", srv)
	// In a real service: go srv.ListenAndServe(ctx, "", nil), or mount mux.
	hs := httptest.NewServer(mux)
	defer hs.Close()

	// The Go client (any WebSocket library will do; see PROTOCOL.md).
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/debug/ops-repl"
	c, err := client.Dial(context.Background(), url, client.Options{Token: "alice-secret-token-0123456789"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	final, err := c.Run(context.Background(), "orders.Pending() * 2", client.Handler{})
	if err != nil {
		panic(err)
	}
	fmt.Println(final.Type, final.Value)
	c.Close()
	srv.Close()

	rep, _ := audit.Verify(audit.VerifyOptions{}, filepath.Join(dir, "audit.jsonl"))
	fmt.Println("audit chain intact:", rep.OK())
	// Output:
	// result 6
	// audit chain intact: true
}
