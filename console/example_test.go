package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/websocket"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/console/wire"
	"github.com/opsrepl/opsrepl/interp"
	"github.com/opsrepl/opsrepl/policy"
)

// Example embeds the console in a service: tokens, policy, exports, mount.
func Example() {
	tokens, _ := auth.NewTokens(map[string]string{"alice": "alice-secret-token-0123456789"})
	enf, _ := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy + "g, alice, role:admin\n"})
	exports := new(interp.Exports).Func("shop/orders", "Pending", func() int { return 3 })
	srv, err := console.New(console.Options{Authenticator: tokens, Authorizer: enf, Exports: exports})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/debug/ops-repl", srv)
	// In a real service: go srv.ListenAndServe(ctx, "", nil), or mount mux.
	hs := httptest.NewServer(mux)
	defer hs.Close()

	// A client: any WebSocket library; see PROTOCOL.md.
	d := websocket.Dialer{Subprotocols: []string{wire.Subprotocol}}
	conn, _, err := d.DialContext(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http")+"/debug/ops-repl",
		http.Header{"Authorization": {"Bearer alice-secret-token-0123456789"}})
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	conn.WriteJSON(wire.Request{Type: wire.TypeRun, ID: 1, Line: "orders.Pending() * 2"})
	for {
		var ev wire.Event
		if err := conn.ReadJSON(&ev); err != nil {
			panic(err)
		}
		b, _ := json.Marshal(map[string]any{"type": ev.Type, "value": ev.Value})
		if ev.ID == 1 && ev.Final() {
			fmt.Println(string(b))
			return
		}
	}
	// Output: {"type":"result","value":"6"}
}
