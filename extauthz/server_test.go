package extauthz_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

const audience = "https://api.example.com"

// harness is a real ext_authz gRPC server on loopback, verifying tokens
// against a real JWKS served over HTTP.
type harness struct {
	idp    *devidp.IdP
	client authv3.AuthorizationClient
}

// configYAML is completed with the IdP's URL; %s appears twice.
const configYAML = `
issuers:
  - issuer: "%[1]s"
    jwks_uri: "%[1]s/jwks.json"
    audiences: ["https://api.example.com"]
    challenge_acr_values: { aal3: "urn:example:loa:3" }
  - issuer: "http://127.0.0.1:1/down"
    jwks_uri: "http://127.0.0.1:1/down/jwks.json"
    audiences: ["https://api.example.com"]
    jwt_authn_payload: jwt_payload
policy:
  default: {}
  routes:
    - name: payout-destination
      match: { path_prefix: /api/payout-destination, methods: [POST] }
      required_acr: aal2
      max_age: 5m
      machine_scopes: ["payouts:write"]
    - name: delete-account
      match: { path: /api/account, methods: [DELETE] }
      required_acr: aal2
      max_age: 60
    - name: reports
      match: { path_prefix: /api/reports }
      required_acr: aal2
      mode: dry_run
    - name: public
      match: { path_prefix: /public }
      mode: "off"
    - name: admin
      match: { path_prefix: /api/admin }
      required_acr: aal3
`

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, extauthz.Options{})
}

func newHarnessWith(t *testing.T, opts extauthz.Options) *harness {
	t.Helper()
	idp, err := devidp.New(audience)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	t.Cleanup(hs.Close)
	idp.Issuer = hs.URL

	cfg, err := config.Parse([]byte(strings.ReplaceAll(configYAML, "%[1]s", hs.URL)), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ks := token.NewKeySets(token.KeySetOptions{})
	t.Cleanup(ks.Close)
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{idp: idp, client: serveEngine(t, engine, opts)}
}

// serveEngine waits (up to 10s) for the engine's first key fetches, serves it
// over real gRPC on loopback with the codec STEPUP_TEST_CODEC selects, and
// returns a client of it. Server and connection end with the test.
func serveEngine(t testing.TB, engine *extauthz.Engine, opts extauthz.Options) authv3.AuthorizationClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine.WaitFirstFetch(ctx)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(serverCodec(t))
	authv3.RegisterAuthorizationServer(gs, extauthz.NewServer(engine, opts))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// req builds a CheckRequest the way Envoy's HTTP filter fills it.
type req struct {
	method, path, host string
	headers            map[string]string
	metadata           map[string]any
	extensions         map[string]string
	rawHeaders         [][2]string // sent as header_map (encode_raw_headers) instead of headers
	// jwtAuthn is metadata_context["envoy.filters.http.jwt_authn"], as jwt_authn's
	// payload_in_metadata leaves it.
	jwtAuthn map[string]any
	// scheme is attributes.request.http.scheme; peerCert is
	// attributes.source.certificate (URL-encoded PEM).
	scheme, peerCert string
}

func (h *harness) check(t *testing.T, r req) *authv3.CheckResponse {
	t.Helper()
	if r.method == "" {
		r.method = "GET"
	}
	if r.host == "" {
		r.host = "app.example.com"
	}
	httpReq := &authv3.AttributeContext_HttpRequest{Method: r.method, Path: r.path, Host: r.host, Protocol: "HTTP/1.1", Scheme: r.scheme}
	if r.rawHeaders != nil {
		hm := &corev3.HeaderMap{}
		for _, kv := range r.rawHeaders {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
		httpReq.HeaderMap = hm
	} else {
		headers := map[string]string{":method": r.method, ":path": r.path, ":authority": r.host, "x-request-id": "rid-1"}
		for k, v := range r.headers {
			headers[k] = v
		}
		httpReq.Headers = headers
	}
	attrs := &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: httpReq},
		ContextExtensions: r.extensions,
	}
	if r.peerCert != "" {
		attrs.Source = &authv3.AttributeContext_Peer{Certificate: r.peerCert}
	}
	if r.metadata != nil {
		s, err := structpb.NewStruct(r.metadata)
		if err != nil {
			t.Fatal(err)
		}
		attrs.RouteMetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"stepup": s}}
	}
	if r.jwtAuthn != nil {
		s, err := structpb.NewStruct(r.jwtAuthn)
		if err != nil {
			t.Fatal(err)
		}
		attrs.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": s}}
	}
	resp, err := h.client.Check(context.Background(), &authv3.CheckRequest{Attributes: attrs})
	if err != nil {
		t.Fatalf("Check returned a gRPC error (Envoy would drop our answer): %v", err)
	}
	if resp.GetStatus() == nil {
		t.Fatal("response has no status: Envoy treats that as allow")
	}
	if err := resp.ValidateAll(); err != nil {
		t.Fatalf("response fails Envoy's proto validation: %v", err)
	}
	return resp
}

func (h *harness) token(t *testing.T, c devidp.Claims) string {
	t.Helper()
	tok, err := h.idp.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (h *harness) user(t *testing.T, acr string, age time.Duration) string {
	t.Helper()
	return h.token(t, devidp.Claims{"sub": "user-1", "acr": acr, "auth_time": time.Now().Add(-age).Unix()})
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

// denial is the expected wire form of a denied response.
type denial struct {
	status    int32
	body      string
	challenge string // "" means no WWW-Authenticate header at all
}

func expectDenied(t *testing.T, resp *authv3.CheckResponse, want denial) {
	t.Helper()
	if got := resp.GetStatus().GetCode(); got != int32(codes.PermissionDenied) {
		t.Fatalf("status = %v, want PERMISSION_DENIED", codes.Code(got))
	}
	dr := resp.GetDeniedResponse()
	if dr == nil {
		t.Fatalf("no denied_response: %v", resp)
	}
	if got := int32(dr.GetStatus().GetCode()); got != want.status {
		t.Errorf("HTTP status = %d, want %d", got, want.status)
	}
	if dr.GetBody() != want.body {
		t.Errorf("body = %s, want %s", dr.GetBody(), want.body)
	}
	headers := map[string]string{}
	for _, h := range dr.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: append_action %v, want OVERWRITE_IF_EXISTS_OR_ADD", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		if _, dup := headers[h.GetHeader().GetKey()]; dup {
			t.Errorf("header %s set twice", h.GetHeader().GetKey())
		}
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if headers["content-type"] != "application/json" {
		t.Errorf("content-type = %q, want application/json", headers["content-type"])
	}
	if headers["cache-control"] != "no-store" {
		t.Errorf("cache-control = %q, want no-store", headers["cache-control"])
	}
	got, has := headers["www-authenticate"]
	switch {
	case want.challenge == "" && has:
		t.Errorf("www-authenticate = %q, want none", got)
	case want.challenge != "" && got != want.challenge:
		t.Errorf("www-authenticate =\n  %s\nwant\n  %s", got, want.challenge)
	}
	if !json.Valid([]byte(dr.GetBody())) {
		t.Errorf("body is not JSON: %s", dr.GetBody())
	}
}

func metadataOf(t *testing.T, resp *authv3.CheckResponse) map[string]any {
	t.Helper()
	return resp.GetDynamicMetadata().AsMap()
}

func expectReason(t *testing.T, resp *authv3.CheckResponse, decision, reason string) {
	t.Helper()
	md := metadataOf(t, resp)
	if md["decision"] != decision || md["reason"] != reason {
		t.Errorf("dynamic_metadata = %v, want decision=%s reason=%s", md, decision, reason)
	}
}

const (
	stepUpAAL2Body = `{"error":"step_up_required","required_acr":"aal2","max_age":300}`
	stepUpAAL2     = `Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal2", max_age="300"`
	stepUpFresh    = `Bearer error="insufficient_user_authentication", error_description="A more recent authentication is required", acr_values="aal2", max_age="300"`
)

func TestDecisionTable(t *testing.T) {
	h := newHarness(t)
	payout := func(headers map[string]string) req {
		return req{method: "POST", path: "/api/payout-destination", headers: headers}
	}
	downIssuerToken := func() string {
		// Signed by a real key, claiming the issuer whose JWKS never answered.
		return h.token(t, devidp.Claims{"iss": "http://127.0.0.1:1/down", "sub": "u", "acr": "aal2", "auth_time": time.Now().Unix()})
	}
	cases := []struct {
		name   string
		req    req
		want   denial
		reason string
	}{
		{"no bearer token is 401 with a bare Bearer challenge", payout(nil),
			denial{401, `{"error":"unauthorized"}`, "Bearer"}, "token_missing"},
		{"a Basic credential counts as no token", payout(map[string]string{"authorization": "Basic dXNlcjpwYXNz"}),
			denial{401, `{"error":"unauthorized"}`, "Bearer"}, "token_missing"},
		{"a token with a broken signature is invalid_token", payout(bearer(h.user(t, "aal2", 0) + "x")),
			denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}, "token_invalid"},
		{"an expired token is invalid_token", payout(bearer(h.token(t, devidp.Claims{"sub": "u", "acr": "aal2",
			"auth_time": time.Now().Unix(), "exp": time.Now().Add(-time.Hour).Unix()}))),
			denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}, "token_invalid"},
		{"a token for another audience is invalid_token", payout(bearer(h.token(t, devidp.Claims{"sub": "u", "aud": "https://other.example.com",
			"acr": "aal2", "auth_time": time.Now().Unix()}))),
			denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}, "token_invalid"},
		{"two Authorization values joined by Envoy are invalid", payout(map[string]string{"authorization": "Bearer " + h.user(t, "aal2", 0) + ",Bearer " + h.user(t, "aal2", 0)}),
			denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`}, "token_invalid"},
		{"aal1 token on an aal2 route is asked to step up", payout(bearer(h.user(t, "aal1", 0))),
			denial{401, stepUpAAL2Body, stepUpAAL2}, "acr_too_low"},
		{"a token with an acr no level knows is asked to step up", payout(bearer(h.user(t, "urn:unknown:loa", 0))),
			denial{401, stepUpAAL2Body, stepUpAAL2}, "acr_too_low"},
		{"a token without acr is asked to step up", payout(bearer(h.token(t, devidp.Claims{"sub": "u", "auth_time": time.Now().Unix()}))),
			denial{401, stepUpAAL2Body, stepUpAAL2}, "acr_missing"},
		{"an aal2 token authenticated 6 minutes ago is too old", payout(bearer(h.user(t, "aal2", 6*time.Minute))),
			denial{401, stepUpAAL2Body, stepUpFresh}, "auth_too_old"},
		{"an aal2 token without auth_time must authenticate again", payout(bearer(h.token(t, devidp.Claims{"sub": "u", "acr": "aal2"}))),
			denial{401, stepUpAAL2Body, stepUpFresh}, "auth_time_missing"},
		{"a machine token without the route's scope is 403 naming it", payout(bearer(h.token(t, devidp.Claims{"sub": "svc", "client_id": "svc", "scope": "payouts:read"}))),
			denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="payouts:write"`}, "scope_missing"},
		{"a machine token on a step-up route that grants machines nothing is 403 without scope",
			req{method: "DELETE", path: "/api/account", headers: bearer(h.token(t, devidp.Claims{"sub": "svc", "client_id": "svc", "scope": "payouts:write"}))},
			denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope"`}, "scope_missing"},
		{"a client-credentials grant is a machine token too", payout(bearer(h.token(t, devidp.Claims{"sub": "svc-x", "gty": "client-credentials"}))),
			denial{403, `{"error":"insufficient_scope"}`, `Bearer error="insufficient_scope", scope="payouts:write"`}, "scope_missing"},
		{"an issuer whose keys were never obtained is 503, not 401", payout(bearer(downIssuerToken())),
			denial{503, `{"error":"temporarily_unavailable"}`, ""}, "keys_unavailable"},
		{"route metadata naming an unknown acr level is a policy error",
			req{path: "/x", headers: bearer(h.user(t, "aal3", 0)), metadata: map[string]any{"required_acr": "aal9"}},
			denial{500, `{"error":"policy_error"}`, ""}, "policy_error"},
		{"route metadata with max_age that is not a duration is a policy error",
			req{path: "/x", headers: bearer(h.user(t, "aal3", 0)), metadata: map[string]any{"max_age": "five minutes"}},
			denial{500, `{"error":"policy_error"}`, ""}, "policy_error"},
		{"a misspelled key in our metadata namespace is a policy error, not ignored",
			req{path: "/x", headers: bearer(h.user(t, "aal1", 0)), metadata: map[string]any{"requried_acr": "aal2"}},
			denial{500, `{"error":"policy_error"}`, ""}, "policy_error"},
		{"a context extension with a bad max_age is a policy error",
			req{path: "/x", headers: bearer(h.user(t, "aal3", 0)), extensions: map[string]string{"max_age": "-5"}},
			denial{500, `{"error":"policy_error"}`, ""}, "policy_error"},
		{"an encoded slash in a path that config routes must match is a policy error",
			req{method: "POST", path: "/api%2Fpayout-destination", headers: bearer(h.user(t, "aal3", 0))},
			denial{500, `{"error":"policy_error"}`, ""}, "policy_error"},
		{"the challenge carries the issuer's own acr_values for the level",
			req{path: "/api/admin/users", headers: bearer(h.user(t, "aal2", 0))},
			denial{401, `{"error":"step_up_required","required_acr":"aal3"}`,
				`Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="urn:example:loa:3"`}, "acr_too_low"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.check(t, tc.req)
			expectDenied(t, resp, tc.want)
			expectReason(t, resp, "deny", tc.reason)
		})
	}
}

func okHeaders(t *testing.T, resp *authv3.CheckResponse) (map[string]string, []string) {
	t.Helper()
	if got := resp.GetStatus().GetCode(); got != int32(codes.OK) {
		t.Fatalf("status = %v, want OK; denied with %s", codes.Code(got), resp.GetDeniedResponse().GetBody())
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatal("no ok_response")
	}
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: append_action %v, want OVERWRITE_IF_EXISTS_OR_ADD", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	for _, name := range ok.GetHeadersToRemove() {
		if _, both := set[name]; both {
			t.Errorf("%s is both set and removed; Envoy removes after setting", name)
		}
	}
	return set, ok.GetHeadersToRemove()
}

func TestAllowSetsIdentityHeadersAndStripsForgedOnes(t *testing.T) {
	h := newHarness(t)
	authTime := time.Now().Add(-time.Minute).Unix()
	tok := h.token(t, devidp.Claims{"sub": "user-7", "acr": "aal3", "auth_time": authTime})
	headers := bearer(tok)
	headers["x-stepup-sub"] = "admin"         // forged: must be overwritten
	headers["x-stepup-acr"] = "aal3"          // forged: must be overwritten
	headers["x-stepup-dry-run"] = "allowed"   // forged: must be removed
	headers["x-stepup-impersonate"] = "admin" // forged: must be removed
	resp := h.check(t, req{method: "POST", path: "/api/payout-destination?x=1", headers: headers})
	set, removed := okHeaders(t, resp)
	want := map[string]string{"x-stepup-sub": "user-7", "x-stepup-acr": "aal3", "x-stepup-auth-time": strconv.FormatInt(authTime, 10)}
	for k, v := range want {
		if set[k] != v {
			t.Errorf("%s = %q, want %q", k, set[k], v)
		}
	}
	if len(set) != len(want) {
		t.Errorf("set headers %v, want exactly %v", set, want)
	}
	for _, name := range []string{"x-stepup-dry-run", "x-stepup-impersonate"} {
		if !contains(removed, name) {
			t.Errorf("client-sent %s not removed (removed: %v)", name, removed)
		}
	}
	expectReason(t, resp, "allow", "allowed")
	if md := metadataOf(t, resp); md["name"] != "payout-destination" {
		t.Errorf("dynamic_metadata name = %v, want payout-destination", md["name"])
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestAllowedCases(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name    string
		req     req
		wantACR string // "" means the header must be absent
	}{
		{"aal2 token authenticated 4 minutes ago passes the payout route",
			req{method: "POST", path: "/api/payout-destination", headers: bearer(h.user(t, "aal2", 4*time.Minute))}, "aal2"},
		{"aal3 token satisfies an aal2 route",
			req{method: "POST", path: "/api/payout-destination", headers: bearer(h.user(t, "aal3", 0))}, "aal3"},
		{"a machine token with every scope passes",
			req{method: "POST", path: "/api/payout-destination", headers: bearer(h.token(t, devidp.Claims{"sub": "svc", "client_id": "svc", "scope": "payouts:read payouts:write"}))}, ""},
		{"GET on the payout prefix is not the POST route and falls to the empty default",
			req{method: "GET", path: "/api/payout-destination", headers: bearer(h.user(t, "aal1", time.Hour))}, "aal1"},
		{"a token with an unknown acr passes a route without requirements and carries its raw acr",
			req{path: "/home", headers: bearer(h.user(t, "urn:unknown:loa", 0))}, "urn:unknown:loa"},
		{"a token without acr passes a route without requirements, with no acr header",
			req{path: "/home", headers: bearer(h.token(t, devidp.Claims{"sub": "u"}))}, ""},
		{"ES256 signatures verify", req{path: "/home", headers: bearer(h.signedWith(t, "es-1"))}, "aal2"},
		{"EdDSA signatures verify", req{path: "/home", headers: bearer(h.signedWith(t, "ed-1"))}, "aal2"},
		{"lower-case bearer scheme is accepted", req{path: "/home", headers: map[string]string{"authorization": "bearer " + h.user(t, "aal1", 0)}}, "aal1"},
		{"raw header_map with one Authorization is read", req{path: "/home",
			rawHeaders: [][2]string{{":path", "/home"}, {"authorization", "Bearer " + h.user(t, "aal2", 0)}}}, "aal2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.check(t, tc.req)
			set, _ := okHeaders(t, resp)
			if got, has := set["x-stepup-acr"]; tc.wantACR == "" && has || tc.wantACR != "" && got != tc.wantACR {
				t.Errorf("x-stepup-acr = %q (present %v), want %q", got, has, tc.wantACR)
			}
			if set["x-stepup-sub"] == "" {
				t.Error("x-stepup-sub missing on allow")
			}
			expectReason(t, resp, "allow", "allowed")
		})
	}
}

func (h *harness) signedWith(t *testing.T, kid string) string {
	t.Helper()
	tok, err := h.idp.MintWith(h.idp.Key(kid), devidp.Claims{"sub": "u", "acr": "aal2", "auth_time": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRawHeaderMapWithTwoAuthorizationEntriesIsInvalid(t *testing.T) {
	h := newHarness(t)
	tok := h.user(t, "aal3", 0)
	resp := h.check(t, req{path: "/home", rawHeaders: [][2]string{{"authorization", "Bearer " + tok}, {"Authorization", "Bearer " + tok}}})
	expectDenied(t, resp, denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`})
}

func TestModes(t *testing.T) {
	h := newHarness(t)
	t.Run("dry_run allows a would-be denial and tells the upstream why", func(t *testing.T) {
		headers := bearer(h.user(t, "aal1", 0))
		headers["x-stepup-dry-run"] = "allowed" // forged
		resp := h.check(t, req{path: "/api/reports/q3", headers: headers})
		set, _ := okHeaders(t, resp)
		if set["x-stepup-dry-run"] != "acr_too_low" {
			t.Errorf("x-stepup-dry-run = %q, want acr_too_low", set["x-stepup-dry-run"])
		}
		expectReason(t, resp, "allow", "acr_too_low")
	})
	t.Run("dry_run without a token allows and reports token_missing", func(t *testing.T) {
		resp := h.check(t, req{path: "/api/reports/q3"})
		set, _ := okHeaders(t, resp)
		if set["x-stepup-dry-run"] != "token_missing" || set["x-stepup-sub"] != "" {
			t.Errorf("headers %v, want only x-stepup-dry-run=token_missing", set)
		}
	})
	t.Run("off allows without a token and still strips forged identity headers", func(t *testing.T) {
		resp := h.check(t, req{path: "/public/logo.png", headers: map[string]string{"x-stepup-sub": "admin"}})
		set, removed := okHeaders(t, resp)
		if len(set) != 0 || !contains(removed, "x-stepup-sub") {
			t.Errorf("set %v removed %v, want nothing set and x-stepup-sub removed", set, removed)
		}
		expectReason(t, resp, "allow", "mode_off")
	})
	t.Run("enforce with no requirement still needs a valid token", func(t *testing.T) {
		resp := h.check(t, req{path: "/home"})
		expectDenied(t, resp, denial{401, `{"error":"unauthorized"}`, "Bearer"})
	})
}

func TestPolicySources(t *testing.T) {
	h := newHarness(t)
	aal1 := h.user(t, "aal1", 0)
	aal2Old := h.user(t, "aal2", 10*time.Minute)
	cases := []struct {
		name   string
		req    req
		want   denial // status 0 means allow
		reason string
	}{
		{"route metadata sets the requirement",
			req{path: "/x", headers: bearer(aal1), metadata: map[string]any{"required_acr": "aal2", "max_age": 300.0}},
			denial{401, stepUpAAL2Body, stepUpAAL2}, "acr_too_low"},
		{"route metadata max_age as a duration string",
			req{path: "/x", headers: bearer(aal1), metadata: map[string]any{"required_acr": "aal2", "max_age": "5m"}},
			denial{401, stepUpAAL2Body, stepUpAAL2}, "acr_too_low"},
		{"context extensions set the requirement with string values",
			req{path: "/x", headers: bearer(aal1), extensions: map[string]string{"required_acr": "aal2", "max_age": "300", "other_filter_key": "x"}},
			denial{401, stepUpAAL2Body, stepUpAAL2}, "acr_too_low"},
		{"fields merge across sources: acr from metadata, max_age from context extensions",
			req{path: "/x", headers: bearer(aal2Old), metadata: map[string]any{"required_acr": "aal2"}, extensions: map[string]string{"max_age": "300"}},
			denial{401, stepUpAAL2Body, stepUpFresh}, "auth_too_old"},
		{"route metadata wins over context extensions field by field",
			req{path: "/x", headers: bearer(aal1), metadata: map[string]any{"required_acr": "aal1"}, extensions: map[string]string{"required_acr": "aal3"}},
			denial{}, "allowed"},
		{"route metadata clears a config route's max_age with an empty string",
			req{method: "POST", path: "/api/payout-destination", headers: bearer(aal2Old), metadata: map[string]any{"max_age": ""}},
			denial{}, "allowed"},
		{"a config route applies when Envoy sends no metadata",
			req{method: "DELETE", path: "/api/account", headers: bearer(aal2Old)},
			denial{401, `{"error":"step_up_required","required_acr":"aal2","max_age":60}`,
				`Bearer error="insufficient_user_authentication", error_description="A more recent authentication is required", acr_values="aal2", max_age="60"`}, "auth_too_old"},
		{"config route paths are matched after normalisation",
			req{method: "POST", path: "/api//x/../payout-destination?from=app", headers: bearer(aal1)},
			denial{401, stepUpAAL2Body, stepUpAAL2}, "acr_too_low"},
		{"config route hosts, paths and methods must all match",
			req{method: "DELETE", path: "/api/account/", headers: bearer(aal1)},
			denial{}, "allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.check(t, tc.req)
			if tc.want.status == 0 {
				okHeaders(t, resp)
				expectReason(t, resp, "allow", tc.reason)
				return
			}
			expectDenied(t, resp, tc.want)
			expectReason(t, resp, "deny", tc.reason)
		})
	}
}

// The JWKS endpoint is fetched over real HTTP; make sure the harness really
// served it rather than something short-circuiting verification.
func TestKeysComeFromTheServedJWKS(t *testing.T) {
	h := newHarness(t)
	if h.idp.JWKSHits() == 0 {
		t.Fatal("the JWKS endpoint was never fetched")
	}
	other, err := devidp.NewKey("rs-1", "RS256") // same kid, different key
	if err != nil {
		t.Fatal(err)
	}
	tok, err := h.idp.MintWith(other, devidp.Claims{"sub": "u", "acr": "aal3", "auth_time": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	resp := h.check(t, req{path: "/home", headers: bearer(tok)})
	expectDenied(t, resp, denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`})
}
