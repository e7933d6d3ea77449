package e2e

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
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

type certPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func issue(t *testing.T, cn string, parent *certPair, server bool) *certPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent.cert, parent.key
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &certPair{cert: cert, key: key, der: der}
}

func (c *certPair) write(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	kb, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestMutualTLS serves gRPC with listen.tls and a client CA: an Envoy with a
// client certificate from that CA is answered; one without is refused.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, "stepup test CA", nil, false)
	caFile, _ := ca.write(t, dir, "ca")
	serverCert, serverKey := issue(t, "stepup-authz", ca, true).write(t, dir, "server")
	client := issue(t, "envoy", ca, false)

	idp := startIdP(t)
	s := launchServer(t, idp, `
listen:
  grpc: "{{GRPC}}"
  admin: "{{ADMIN}}"
  tls: { cert_file: "`+serverCert+`", key_file: "`+serverKey+`", client_ca_file: "`+caFile+`" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
`)
	s.waitReady(t)

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func(certs []tls.Certificate) error {
		creds := credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12})
		conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{})
		return err
	}
	withCert := tls.Certificate{Certificate: [][]byte{client.der}, PrivateKey: client.key}
	if err := dial([]tls.Certificate{withCert}); err != nil {
		t.Fatalf("Check with a client certificate: %v", err)
	}
	if err := dial(nil); err == nil {
		t.Fatal("Check without a client certificate succeeded; mTLS must refuse it")
	}
	s.stop(t)
}
