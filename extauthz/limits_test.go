package extauthz_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// headersTotalling returns n header entries: the given ones plus x-filler-* up to n, counting
// the four the harness adds (:method, :path, :authority, x-request-id).
func headersTotalling(n int, given map[string]string) map[string]string {
	out := make(map[string]string, n)
	for k, v := range given {
		out[k] = v
	}
	for i := 0; len(out) < n-4; i++ {
		out[fmt.Sprintf("x-filler-%d", i)] = "v"
	}
	return out
}

func TestHeaderCountLimit(t *testing.T) {
	h := newHarness(t)
	tok := h.user(t, "aal3", 0)
	auth := map[string]string{"authorization": "Bearer " + tok, "x-stepup-sub": "admin"}

	t.Run("exactly MaxHeaders headers with a valid token is allowed", func(t *testing.T) {
		okHeaders(t, h.check(t, req{path: "/home", headers: headersTotalling(extauthz.MaxHeaders, auth)}))
	})
	t.Run("one more is an invalid token on an enforce route", func(t *testing.T) {
		resp := h.check(t, req{path: "/home", headers: headersTotalling(extauthz.MaxHeaders+1, auth)})
		expectDenied(t, resp, denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`})
		expectReason(t, resp, "deny", "token_invalid")
	})
	t.Run("raw header_map entries count too", func(t *testing.T) {
		var raw [][2]string
		raw = append(raw, [2]string{"authorization", "Bearer " + tok})
		for len(raw) <= extauthz.MaxHeaders {
			raw = append(raw, [2]string{"x-filler", "v"}) // repeats are separate entries
		}
		expectDenied(t, h.check(t, req{path: "/home", rawHeaders: raw}), denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`})
	})
	t.Run("dry_run reports it and lets the request through", func(t *testing.T) {
		set, _ := okHeaders(t, h.check(t, req{path: "/api/reports/q3", headers: headersTotalling(extauthz.MaxHeaders+1, auth)}))
		if set["x-stepup-dry-run"] != "token_invalid" {
			t.Errorf("x-stepup-dry-run = %q, want token_invalid", set["x-stepup-dry-run"])
		}
	})
	t.Run("mode off still lets it through and strips x-stepup-* headers", func(t *testing.T) {
		resp := h.check(t, req{path: "/public/x", headers: headersTotalling(extauthz.MaxHeaders+1, auth)})
		set, removed := okHeaders(t, resp)
		if len(set) != 0 || len(removed) != 1 || removed[0] != "x-stepup-sub" {
			t.Errorf("set %v, removed %v; want nothing set and x-stepup-sub removed", set, removed)
		}
	})
}

// Every forged x-stepup-* header is removed, each name once, however many the
// request repeats (raw header_map keeps repeats as separate entries).
func TestForgedIdentityHeadersAreRemovedOnceEach(t *testing.T) {
	h := newHarness(t)
	var raw [][2]string
	want := map[string]bool{}
	for i := 0; i < 5000; i++ {
		name := fmt.Sprintf("X-Stepup-Forged-%d", i%2500)
		raw = append(raw, [2]string{name, "admin"})
		want[strings.ToLower(name)] = true
	}
	raw = append(raw, [2]string{":path", "/public/x"})
	start := time.Now()
	resp := h.check(t, req{path: "/public/x", rawHeaders: raw})
	t.Logf("5000 forged headers (2500 names) answered in %v", time.Since(start))
	_, removed := okHeaders(t, resp)
	if len(removed) != len(want) {
		t.Fatalf("%d names removed, want %d (each once)", len(removed), len(want))
	}
	sort.Strings(removed)
	for i, name := range removed {
		if !want[name] || (i > 0 && removed[i-1] == name) {
			t.Fatalf("removed %q unexpectedly or twice", name)
		}
	}
}

// A token whose kid is unknown makes the server refetch the JWKS. When that fetch
// hangs, the server must still answer before the caller's deadline, and with 503
// temporarily_unavailable: it cannot judge the token (a rotated key may be on its
// way), and Envoy would turn a late answer into its own status_on_error anyway.
func TestHangingKeyRefetchAnswersBeforeTheDeadline(t *testing.T) {
	h := newAttackHarnessWith(t, token.KeySetOptions{MinRefetch: time.Millisecond})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	rotated, err := devidp.NewKey("rs-2", "RS256") // not published yet
	if err != nil {
		t.Fatal(err)
	}
	claims := devidp.Claims{"sub": "u", "acr": "aal3", "auth_time": time.Now().Unix()}
	unknown, err := h.a.MintWith(rotated, claims)
	if err != nil {
		t.Fatal(err)
	}
	known := h.token(t, claims)
	hits := h.a.JWKSHits()
	h.a.SetJWKSFault(func(http.ResponseWriter) bool {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return false
	})

	call := func(tok string, deadline time.Duration) (*authv3.CheckResponse, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		resp, err := h.client.Check(ctx, checkRequest("/home", tok))
		return resp, time.Since(start), err
	}
	resp, took, err := call(unknown, time.Second)
	if err != nil {
		t.Fatalf("Check with a hanging refetch failed after %v: %v (Envoy would answer status_on_error without our body)", took, err)
	}
	t.Logf("unknown kid, hanging JWKS, 1s deadline: %s after %v", describeResp(resp), took)
	expectDenied(t, resp, denial{503, `{"error":"temporarily_unavailable"}`, ""})
	expectReason(t, resp, "deny", "keys_unavailable")
	if h.a.JWKSHits() == hits {
		t.Error("the unknown kid did not trigger a refetch; the test proves nothing")
	}

	// A token whose key is cached does not wait for the hanging fetch.
	resp, took, err = call(known, time.Second)
	if err != nil || resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("known kid during the hanging refetch: %v %v after %v", describeResp(resp), status.Convert(err), took)
	}
}

func checkRequest(path, tok string) *authv3.CheckRequest {
	headers := map[string]string{":method": "GET", ":path": path, ":authority": "app.example.com"}
	if tok != "" {
		headers["authorization"] = "Bearer " + tok
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Host: "app.example.com", Headers: headers},
	}}}
}

func describeResp(resp *authv3.CheckResponse) string {
	if dr := resp.GetDeniedResponse(); dr != nil {
		return fmt.Sprintf("denied %d %s", dr.GetStatus().GetCode(), dr.GetBody())
	}
	return fmt.Sprintf("status %v", codes.Code(resp.GetStatus().GetCode()))
}
