package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
)

// mtlsEdge is the shipped envoy-mtls.yaml in front of the real binary: a dev
// IdP, stepup-authz, the app, and the TLS files the YAML names under
// /etc/envoy/tls/ written to a temporary directory instead.
type mtlsEdge struct {
	idp     *devidp.IdP
	server  *server
	app     *upstream
	base    string // https://127.0.0.1:port
	ca      *certPair
	alice   *certPair // a client certificate from the trusted client CA
	bob     *certPair // another one
	mallory *certPair // from a CA the listener does not trust
}

const mtlsConfig = `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
`

// mtlsBootstrap reads envoy-mtls.yaml with its ports moved and its TLS files
// replaced by the ones in dir; each edit (old, new) must match exactly once.
func mtlsBootstrap(t *testing.T, dir, listen, grpcAddr, appAddr string, edits ...[2]string) []byte {
	t.Helper()
	b := string(shippedBootstrap(t, "envoy-mtls.yaml", map[int]string{8443: listen, 9191: grpcAddr, 8081: appAddr}))
	if n := strings.Count(b, "filename: /etc/envoy/tls/"); n != 3 {
		t.Fatalf("envoy-mtls.yaml reads %d files from /etc/envoy/tls/, want 3 (server.crt, server.key, client-ca.crt)", n)
	}
	for _, e := range edits {
		if strings.Count(b, e[0]) != 1 {
			t.Fatalf("edit %q matches %d times in envoy-mtls.yaml, want once", e[0], strings.Count(b, e[0]))
		}
		b = strings.Replace(b, e[0], e[1], 1)
	}
	return []byte(strings.ReplaceAll(b, "filename: /etc/envoy/tls/", "filename: "+dir+"/"))
}

func startMTLSEdge(t *testing.T, runProxy proxyRunner) *mtlsEdge {
	t.Helper()
	dir := t.TempDir()
	e := &mtlsEdge{idp: startIdP(t), app: &upstream{}}
	e.ca = issue(t, "server and client CA", nil, false)
	e.ca.write(t, dir, "client-ca")
	issue(t, "app.example.com", e.ca, true).write(t, dir, "server")
	e.alice = issue(t, "alice", e.ca, false)
	e.bob = issue(t, "bob", e.ca, false)
	e.mallory = issue(t, "mallory", issue(t, "another CA", nil, false), false)

	appSrv := httptest.NewServer(e.app)
	t.Cleanup(appSrv.Close)
	e.server = startServer(t, e.idp, mtlsConfig)
	listen := freeAddr(t)
	base := runProxy(t, mtlsBootstrap(t, dir, listen, e.server.grpcAddr, appSrv.Listener.Addr().String()), listen)
	e.base = "https://" + strings.TrimPrefix(base, "http://")
	return e
}

// client is an HTTPS client that trusts the edge's CA and presents cert (nil:
// none). It always sends the certificate it has, even one whose issuer the
// server did not ask for.
func (e *mtlsEdge) client(t *testing.T, cert *certPair) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.cert)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		c := tls.Certificate{Certificate: [][]byte{cert.der}, PrivateKey: cert.key}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// send makes one request and reads the whole answer.
func send(t *testing.T, c *http.Client, method, target string, headers map[string]string) (reply, error) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}, nil
}

func mustSend(t *testing.T, c *http.Client, method, target string, headers map[string]string) reply {
	t.Helper()
	r, err := send(t, c, method, target, headers)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return r
}

// certBound mints an aal2 token bound to cert (RFC 8705 cnf["x5t#S256"]).
func certBound(t *testing.T, idp *devidp.IdP, cert *certPair) string {
	t.Helper()
	tok, err := idp.Mint(devidp.Claims{"sub": "client-7", "acr": "aal2", "auth_time": time.Now().Unix(),
		"cnf": map[string]any{"x5t#S256": token.CertificateThumbprint(cert.der)}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestCertificateBoundTokensThroughEnvoyMTLS: the full RFC 8705 flow through
// the front proxy on the shipped envoy-mtls.yaml and the real binary.
func TestCertificateBoundTokensThroughEnvoyMTLS(t *testing.T) {
	walkCertificateBound(t, goProxy)
}

// TestCertificateBoundTokensThroughRealEnvoy runs the same cases through real
// Envoy when a binary is available.
func TestCertificateBoundTokensThroughRealEnvoy(t *testing.T) {
	if envoyBinary() == "" {
		t.Skip("no Envoy binary (set ENVOY_BIN or put envoy on PATH): the certificate-bound flow ran through the Go front proxy only")
	}
	walkCertificateBound(t, realEnvoy)
}

func walkCertificateBound(t *testing.T, runProxy proxyRunner) {
	e := startMTLSEdge(t, runProxy)
	payout := e.base + "/api/payout-destination"
	bound := certBound(t, e.idp, e.alice)
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	const invalid = `Bearer error="invalid_token"`

	t.Run("the bound token with its certificate reaches the app", func(t *testing.T) {
		before := e.app.count()
		r := mustSend(t, e.client(t, e.alice), "POST", payout, bearer(bound))
		if r.status != 200 || e.app.count() != before+1 {
			t.Fatalf("got %s", r)
		}
		if got := e.app.last().Get("X-Stepup-Sub"); got != "client-7" {
			t.Errorf("x-stepup-sub upstream = %q", got)
		}
		if got := e.app.last().Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("x-forwarded-proto upstream = %q, want https", got)
		}
	})
	t.Run("the bound token with another certificate from the same CA is 401 invalid_token", func(t *testing.T) {
		before := e.app.count()
		r := mustSend(t, e.client(t, e.bob), "POST", payout, bearer(bound))
		if r.status != 401 || r.body != `{"error":"unauthorized"}` || r.header.Get("WWW-Authenticate") != invalid {
			t.Fatalf("got %s", r)
		}
		if e.app.count() != before {
			t.Error("the request reached the app")
		}
		waitFor(t, "the server's log naming binding_mismatch", func() bool { return strings.Contains(e.server.stderr.String(), "binding_mismatch") })
	})
	t.Run("the bound token without a certificate is 401 invalid_token", func(t *testing.T) {
		r := mustSend(t, e.client(t, nil), "POST", payout, bearer(bound))
		if r.status != 401 || r.body != `{"error":"unauthorized"}` || r.header.Get("WWW-Authenticate") != invalid {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("a forged x-forwarded-client-cert naming the bound certificate does not help", func(t *testing.T) {
		forged := `Hash=x;Cert="` + url.PathEscape(string(pemOf(e.alice))) + `"`
		r := mustSend(t, e.client(t, nil), "POST", payout, map[string]string{"Authorization": "Bearer " + bound, "X-Forwarded-Client-Cert": forged})
		if r.status != 401 || r.header.Get("WWW-Authenticate") != invalid {
			t.Fatalf("got %s", r)
		}
	})
	t.Run("a certificate from an untrusted CA fails the TLS handshake", func(t *testing.T) {
		before := e.app.count()
		if r, err := send(t, e.client(t, e.mallory), "POST", payout, bearer(bound)); err == nil {
			t.Fatalf("mallory's certificate was accepted: %s", r)
		}
		if e.app.count() != before {
			t.Error("the request reached the app")
		}
	})
	t.Run("an unbound token on the sender_constraint: mtls route gets the mtls challenge", func(t *testing.T) {
		plain, err := e.idp.UserToken("user-1", "aal2", 0)
		if err != nil {
			t.Fatal(err)
		}
		r := mustSend(t, e.client(t, e.alice), "POST", payout, bearer(plain))
		if r.status != 401 || r.body != `{"error":"unauthorized"}` ||
			r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token", error_description="a certificate-bound token is required"` {
			t.Fatalf("got %s", r)
		}
		// ... while a route without the constraint takes it.
		if r := mustSend(t, e.client(t, e.alice), "GET", e.base+"/api/orders", bearer(plain)); r.status != 200 {
			t.Fatalf("an unbound token on the default route: %s", r)
		}
	})
	t.Run("the same bound token as Bearer over plain HTTP is denied", func(t *testing.T) {
		listen := freeAddr(t)
		plainBase := goProxy(t, shippedBootstrap(t, "envoy.yaml", map[int]string{8000: listen, 9191: e.server.grpcAddr, 8081: "127.0.0.1:1"}), listen)
		r := mustSend(t, http.DefaultClient, "POST", plainBase+"/api/marketing-preferences", bearer(bound))
		if r.status != 401 || r.body != `{"error":"unauthorized"}` || r.header.Get("WWW-Authenticate") != invalid {
			t.Fatalf("got %s", r)
		}
	})
}

func pemOf(c *certPair) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der})
}

// plaintextEdits turns envoy-mtls.yaml's listener into a plaintext one (its
// transport_socket block removed) and drops include_peer_certificate, which
// has nothing to send there: the edge of TestDPoPHTUFollowsForwardedProto.
func plaintextEdits(t *testing.T) [][2]string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "envoy", "envoy-mtls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	from, to := strings.Index(s, "    - transport_socket:\n"), strings.Index(s, "      filters:\n")
	if from < 0 || to < from {
		t.Fatal("envoy-mtls.yaml: no transport_socket block before the filters")
	}
	return [][2]string{
		{s[from : to+len("      filters:\n")], "    - filters:\n"},
		{"              include_peer_certificate: true\n", ""},
	}
}

// TestDPoPHTUFollowsForwardedProto: the URL a DPoP proof's htu must name takes
// its scheme from x-forwarded-proto, which the HCM sets before ext_authz runs
// (ConnectionManagerUtility::mutateRequestHeaders, conn_manager_utility.cc):
// at an edge (use_remote_address: true, xff_num_trusted_hops: 0) a client's
// value is overwritten with the connection's scheme, so a client cannot make
// a proof for https pass over plain http; behind one trusted hop (a load
// balancer that terminates TLS) the hop's value is kept.
func TestDPoPHTUFollowsForwardedProto(t *testing.T) {
	idp := startIdP(t)
	srv := startServer(t, idp, mtlsConfig)
	app := &upstream{}
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	dir := t.TempDir()
	ca := issue(t, "server CA", nil, false)
	ca.write(t, dir, "client-ca")
	issue(t, "app.example.com", ca, true).write(t, dir, "server")
	key, err := dpopproof.NewKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	tok := dpopToken(t, idp, key)

	edge := func(t *testing.T, edits ...[2]string) (host string, c *http.Client) {
		listen := freeAddr(t)
		base := goProxy(t, mtlsBootstrap(t, dir, listen, srv.grpcAddr, appSrv.Listener.Addr().String(), edits...), listen)
		roots := x509.NewCertPool()
		roots.AddCert(ca.cert)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}
		t.Cleanup(tr.CloseIdleConnections)
		return strings.TrimPrefix(base, "http://"), &http.Client{Transport: tr}
	}
	// call sends GET /api/api-keys (sender_constraint: any) to scheme://host
	// with a fresh proof whose htu names htuScheme://host.
	call := func(t *testing.T, c *http.Client, scheme, host, htuScheme, xfp string) reply {
		t.Helper()
		proof, err := key.Proof("GET", htuScheme+"://"+host+"/api/api-keys", tok, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		h := map[string]string{"Authorization": "DPoP " + tok, "DPoP": proof}
		if xfp != "" {
			h["X-Forwarded-Proto"] = xfp
		}
		return mustSend(t, c, "GET", scheme+"://"+host+"/api/api-keys", h)
	}
	badProof := func(r reply) bool {
		return r.status == 401 && r.body == `{"error":"invalid_dpop_proof"}` &&
			strings.HasPrefix(r.header.Get("WWW-Authenticate"), `DPoP error="invalid_dpop_proof"`)
	}

	t.Run("the TLS edge: htu is https even when the client says http", func(t *testing.T) {
		host, c := edge(t)
		if r := call(t, c, "https", host, "https", "http"); r.status != 200 {
			t.Fatalf("an https proof over TLS with a client's x-forwarded-proto: http: %s", r)
		}
		if r := call(t, c, "https", host, "http", "http"); !badProof(r) {
			t.Fatalf("an http proof over TLS: %s", r)
		}
	})
	t.Run("a plaintext edge: a client's x-forwarded-proto: https does not survive", func(t *testing.T) {
		host, c := edge(t, plaintextEdits(t)...)
		before := strings.Count(srv.stderr.String(), "detail=proof_htu")
		if r := call(t, c, "http", host, "https", "https"); !badProof(r) {
			t.Fatalf("an https proof over plain http claiming https: %s", r)
		}
		waitFor(t, "the server's log naming the htu rule", func() bool {
			return strings.Count(srv.stderr.String(), "detail=proof_htu") > before
		})
		if r := call(t, c, "http", host, "http", "https"); r.status != 200 {
			t.Fatalf("an http proof over plain http: %s", r)
		}
	})
	t.Run("behind one trusted hop: the load balancer's x-forwarded-proto: https is kept", func(t *testing.T) {
		host, c := edge(t, append(plaintextEdits(t), [2]string{"xff_num_trusted_hops: 0", "xff_num_trusted_hops: 1"})...)
		if r := call(t, c, "http", host, "https", "https"); r.status != 200 {
			t.Fatalf("an https proof behind a TLS-terminating hop: %s", r)
		}
		// Without the header the connection's scheme (http) is what counts.
		if r := call(t, c, "http", host, "https", ""); !badProof(r) {
			t.Fatalf("an https proof with no x-forwarded-proto: %s", r)
		}
		if r := call(t, c, "http", host, "http", ""); r.status != 200 {
			t.Fatalf("an http proof with no x-forwarded-proto: %s", r)
		}
	})
}

// TestValidateRefusesForgeableClientCertHeader: `validate --envoy` with a
// config that reads x-forwarded-client-cert refuses an Envoy that passes a
// client's own copy of that header on.
func TestValidateRefusesForgeableClientCertHeader(t *testing.T) {
	cfg := writeFile(t, "config.yaml", `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
mtls: { certificate_from: xfcc }
`)
	if code, out, stderr := run(t, nil, "validate", "--config", cfg, "--envoy", "../envoy/envoy-mtls.yaml"); code != 0 {
		t.Fatalf("shipped envoy-mtls.yaml: exit %d\n%s%s", code, out, stderr)
	}
	src, err := os.ReadFile("../envoy/envoy-mtls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	forgeable := writeFile(t, "envoy.yaml", strings.Replace(string(src), "forward_client_cert_details: SANITIZE\n", "forward_client_cert_details: ALWAYS_FORWARD_ONLY\n", 1))
	code, _, stderr := run(t, nil, "validate", "--config", cfg, "--envoy", forgeable)
	if code != 1 || !strings.Contains(stderr, "forward_client_cert_details: ALWAYS_FORWARD_ONLY passes on an x-forwarded-client-cert the client wrote itself") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 naming forward_client_cert_details", code, stderr)
	}
}

// TestCertificateBoundTokensThroughXFCC: the way Istio's ingress gateway and
// Envoy Gateway deliver the client certificate, which never set
// include_peer_certificate: envoy-mtls.yaml with the certificate written into
// x-forwarded-client-cert instead (SANITIZE_SET with Istio's gateway details:
// Cert, Subject, URI, DNS) and the server on mtls.certificate_from: xfcc.
func TestCertificateBoundTokensThroughXFCC(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, "server and client CA", nil, false)
	ca.write(t, dir, "client-ca")
	issue(t, "app.example.com", ca, true).write(t, dir, "server")
	alice, bob := issue(t, "alice", ca, false), issue(t, "bob", ca, false)
	idp := startIdP(t)
	app := &upstream{}
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	srv := startServer(t, idp, mtlsConfig+"mtls: { certificate_from: xfcc }\n")
	listen := freeAddr(t)
	base := goProxy(t, mtlsBootstrap(t, dir, listen, srv.grpcAddr, appSrv.Listener.Addr().String(),
		[2]string{"              include_peer_certificate: true\n", ""},
		[2]string{"forward_client_cert_details: SANITIZE\n", "forward_client_cert_details: SANITIZE_SET\n          set_current_client_cert_details: { subject: true, cert: true, uri: true, dns: true }\n"},
	), listen)
	e := &mtlsEdge{ca: ca}
	payout := "https://" + strings.TrimPrefix(base, "http://") + "/api/payout-destination"
	bound := certBound(t, idp, alice)
	forgedAlice := `Hash=x;Cert="` + url.PathEscape(string(pemOf(alice))) + `"`

	if r := mustSend(t, e.client(t, alice), "POST", payout, map[string]string{"Authorization": "Bearer " + bound}); r.status != 200 {
		t.Fatalf("alice's token from alice's connection: %s", r)
	}
	if h := app.last().Get("X-Forwarded-Client-Cert"); !strings.Contains(h, "Cert=") || strings.Contains(h, ",") {
		t.Errorf("the app saw x-forwarded-client-cert %q, want one element with Cert", h)
	}
	for _, tc := range []struct {
		name    string
		client  *certPair
		headers map[string]string
	}{
		{"from bob's connection", bob, nil},
		{"without a certificate", nil, nil},
		{"without a certificate, with a forged header naming alice's", nil, map[string]string{"X-Forwarded-Client-Cert": forgedAlice}},
		{"from bob's connection, with a forged header naming alice's", bob, map[string]string{"X-Forwarded-Client-Cert": forgedAlice}},
	} {
		t.Run("alice's token "+tc.name+" is 401 invalid_token", func(t *testing.T) {
			h := map[string]string{"Authorization": "Bearer " + bound}
			for k, v := range tc.headers {
				h[k] = v
			}
			r := mustSend(t, e.client(t, tc.client), "POST", payout, h)
			if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
				t.Fatalf("got %s", r)
			}
		})
	}
}
