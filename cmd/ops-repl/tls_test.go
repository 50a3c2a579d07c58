package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsrepl/opsrepl/audit"
	"github.com/opsrepl/opsrepl/console"
	"github.com/opsrepl/opsrepl/policy"
)

// issuePEM creates a certificate (a CA when ca is nil) and writes it and
// its key as PEM files.
func issuePEM(t *testing.T, dir, name, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	parent, signer := tmpl, key
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	} else {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, cert, key
}

// TestClientCertificate: the client's --cert, --key and --ca against a
// console serving mutual TLS; the subject comes from the certificate.
func TestClientCertificate(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := issuePEM(t, dir, "ca", "test CA", nil, nil, 0)
	srvCert, srvKey, _, _ := issuePEM(t, dir, "server", "server", ca, caKey, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey, _, _ := issuePEM(t, dir, "client", "alice", ca, caKey, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	enf, err := policy.New(policy.Options{PolicyText: "p, role:viewer, cmd:whoami, run, allow\ng, alice, role:viewer\n"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := console.New(console.Options{Authorizer: enf, Audit: audit.Discard, TLS: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	go srv.ListenAndServe(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a })
	url := "wss://" + (<-addrc).String() + "/"

	r := runCLI(t, nil, "", "--url", url, "--cert", cliCert, "--key", cliKey, "--ca", caFile, "-c", "whoami")
	if r.code != 0 || !strings.Contains(r.stdout, "alice") {
		t.Fatalf("whoami with a client certificate: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// Without a certificate (and no token authenticator): refused.
	if r := runCLI(t, nil, "", "--url", url, "--ca", caFile, "-c", "whoami"); r.code == 0 {
		t.Fatalf("without a certificate: got exit 0")
	}
	// Without --ca the server's certificate is not trusted.
	if r := runCLI(t, nil, "", "--url", url, "--cert", cliCert, "--key", cliKey, "-c", "whoami"); r.code != exitConnect || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("untrusted server: got %d %q", r.code, r.stderr)
	}
}
