//go:build console

package main

import (
	"net/http"
	"path/filepath"

	opsrepl "github.com/opsrepl/opsrepl"
	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/auth"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/policy"
	"github.com/opsrepl/opsrepl/sandbox"
)

func sandboxMain() { sandbox.Main() }

func init() {
	mount = func(mux *http.ServeMux, dir string) (func(), string, error) {
		tok, _, err := auth.NewToken("admin")
		if err != nil {
			return nil, "", err
		}
		tokens, err := auth.NewTokens(map[string]string{"admin": tok})
		if err != nil {
			return nil, "", err
		}
		enf, err := policy.New(policy.Options{PolicyText: opsrepl.DefaultPolicy + "g, admin, role:admin\n"})
		if err != nil {
			return nil, "", err
		}
		log, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.jsonl")})
		if err != nil {
			return nil, "", err
		}
		srv, err := console.New(console.Options{Authenticator: tokens, Authorizer: enf, Audit: log})
		if err != nil {
			return nil, "", err
		}
		mux.Handle("/ops-repl", srv)
		return func() { srv.Close(); log.Close() }, tok, nil
	}
}
