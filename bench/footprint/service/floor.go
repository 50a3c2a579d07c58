//go:build floor && !console

package main

import (
	"net/http"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/gorilla/websocket"
	"github.com/traefik/yaegi/interp"

	opsrepl "github.com/opsrepl/opsrepl"
)

// The floor build mounts an endpoint that uses only the libraries the
// console is built on (an interpreter, a Casbin enforcer, a WebSocket):
// what those cost before any of the console's own code.
func init() {
	mount = func(mux *http.ServeMux, dir string) (func(), string, error) {
		m, err := model.NewModelFromString(opsrepl.DefaultModel)
		if err != nil {
			return nil, "", err
		}
		enf, err := casbin.NewEnforcer(m)
		if err != nil {
			return nil, "", err
		}
		var up websocket.Upgrader
		mux.HandleFunc("/floor", func(w http.ResponseWriter, r *http.Request) {
			if ok, _ := enf.Enforce("sub", "obj", "act"); !ok {
				return
			}
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			_, line, err := c.ReadMessage()
			if err != nil {
				return
			}
			v, err := interp.New(interp.Options{}).Eval(string(line))
			if err == nil {
				c.WriteJSON(v.Interface())
			}
		})
		return func() {}, "", nil
	}
}
