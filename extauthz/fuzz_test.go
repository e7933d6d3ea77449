package extauthz_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Fuzz targets for the whole Check path. Committed seeds live in
// testdata/fuzz/<target>; CI runs each briefly (.ci/run), e.g.
//
//	go test -run='^$' -fuzz='^FuzzCheck$' -fuzztime=60s ./extauthz

// fuzzIssuer and fuzzNow are fixed, and the key deterministic (Ed25519 signatures
// are too), so the valid tokens below are the same on every run and committed seeds
// that carry them keep verifying.
const fuzzIssuer = "https://issuer.fuzz.example"

var fuzzNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const fuzzConfig = `
issuers:
  - issuer: "https://issuer.fuzz.example"
    audiences: ["https://api.example.com"]
    acr_aliases: { "urn:example:mfa": aal2 }
    amr_levels: { hwk: aal3 }
policy:
  default: {}
  routes:
    - name: payout
      match: { path_prefix: /api/payout, methods: [POST] }
      required_acr: aal2
      max_age: 5m
      machine_scopes: ["payouts:write"]
    - name: reports
      match: { path_prefix: /reports }
      required_acr: aal3
      mode: dry_run
    - name: public
      match: { path_prefix: /public }
      mode: "off"
    - name: admin
      match: { hosts: [admin.example.com], path_regex: "/admin/[a-z]+" }
      required_acr: aal3
    - name: mcp
      match: { path_prefix: /mcp }
      resource_path: /mcp
      required_scopes: [mcp:tools]
protected_resource: {}
`

// fuzzServer is an extauthz.Server over a real Verifier whose JWKS is served on
// loopback, and the only tokens that verify against it.
type fuzzServer struct {
	srv   *extauthz.Server
	valid []string
	// forged are valid tokens with another valid token's payload: everything but the
	// signature is right.
	forged []string
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	seed := sha256.Sum256([]byte("stepup-authz fuzz ed25519"))
	k := &devidp.Key{ID: "fuzz-ed", Alg: "EdDSA", Private: ed25519.NewKeyFromSeed(seed[:])}
	idp, err := devidp.New(audience)
	if err != nil {
		f.Fatal(err)
	}
	idp.SetKeys(k)
	idp.SetNow(func() time.Time { return fuzzNow })
	idp.Issuer = fuzzIssuer
	hs := httptest.NewServer(idp.Handler())
	f.Cleanup(hs.Close)

	cfg, err := config.Parse([]byte(fuzzConfig), nil)
	if err != nil {
		f.Fatal(err)
	}
	now := func() time.Time { return fuzzNow }
	ks := token.NewKeySets(token.KeySetOptions{Now: now})
	f.Cleanup(ks.Close)
	// The fixed issuer's keys are served on loopback.
	cfg.Issuers[0].JWKSURI = hs.URL + "/jwks.json"
	e, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{Now: now})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.WaitFirstFetch(ctx)
	fs := &fuzzServer{srv: extauthz.NewServer(e, extauthz.Options{Now: now})}
	for _, c := range []devidp.Claims{
		{"sub": "user-1", "acr": "aal2", "auth_time": fuzzNow.Unix()},
		{"sub": "user-1", "acr": "aal1", "auth_time": fuzzNow.Unix()},
		{"sub": "user-1", "acr": "aal3", "auth_time": fuzzNow.Add(-time.Hour).Unix()},
		{"sub": "svc", "client_id": "svc", "scope": "payouts:write"},
		{"sub": "user-2", "amr": []string{"hwk"}, "auth_time": fuzzNow.Unix()},
	} {
		tok, err := idp.MintWith(k, c)
		if err != nil {
			f.Fatal(err)
		}
		fs.valid = append(fs.valid, tok)
	}
	for i, tok := range fs.valid {
		a, b := strings.Split(tok, "."), strings.Split(fs.valid[(i+1)%len(fs.valid)], ".")
		fs.forged = append(fs.forged, a[0]+"."+b[1]+"."+a[2])
	}
	return fs
}

// reasons is the closed set of CONTRACT.md, "Reasons".
var reasons = func() map[string]bool {
	m := map[string]bool{}
	for _, r := range policy.Reasons {
		m[string(r)] = true
	}
	return m
}()

// check runs req through the server and asserts what must hold for any request:
// no panic; a response Envoy accepts, with an explicit status; an allow only under
// mode off, under dry_run, or with one of the valid tokens in the request; every
// client-sent x-stepup-* header overwritten or removed; denials with the contract's
// statuses and JSON bodies.
func (fs *fuzzServer) check(t *testing.T, req *authv3.CheckRequest) {
	r := fs.srv.Evaluate(context.Background(), req)
	resp := r.Response
	if resp.GetStatus() == nil {
		t.Fatal("no status: Envoy reads that as allow")
	}
	if err := resp.ValidateAll(); err != nil {
		t.Fatalf("response fails Envoy's validation: %v\n%v", err, resp)
	}
	md := resp.GetDynamicMetadata().AsMap()
	reason, _ := md["reason"].(string)
	if !reasons[reason] || reason != string(r.Decision.Reason) {
		t.Fatalf("reason %q (decision %q)", reason, r.Decision.Reason)
	}
	mode := r.Decision.Policy.EffectiveMode()
	http := req.GetAttributes().GetRequest().GetHttp()

	if r.Decision.Reason == policy.ReasonMetadataServed {
		checkMetadataServed(t, http, resp, md)
		return
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		dr := resp.GetDeniedResponse()
		if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || dr == nil {
			t.Fatalf("a denial must be PERMISSION_DENIED with a denied_response: %v", resp)
		}
		for _, h := range dr.GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" {
				checkResourceMetadata(t, h.GetHeader().GetValue())
			}
		}
		switch dr.GetStatus().GetCode() {
		case 401, 403, 500, 503:
		default:
			t.Fatalf("denied with HTTP %d", dr.GetStatus().GetCode())
		}
		if !json.Valid([]byte(dr.GetBody())) || md["decision"] != "deny" || r.Decision.Allowed() {
			t.Fatalf("denial body %q, metadata %v", dr.GetBody(), md)
		}
		return
	}

	ok := resp.GetOkResponse()
	if ok == nil || md["decision"] != "allow" {
		t.Fatalf("allowed without ok_response or with metadata %v", md)
	}
	switch {
	case r.DryRun:
		if mode != policy.ModeDryRun {
			t.Fatalf("dry-run allow under mode %q", mode)
		}
	case r.Decision.Reason == policy.ReasonModeOff:
		if mode != policy.ModeOff {
			t.Fatalf("mode_off allow under mode %q", mode)
		}
	case r.Decision.Reason == policy.ReasonAllowed:
		if r.Claims == nil || !fs.carriesValidToken(http) {
			t.Fatalf("allowed under mode %q without a valid token: %v", mode, http)
		}
	default:
		t.Fatalf("allowed with reason %q", r.Decision.Reason)
	}
	set := map[string]bool{}
	for _, h := range ok.GetHeaders() {
		set[h.GetHeader().GetKey()] = true
	}
	removed := map[string]bool{}
	for _, name := range ok.GetHeadersToRemove() {
		if set[name] || removed[name] {
			t.Fatalf("%s is set and removed, or removed twice", name)
		}
		removed[name] = true
	}
	if set[extauthz.HeaderSub] != (r.Claims != nil) {
		t.Fatalf("x-stepup-sub set %v with claims %v", set[extauthz.HeaderSub], r.Claims != nil)
	}
	for _, name := range clientHeaderNames(http) {
		if strings.HasPrefix(name, "x-stepup-") && len(name) > len("x-stepup-") && !set[name] && !removed[name] {
			t.Fatalf("client-sent %s reaches the upstream", name)
		}
	}
}

// checkMetadataServed: the RFC 9728 document only for a GET or HEAD of the
// well-known path (normalised), as a 200 denied_response with a JSON object
// whose resource is an absolute http(s) URL, and decision allow.
func checkMetadataServed(t *testing.T, http *authv3.AttributeContext_HttpRequest, resp *authv3.CheckResponse, md map[string]any) {
	t.Helper()
	method, path := http.GetMethod(), http.GetPath()
	if method == "" {
		method, path = http.GetHeaders()[":method"], http.GetHeaders()[":path"]
	}
	n, err := policy.NormalizePath(path)
	if (method != "GET" && method != "HEAD") || err != nil ||
		(n != extauthz.WellKnownResource && !strings.HasPrefix(n, extauthz.WellKnownResource+"/")) {
		t.Fatalf("metadata served for %s %q (normalised %q, %v)", method, path, n, err)
	}
	dr := resp.GetDeniedResponse()
	var doc struct{ Resource string }
	if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || dr.GetStatus().GetCode() != 200 ||
		json.Unmarshal([]byte(dr.GetBody()), &doc) != nil || md["decision"] != "allow" {
		t.Fatalf("metadata document %v", resp)
	}
	if u, err := url.Parse(doc.Resource); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		t.Fatalf("document resource %q", doc.Resource)
	}
}

// checkResourceMetadata: a challenge never carries a parameter a client could
// shape beyond the URL's authority: quotes balanced, no control characters,
// and every resource_metadata an absolute http(s) URL of the well-known path.
func checkResourceMetadata(t *testing.T, challenge string) {
	t.Helper()
	if strings.IndexFunc(challenge, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 || strings.Count(challenge, `"`)%2 != 0 {
		t.Fatalf("challenge %q", challenge)
	}
	rest := challenge
	for {
		i := strings.Index(rest, `resource_metadata="`)
		if i < 0 {
			return
		}
		rest = rest[i+len(`resource_metadata="`):]
		v := rest[:strings.IndexByte(rest, '"')]
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasPrefix(u.Path, extauthz.WellKnownResource) ||
			strings.ContainsAny(v, " ,\\") {
			t.Fatalf("resource_metadata %q in %q", v, challenge)
		}
	}
}

// clientHeaderNames lists the request's header names, lower-cased, from the map
// Envoy fills (headers) or, when that is empty, the raw header_map.
func clientHeaderNames(h *authv3.AttributeContext_HttpRequest) []string {
	var out []string
	if len(h.GetHeaders()) > 0 {
		for k := range h.GetHeaders() {
			out = append(out, strings.ToLower(k))
		}
		return out
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		out = append(out, strings.ToLower(hv.GetKey()))
	}
	return out
}

// carriesValidToken reports whether any header value holds one of the valid tokens:
// no other string can carry a signature of the fuzz key.
func (fs *fuzzServer) carriesValidToken(h *authv3.AttributeContext_HttpRequest) bool {
	var values []string
	for _, v := range h.GetHeaders() {
		values = append(values, v)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		values = append(values, hv.GetValue(), string(hv.GetRawValue()))
	}
	for _, v := range values {
		for _, tok := range fs.valid {
			if strings.Contains(v, tok) {
				return true
			}
		}
	}
	return false
}

// fuzzRequest builds a CheckRequest from fuzzed fields. "{T}" in auth is replaced by
// valid token number tok, and "{F}" by a forged one, so the fuzzer can reach the paths
// behind verification.
func (fs *fuzzServer) fuzzRequest(method, path, host, auth string, tok uint8, hk, hv string, raw bool, md []byte, ck, cv string) *authv3.CheckRequest {
	auth = strings.ReplaceAll(auth, "{T}", fs.valid[int(tok)%len(fs.valid)])
	auth = strings.ReplaceAll(auth, "{F}", fs.forged[int(tok)%len(fs.forged)])
	headers := map[string]string{":method": method, ":path": path, ":authority": host, "authorization": auth, hk: hv}
	h := &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: host}
	if raw {
		hm := &corev3.HeaderMap{}
		for k, v := range headers {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
		h.HeaderMap = hm
	} else {
		h.Headers = headers
	}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}
	if ck != "" {
		attrs.ContextExtensions = map[string]string{ck: cv}
	}
	var m map[string]any
	if json.Unmarshal(md, &m) == nil {
		if s, err := structpb.NewStruct(m); err == nil {
			attrs.RouteMetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"stepup": s}}
		}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

type fuzzSeed struct {
	method, path, host, auth string
	tok                      uint8
	hk, hv                   string
	raw                      bool
	md                       string
	ck, cv                   string
}

var fuzzSeeds = []fuzzSeed{
	{"GET", "/.well-known/oauth-protected-resource/mcp", "app.example.com", "", 0, "x-forwarded-proto", "https", false, "", "", ""},
	{"HEAD", "/x/../.well-known/oauth-protected-resource?q", "App.Example.com:443", "Bearer nope", 0, "k", "v", true, "", "", ""},
	{"POST", "/.well-known/oauth-protected-resource", "app.example.com", "", 0, "k", "v", false, "", "", ""},
	{"GET", "/mcp", `evil", x="y`, "Bearer {T}", 0, "x-forwarded-proto", "https", false, "", "", ""},
	{"GET", "/mcp/tools", "app.example.com", "Bearer {T}", 3, "x-forwarded-proto", "http", false, `{"required_scopes":"a b","resource_path":"/m"}`, "", ""},
	{"POST", "/api/payout/x", "app.example.com", "Bearer {T}", 0, "x-stepup-sub", "admin", false, "", "", ""},
	{"POST", "/api/payout", "app.example.com", "Bearer {T}", 1, "x-request-id", "r", true, "", "", ""},
	{"POST", "/api/payout", "app.example.com", "bearer   {T}", 3, "x-stepup-acr", "aal3", false, "", "", ""},
	{"GET", "/reports/q3", "app.example.com", "", 0, "X-Stepup-Dry-Run", "allowed", true, "", "", ""},
	{"GET", "/public/a", "app.example.com", "Bearer nope", 0, "x-stepup-x", "y", false, "", "", ""},
	{"GET", "/x", "app.example.com", "Bearer {T}", 2, "k", "v", false, `{"required_acr":"aal3","max_age":60}`, "", ""},
	{"GET", "/x", "app.example.com", "Bearer {T}", 0, "k", "v", false, `{"mode":"off"}`, "", ""},
	{"GET", "/x", "app.example.com", "Bearer {T}", 0, "k", "v", false, `{"requried_acr":"aal2"}`, "", ""},
	{"GET", "/x", "app.example.com", "Bearer {T}", 1, "k", "v", false, "", "required_acr", "aal2"},
	{"GET", "/x", "app.example.com", "Bearer {T},Bearer {T}", 0, "k", "v", false, "", "mode", "dry_run"},
	{"GET", "/admin/users", "ADMIN.example.com:443", "Bearer {T}", 4, "k", "v", false, "", "", ""},
	{"POST", "/api%2Fpayout", "app.example.com", "Bearer {T}", 0, "k", "v", false, "", "", ""},
	{"POST", "/api/./x/../payout?y", "app.example.com", "Bearer {T}", 1, "authorization", "Bearer {T}", true, "", "", ""},
	{"GET", "/x", "app.example.com", "Bearer {F}", 0, "k", "v", false, "", "", ""},
	{"POST", "/api/payout", "app.example.com", "Bearer {F}", 3, "x-stepup-sub", "admin", true, "", "", ""},
}

// FuzzCheck drives Check with requests built from fuzzed fields.
func FuzzCheck(f *testing.F) {
	fs := newFuzzServer(f)
	for _, s := range fuzzSeeds {
		f.Add(s.method, s.path, s.host, s.auth, s.tok, s.hk, s.hv, s.raw, []byte(s.md), s.ck, s.cv)
	}
	f.Fuzz(func(t *testing.T, method, path, host, auth string, tok uint8, hk, hv string, raw bool, md []byte, ck, cv string) {
		fs.check(t, fs.fuzzRequest(method, path, host, auth, tok, hk, hv, raw, md, ck, cv))
	})
}

// FuzzCheckRequest drives Check with arbitrary protobuf bytes, so every field of the
// CheckRequest (peer, metadata_context, header_map, ...) is fuzzed.
func FuzzCheckRequest(f *testing.F) {
	fs := newFuzzServer(f)
	for _, s := range fuzzSeeds {
		b, err := proto.Marshal(fs.fuzzRequest(s.method, s.path, s.host, s.auth, s.tok, s.hk, s.hv, s.raw, []byte(s.md), s.ck, s.cv))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req authv3.CheckRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		fs.check(t, &req)
	})
}
