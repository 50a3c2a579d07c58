// Command service is the footprint harness's target: a small HTTP
// service, built with and without the console (build tag console), and
// with the gops agent (build tag gops) for the one-shot comparison. With
// -exit it returns right after its package initialisation.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
)

// mount adds the console to mux; the plain build does nothing.
var mount = func(mux *http.ServeMux, dir string) (stop func(), ready string, err error) { return func() {}, "", nil }

// agent starts the gops agent; the build without gops does nothing.
var startAgent = func() error { return nil }

func main() {
	sandboxMain()
	exit := flag.Bool("exit", false, "return after initialisation")
	dir := flag.String("dir", "", "state folder (tokens, audit)")
	flag.Parse()
	if *exit {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	stop, token, err := mount(mux, *dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer stop()
	if err := startAgent(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s %d %s\n", ln.Addr(), os.Getpid(), token) // the ready line
	http.Serve(ln, mux)
}
