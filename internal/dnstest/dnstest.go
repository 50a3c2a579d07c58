// Package dnstest runs a real DNS server on loopback for tests, answering
// from a fixed set of records (github.com/miekg/dns): discovery is tested
// against the protocol, not a mocked resolver.
package dnstest

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Server serves records, given in zone-file syntax ("a.test. 5 IN A
// 127.0.0.1"), over UDP on loopback until the test ends, and returns its
// address. A name with no records at all is NXDOMAIN; a name with records
// of other types only, an empty answer.
func Server(t testing.TB, records ...string) string {
	t.Helper()
	byName := map[string][]dns.RR{}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("dnstest: %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		byName[name] = append(byName[name], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		for _, q := range r.Question {
			rrs, known := byName[strings.ToLower(q.Name)]
			if !known {
				m.Rcode = dns.RcodeNameError
			}
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// Resolver returns a resolver that asks the server at addr.
func Resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, "udp", addr)
	}}
}
