package extauthz_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// An IdP that publishes a new key and signs with it at once, right after the server
// fetched its keys: over real gRPC with a 1s deadline (800ms to answer), the new kid is
// answered 503 temporarily_unavailable (retryable) while the refetch waits for the end
// of its rate-limit window, never 401 (which would send the user to sign in), and
// verifies once the refetch scheduled for that moment has run.
func TestRotatedKeyInsideTheRefetchWindow(t *testing.T) {
	next, err := devidp.NewKey("rs-2", "RS256")
	if err != nil {
		t.Fatal(err)
	}
	// The rate limit's window, shortened from 5s; still far longer than the few
	// milliseconds from the harness's first fetch to the first Check below.
	const window = 3 * time.Second
	h := newAttackHarnessWith(t, token.KeySetOptions{MinRefetch: window})
	h.a.SetKeys(next, h.a.Key("rs-1"))
	tok, err := h.a.MintWith(next, devidp.Claims{"sub": "u", "acr": "aal1"})
	if err != nil {
		t.Fatal(err)
	}
	fetches := h.a.JWKSHits()
	call := func() *authv3.CheckResponse {
		// Envoy's default is 200ms; 1s keeps a loaded test machine from missing it.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := h.client.Check(ctx, checkRequest("/home", tok))
		if err != nil {
			t.Fatalf("Check failed at the gRPC level (Envoy would answer status_on_error): %v", err)
		}
		return resp
	}
	unavailable := 0
	giveUp := time.Now().Add(10 * window)
	for {
		resp := call()
		if resp.GetStatus().GetCode() == int32(codes.OK) {
			break
		}
		expectDenied(t, resp, denial{503, `{"error":"temporarily_unavailable"}`, ""})
		expectReason(t, resp, "deny", "keys_unavailable")
		if unavailable++; time.Now().After(giveUp) {
			t.Fatalf("the new kid still does not verify after %d Checks", unavailable)
		}
		time.Sleep(10 * time.Millisecond) // a client retrying a 503; not a timing assertion

	}
	if unavailable == 0 {
		t.Error("the first Check came after the window ended; the test proves nothing")
	}
	if n := h.a.JWKSHits() - fetches; n != 1 {
		t.Errorf("%d JWKS fetches for the new kid, want 1", n)
	}
	t.Logf("new kid: %d answers 503, then allowed after one refetch", unavailable)
}

// A JWKS key the server refuses (RSA under 2048 bits) is not silently missing: a token
// signed by it is 401 invalid_token as before, but logged with detail key_refused, not
// unknown_kid.
func TestTokenOfARefusedKey(t *testing.T) {
	h := newAttackHarnessWith(t, token.KeySetOptions{MinRefetch: time.Millisecond})
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := &devidp.Key{ID: "weak-1024", Alg: "RS256", Private: priv}
	h.a.SetKeys(h.a.Key("rs-1"), weak)
	tok, err := h.a.MintWith(weak, devidp.Claims{"sub": "u", "acr": "aal1"})
	if err != nil {
		t.Fatal(err)
	}
	from := len(h.logs.String())
	resp := h.check(t, req{path: "/home", headers: map[string]string{"authorization": "Bearer " + tok}})
	expectDenied(t, resp, denial{401, `{"error":"unauthorized"}`, `Bearer error="invalid_token"`})
	expectReason(t, resp, "deny", "token_invalid")
	if got := loggedDetail(t, h.logs.String()[from:]); got != token.DetailKeyRefused {
		t.Errorf("logged detail %q, want %q", got, token.DetailKeyRefused)
	}
}
