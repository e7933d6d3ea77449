package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

// clientCert makes a real client certificate and returns its DER.
func clientCert(t *testing.T, cn string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// envoyEncode is how Envoy sends a certificate: the PEM, URL-encoded
// (Envoy's urlEncodedPemEncodedPeerCertificate escapes everything but
// unreserved characters).
func envoyEncode(der []byte) string {
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return strings.ReplaceAll(url.QueryEscape(string(p)), "+", "%20")
}

func TestPeerCertificateThumbprint(t *testing.T) {
	der := clientCert(t, "client")
	sum := sha256.Sum256(der)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	got, err := PeerCertificateThumbprint(envoyEncode(der))
	if err != nil || got != want {
		t.Fatalf("thumbprint = %q, %v; want %q", got, err, want)
	}
	if CertificateThumbprint(der) != want {
		t.Error("CertificateThumbprint differs")
	}
	for _, tc := range []struct{ name, in string }{
		{"no certificate", ""},
		{"not PEM", "hello"},
		{"a PEM private key is not a certificate", url.PathEscape("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
		{"a bad escape", "%zz"},
		{"over 32 KiB", strings.Repeat("A", MaxCertificateBytes+1)},
	} {
		if got, err := PeerCertificateThumbprint(tc.in); err == nil {
			t.Errorf("%s: thumbprint %q, want an error", tc.name, got)
		}
	}
	if _, err := PeerCertificateThumbprint(""); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("empty: %v, want ErrNoCertificate", err)
	}
}

func TestXFCCCertificateThumbprint(t *testing.T) {
	der := clientCert(t, "client")
	other := clientCert(t, "other")
	want := CertificateThumbprint(der)
	cert := envoyEncode(der)
	for _, tc := range []struct{ name, header string }{
		{"Envoy's element with Hash, Cert and a quoted Subject", `By=spiffe://cluster.local/ns/default/sa/api;Hash=abc;Cert="` + cert + `";Subject="CN=client,O=Example";URI=spiffe://cluster.local/ns/default/sa/client`},
		{"an unquoted Cert", `Hash=abc;Cert=` + cert},
		{"the key in another case", `cert="` + cert + `"`},
		{"a quoted Subject holding ',' and ';' and an escaped quote", `Subject="CN=a\"b,O=x;y";Cert="` + cert + `"`},
	} {
		got, err := XFCCCertificateThumbprint(tc.header)
		if err != nil || got != want {
			t.Errorf("%s: thumbprint = %q, %v; want %q", tc.name, got, err, want)
		}
	}
	for _, tc := range []struct{ name, header string }{
		{"no header", ""},
		{"an element without Cert", `Hash=abc;Subject="CN=client"`},
		{"two elements (a chain of proxies) are not guessed between", `Cert="` + envoyEncode(other) + `",Cert="` + cert + `"`},
		{"two Cert keys in one element", `Cert="` + cert + `";Cert="` + envoyEncode(other) + `"`},
		{"an unterminated quote", `Cert="` + cert},
		{"a pair without =", `Cert`},
		{"a Cert that is not PEM", `Cert=hello`},
	} {
		if got, err := XFCCCertificateThumbprint(tc.header); err == nil {
			t.Errorf("%s: thumbprint %q, want an error", tc.name, got)
		}
	}
}
