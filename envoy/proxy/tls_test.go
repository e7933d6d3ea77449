package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert is a certificate and its key, made at test time (no key is
// committed).
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCert(t *testing.T, cn string, parent *testCert, mod func(*x509.Certificate)) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent.cert, parent.key
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, key: key}
}

func (c *testCert) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

func (c *testCert) tlsCert(t *testing.T) tls.Certificate {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c.pem(), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// pki is a server certificate for 127.0.0.1 and a client CA with two clients,
// plus a client from a CA the listener does not trust.
type pki struct {
	serverCA, server, clientCA, alice, bob, mallory *testCert
	dir                                             string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.serverCA = newTestCert(t, "server CA", nil, nil)
	p.server = newTestCert(t, "app.example.com", p.serverCA, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.DNSNames = []string{"app.example.com"}
		u, _ := url.Parse("spiffe://example.com/front-proxy")
		c.URIs = []*url.URL{u}
	})
	p.clientCA = newTestCert(t, "client CA", nil, nil)
	client := func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }
	p.alice = newTestCert(t, "alice", p.clientCA, func(c *x509.Certificate) {
		client(c)
		c.DNSNames = []string{"alice.clients.example.com"}
	})
	p.bob = newTestCert(t, "bob", p.clientCA, client)
	p.mallory = newTestCert(t, "mallory", newTestCert(t, "other CA", nil, nil), client)
	kb, err := x509.MarshalECPrivateKey(p.server.key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"server.crt":    p.server.pem(),
		"server.key":    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		"client-ca.crt": p.clientCA.pem(),
	} {
		if err := os.WriteFile(filepath.Join(p.dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// socket is a DownstreamTlsContext transport socket with the pki's files.
func (p *pki) socket(ctx M) M {
	common := M{"tls_certificates": L{M{
		"certificate_chain": M{"filename": filepath.Join(p.dir, "server.crt")},
		"private_key":       M{"filename": filepath.Join(p.dir, "server.key")},
	}}}
	dc := with(M{"@type": tlsSocketType, "common_tls_context": common}, ctx)
	if vc, ok := ctx["validation_context"]; ok {
		delete(dc, "validation_context")
		common["validation_context"] = vc
	}
	return M{"name": "envoy.transport_sockets.tls", "typed_config": dc}
}

func (p *pki) trustClients() M {
	return M{"trusted_ca": M{"filename": filepath.Join(p.dir, "client-ca.crt")}}
}

// serveTLS serves a proxy on its own listener (TLS when the bootstrap says so).
func serveTLS(t *testing.T, yaml []byte, opts Options) string {
	t.Helper()
	p, err := New(yaml, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; p.Close() })
	return ln.Addr().String()
}

// get sends GET /x over TLS with an optional client certificate.
func (p *pki) get(t *testing.T, addr string, client *testCert, headers map[string]string) (*http.Response, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.serverCA.cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "app.example.com"}
	if client != nil {
		// Always send it: Go's client would otherwise keep back a certificate
		// whose issuer the server did not list as acceptable.
		c := client.tlsCert(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", "https://"+addr+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := tr.RoundTrip(req)
	if err == nil {
		_ = body(t, resp)
	}
	return resp, err
}

func certOf(t *testing.T, encoded string) *x509.Certificate {
	t.Helper()
	p, err := url.PathUnescape(encoded)
	if err != nil {
		t.Fatalf("source.certificate %q is not URL-encoded: %v", encoded, err)
	}
	b, rest := pem.Decode([]byte(p))
	if b == nil || b.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("source.certificate is not exactly one PEM certificate: %q", p)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLSListener: a TLS listener with a client CA asks for a client
// certificate; with include_peer_certificate the CheckRequest carries the
// client's leaf as URL-encoded PEM, and x-forwarded-proto and :scheme say
// https (CheckRequestUtils::setAttrContextPeer, conn_manager_utility.cc).
func TestTLSListener(t *testing.T) {
	p := newPKI(t)
	authz := startAuthz(t, nil)
	app := startUpstream(t)
	opts := Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": app.addr()}}
	yaml := func(tlsCtx M, authzExtra M) []byte {
		return config{filters: L{extAuthz(authzExtra)}, tls: p.socket(tlsCtx)}.yaml(t)
	}

	t.Run("a client certificate reaches the check as the URL-encoded PEM of the leaf", func(t *testing.T) {
		addr := serveTLS(t, yaml(M{"validation_context": p.trustClients()}, M{"include_peer_certificate": true, "include_tls_session": true}), opts)
		resp, err := p.get(t, addr, p.alice, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET with alice's certificate: %v %v", resp, err)
		}
		a := authz.last(t).GetAttributes()
		if got := certOf(t, a.GetSource().GetCertificate()); !got.Equal(p.alice.cert) {
			t.Errorf("source.certificate is %q, want alice's", got.Subject)
		}
		if got := a.GetSource().GetPrincipal(); got != "alice.clients.example.com" {
			t.Errorf("source.principal = %q, want the DNS SAN", got)
		}
		if got := a.GetDestination().GetPrincipal(); got != "spiffe://example.com/front-proxy" {
			t.Errorf("destination.principal = %q, want the listener certificate's URI SAN", got)
		}
		if got := a.GetTlsSession().GetSni(); got != "app.example.com" {
			t.Errorf("tls_session.sni = %q", got)
		}
		h := a.GetRequest().GetHttp().GetHeaders()
		if h["x-forwarded-proto"] != "https" || h[":scheme"] != "https" || a.GetRequest().GetHttp().GetScheme() != "https" {
			t.Errorf("x-forwarded-proto %q, :scheme %q, scheme %q; want https",
				h["x-forwarded-proto"], h[":scheme"], a.GetRequest().GetHttp().GetScheme())
		}
	})
	t.Run("without a client certificate the request goes on with no certificate", func(t *testing.T) {
		addr := serveTLS(t, yaml(M{"validation_context": p.trustClients()}, M{"include_peer_certificate": true}), opts)
		resp, err := p.get(t, addr, nil, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET without a certificate: %v %v", resp, err)
		}
		if a := authz.last(t).GetAttributes(); a.GetSource().GetCertificate() != "" || a.GetSource().GetPrincipal() != "" {
			t.Errorf("source = %v, want no certificate and no principal", a.GetSource())
		}
	})
	t.Run("without include_peer_certificate only the principal is sent", func(t *testing.T) {
		addr := serveTLS(t, yaml(M{"validation_context": p.trustClients()}, nil), opts)
		if _, err := p.get(t, addr, p.bob, nil); err != nil {
			t.Fatal(err)
		}
		a := authz.last(t).GetAttributes()
		if a.GetSource().GetCertificate() != "" || a.GetSource().GetPrincipal() != "CN=bob" || a.GetTlsSession() != nil {
			t.Errorf("source = %v, tls_session = %v; want principal CN=bob only", a.GetSource(), a.GetTlsSession())
		}
	})
	t.Run("a certificate from a CA the listener does not trust fails the handshake", func(t *testing.T) {
		addr := serveTLS(t, yaml(M{"validation_context": p.trustClients()}, M{"include_peer_certificate": true}), opts)
		before := len(authz.requests())
		if resp, err := p.get(t, addr, p.mallory, nil); err == nil {
			t.Fatalf("mallory's certificate was accepted: %d", resp.StatusCode)
		}
		if len(authz.requests()) != before {
			t.Error("the check ran for a connection that failed its handshake")
		}
	})
	t.Run("require_client_certificate refuses a connection without one", func(t *testing.T) {
		addr := serveTLS(t, yaml(M{"validation_context": p.trustClients(), "require_client_certificate": true}, nil), opts)
		if resp, err := p.get(t, addr, nil, nil); err == nil {
			t.Fatalf("a connection without a certificate was accepted: %d", resp.StatusCode)
		}
		if resp, err := p.get(t, addr, p.bob, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("bob: %v %v", resp, err)
		}
	})
	t.Run("trust_chain_verification ACCEPT_UNTRUSTED takes a self-signed client certificate (RFC 8705 §2.2)", func(t *testing.T) {
		addr := serveTLS(t, yaml(M{"validation_context": M{"trust_chain_verification": "ACCEPT_UNTRUSTED"}}, M{"include_peer_certificate": true}), opts)
		self := newTestCert(t, "self-signed client", nil, nil)
		if resp, err := p.get(t, addr, self, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("self-signed: %v %v", resp, err)
		}
		if got := certOf(t, authz.last(t).GetAttributes().GetSource().GetCertificate()); !got.Equal(self.cert) {
			t.Errorf("source.certificate is %q", got.Subject)
		}
	})
}

// TestForwardedProto pins x-forwarded-proto (and so DPoP's htu) to what
// ConnectionManagerUtility::mutateRequestHeaders does: an edge proxy
// (use_remote_address: true, no trusted hops) overwrites a client's value with
// the connection's scheme; with xff_num_trusted_hops > 0 the previous hop's
// value is kept, as it is without use_remote_address; an absent value is set
// from the connection.
func TestForwardedProto(t *testing.T) {
	tests := []struct {
		name    string
		hcm     M
		sent    string // the client's x-forwarded-proto; "" sends none
		want    string
		wantXFF bool
	}{
		{"an edge proxy overwrites a client's https over plain http", M{"use_remote_address": true}, "https", "http", true},
		{"an edge proxy sets http when the client sent nothing", M{"use_remote_address": true}, "", "http", true},
		{"behind one trusted hop the load balancer's https is kept", M{"use_remote_address": true, "xff_num_trusted_hops": 1}, "https", "https", true},
		{"behind one trusted hop an absent value is set from the connection", M{"use_remote_address": true, "xff_num_trusted_hops": 1}, "", "http", true},
		{"not an edge proxy (the default): a client's value is kept", nil, "https", "https", false},
		{"not an edge proxy: an absent value is set from the connection", nil, "", "http", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			app := startUpstream(t)
			f := startProxy(t, config{
				hcm:     tc.hcm,
				filters: L{extAuthz(nil)},
			}.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": app.addr()}})
			h := http.Header{}
			if tc.sent != "" {
				h.Set("X-Forwarded-Proto", tc.sent)
			}
			if resp := f.do(t, "GET", "/x", h); resp.StatusCode != 200 || body(t, resp) != "upstream ok" {
				t.Fatalf("status %d", resp.StatusCode)
			}
			hr := authz.last(t).GetAttributes().GetRequest().GetHttp()
			if got := hr.GetHeaders()["x-forwarded-proto"]; got != tc.want {
				t.Errorf("x-forwarded-proto at the check = %q, want %q", got, tc.want)
			}
			if hr.GetScheme() != tc.want || hr.GetHeaders()[":scheme"] != tc.want {
				t.Errorf("scheme = %q, :scheme = %q; want %q (HTTP/1 :scheme follows a valid x-forwarded-proto)", hr.GetScheme(), hr.GetHeaders()[":scheme"], tc.want)
			}
			if got := app.last(t).Header.Get("X-Forwarded-Proto"); got != tc.want {
				t.Errorf("x-forwarded-proto upstream = %q, want %q", got, tc.want)
			}
			if _, ok := hr.GetHeaders()["x-forwarded-for"]; ok != tc.wantXFF {
				t.Errorf("x-forwarded-for present = %v, want %v", ok, tc.wantXFF)
			}
		})
	}
	t.Run("an edge proxy over TLS overwrites a client's http with https", func(t *testing.T) {
		p := newPKI(t)
		authz := startAuthz(t, nil)
		app := startUpstream(t)
		addr := serveTLS(t, config{
			hcm:     M{"use_remote_address": true},
			filters: L{extAuthz(nil)},
			tls:     p.socket(nil),
		}.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": app.addr()}})
		if _, err := p.get(t, addr, nil, map[string]string{"X-Forwarded-Proto": "http"}); err != nil {
			t.Fatal(err)
		}
		if got := authz.last(t).GetAttributes().GetRequest().GetHttp().GetHeaders()["x-forwarded-proto"]; got != "https" {
			t.Errorf("x-forwarded-proto = %q, want https", got)
		}
	})
}

// TestForwardClientCert follows mutateXfccRequestHeader: by default (SANITIZE)
// a client's x-forwarded-client-cert never passes, so nobody can forge the
// header stepup-authz reads with mtls.certificate_from: xfcc.
func TestForwardClientCert(t *testing.T) {
	p := newPKI(t)
	forged := `Cert="forged"`
	sum := sha256.Sum256(p.alice.cert.Raw)
	hash := "Hash=" + hex.EncodeToString(sum[:])
	tests := []struct {
		name   string
		hcm    M
		client *testCert
		check  func(t *testing.T, xfcc string, present bool)
	}{
		{"SANITIZE (the default) removes a client's header", nil, p.alice, func(t *testing.T, v string, ok bool) {
			if ok {
				t.Errorf("x-forwarded-client-cert = %q, want none", v)
			}
		}},
		{"SANITIZE_SET with cert replaces it with this connection's certificate", M{"forward_client_cert_details": "SANITIZE_SET", "set_current_client_cert_details": M{"cert": true}}, p.alice,
			func(t *testing.T, v string, _ bool) {
				want := "By=spiffe://example.com/front-proxy;" + hash + `;Cert="` + urlEncodedPEM(p.alice.cert) + `"`
				if v != want {
					t.Errorf("x-forwarded-client-cert = %q, want %q", v, want)
				}
			}},
		{"SANITIZE_SET with Istio's gateway details writes Cert, Subject, URI and DNS in Envoy's order", M{"forward_client_cert_details": "SANITIZE_SET",
			"set_current_client_cert_details": M{"subject": true, "cert": true, "uri": true, "dns": true}}, p.alice,
			func(t *testing.T, v string, _ bool) {
				want := "By=spiffe://example.com/front-proxy;" + hash + `;Cert="` + urlEncodedPEM(p.alice.cert) + `";Subject="CN=alice";URI=;DNS=alice.clients.example.com`
				if v != want {
					t.Errorf("x-forwarded-client-cert = %q, want %q", v, want)
				}
			}},
		{"SANITIZE_SET without a client certificate removes a client's header", M{"forward_client_cert_details": "SANITIZE_SET", "set_current_client_cert_details": M{"cert": true}}, nil,
			func(t *testing.T, v string, ok bool) {
				if ok {
					t.Errorf("x-forwarded-client-cert = %q, want none", v)
				}
			}},
		{"APPEND_FORWARD appends this hop's element to the client's", M{"forward_client_cert_details": "APPEND_FORWARD"}, p.alice,
			func(t *testing.T, v string, _ bool) {
				if want := forged + ",By=spiffe://example.com/front-proxy;" + hash; v != want {
					t.Errorf("x-forwarded-client-cert = %q, want %q", v, want)
				}
			}},
		{"FORWARD_ONLY keeps a client's header on an mTLS connection", M{"forward_client_cert_details": "FORWARD_ONLY"}, p.alice,
			func(t *testing.T, v string, _ bool) {
				if v != forged {
					t.Errorf("x-forwarded-client-cert = %q, want the client's", v)
				}
			}},
		{"FORWARD_ONLY removes it without a client certificate", M{"forward_client_cert_details": "FORWARD_ONLY"}, nil,
			func(t *testing.T, v string, ok bool) {
				if ok {
					t.Errorf("x-forwarded-client-cert = %q, want none", v)
				}
			}},
		{"ALWAYS_FORWARD_ONLY keeps a client's header even without a certificate", M{"forward_client_cert_details": "ALWAYS_FORWARD_ONLY"}, nil,
			func(t *testing.T, v string, _ bool) {
				if v != forged {
					t.Errorf("x-forwarded-client-cert = %q, want the client's", v)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			app := startUpstream(t)
			addr := serveTLS(t, config{
				hcm:     tc.hcm,
				filters: L{extAuthz(nil)},
				tls:     p.socket(M{"validation_context": p.trustClients()}),
			}.yaml(t), Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": app.addr()}})
			if _, err := p.get(t, addr, tc.client, map[string]string{"X-Forwarded-Client-Cert": forged}); err != nil {
				t.Fatal(err)
			}
			v, ok := authz.last(t).GetAttributes().GetRequest().GetHttp().GetHeaders()["x-forwarded-client-cert"]
			tc.check(t, v, ok)
			if up := app.last(t).Header.Get("X-Forwarded-Client-Cert"); up != v {
				t.Errorf("upstream saw %q, the check %q", up, v)
			}
		})
	}
}

// TestTLSConfigRefusals: what the proxy does not implement in a TLS listener
// is refused by name, never ignored.
func TestTLSConfigRefusals(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name    string
		cfg     config
		wantErr []string
	}{
		{"a DownstreamTlsContext field the proxy does not implement", config{tls: p.socket(M{"session_timeout": "10s"})},
			[]string{"transport_socket.typed_config.session_timeout", "not supported"}},
		{"a validation_context field the proxy does not implement", config{tls: p.socket(M{"validation_context": with(p.trustClients(), M{"crl": M{"inline_string": "x"}})})},
			[]string{"validation_context.crl", "not supported"}},
		{"require_client_certificate without a validation context", config{tls: p.socket(M{"require_client_certificate": true})},
			[]string{"require_client_certificate needs a validation_context"}},
		{"a missing certificate file", config{tls: M{"name": "tls", "typed_config": M{"@type": tlsSocketType, "common_tls_context": M{"tls_certificates": L{M{
			"certificate_chain": M{"filename": filepath.Join(p.dir, "absent.crt")}, "private_key": M{"filename": filepath.Join(p.dir, "server.key")}}}}}}},
			[]string{"tls_certificates[0].certificate_chain", "absent.crt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg.yaml(t), Options{})
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestEdgeRequestHeaders follows mutateRequestHeaders for an edge request
// (use_remote_address: true; no address is internal since Envoy 1.33): the
// client's x-request-id is replaced unless preserve_external_request_id,
// x-envoy-external-address is the client's address (with trusted hops, the
// one their XFF names), and what a client says about itself as a mesh
// service (x-envoy-downstream-service-cluster, which becomes the
// CheckRequest's source.service) is dropped. Without use_remote_address all
// of it is kept.
func TestEdgeRequestHeaders(t *testing.T) {
	sent := http.Header{
		"X-Request-Id":                       {"client-chosen"},
		"X-Forwarded-For":                    {"203.0.113.7"},
		"X-Envoy-Downstream-Service-Cluster": {"payments"},
		"X-Envoy-External-Address":           {"198.51.100.1"},
	}
	tests := []struct {
		name                     string
		hcm                      M
		requestID, external, xff string
		service                  string
	}{
		{"an edge replaces the request id and names the connection's address", M{"use_remote_address": true}, "", "127.0.0.1", "203.0.113.7,127.0.0.1", ""},
		{"an edge behind one trusted hop names the address that hop saw", M{"use_remote_address": true, "xff_num_trusted_hops": 1}, "", "203.0.113.7", "203.0.113.7,127.0.0.1", ""},
		{"preserve_external_request_id keeps the client's request id", M{"use_remote_address": true, "preserve_external_request_id": true}, "client-chosen", "127.0.0.1", "203.0.113.7,127.0.0.1", ""},
		{"not an edge: everything the client sent is kept", nil, "client-chosen", "198.51.100.1", "203.0.113.7", "payments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			app := startUpstream(t)
			f := startProxy(t, config{hcm: tc.hcm, filters: L{extAuthz(nil)}}.yaml(t),
				Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": app.addr()}})
			if resp := f.do(t, "GET", "/x", sent); resp.StatusCode != 200 || body(t, resp) != "upstream ok" {
				t.Fatalf("status %d", resp.StatusCode)
			}
			a := authz.last(t).GetAttributes()
			h := a.GetRequest().GetHttp().GetHeaders()
			if tc.requestID != "" && h["x-request-id"] != tc.requestID || tc.requestID == "" && (h["x-request-id"] == "client-chosen" || h["x-request-id"] == "") {
				t.Errorf("x-request-id = %q, want %q", h["x-request-id"], tc.requestID)
			}
			if h["x-envoy-external-address"] != tc.external || h["x-forwarded-for"] != tc.xff {
				t.Errorf("x-envoy-external-address %q, x-forwarded-for %q; want %q, %q", h["x-envoy-external-address"], h["x-forwarded-for"], tc.external, tc.xff)
			}
			if got := a.GetSource().GetService(); got != tc.service {
				t.Errorf("source.service = %q, want %q", got, tc.service)
			}
		})
	}
}

// TestTLSListenerNegotiatesHTTP2: with alpn_protocols [h2, http/1.1] a client
// that offers h2 speaks HTTP/2 (as curl does by default), and the Check says
// so; without h2 in the list it stays on HTTP/1.1.
func TestTLSListenerNegotiatesHTTP2(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name  string
		alpn  L
		proto string
	}{
		{"h2 offered and listed: HTTP/2", L{"h2", "http/1.1"}, "HTTP/2"},
		{"h2 offered but not listed: HTTP/1.1", L{"http/1.1"}, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authz := startAuthz(t, nil)
			app := startUpstream(t)
			sock := p.socket(nil)
			sock["typed_config"].(M)["common_tls_context"].(M)["alpn_protocols"] = tc.alpn
			addr := serveTLS(t, config{filters: L{extAuthz(nil)}, tls: sock}.yaml(t),
				Options{ClusterAddrs: map[string]string{"authz": authz.addr, "app": app.addr()}})
			roots := x509.NewCertPool()
			roots.AddCert(p.serverCA.cert)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.example.com"}, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/x")
			if err != nil {
				t.Fatal(err)
			}
			if b := body(t, resp); resp.StatusCode != 200 || b != "upstream ok" {
				t.Fatalf("%d %q", resp.StatusCode, b)
			}
			if got := authz.last(t).GetAttributes().GetRequest().GetHttp().GetProtocol(); got != tc.proto || resp.Proto[:6] != tc.proto[:6] {
				t.Errorf("check protocol %q, response %q; want %s", got, resp.Proto, tc.proto)
			}
		})
	}
}
