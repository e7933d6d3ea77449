// Package oidcprovider runs node-oidc-provider, a certified OpenID Provider,
// and a relying party built on oauth4webapi (an independent OAuth client)
// for interoperability tests. Neither was written here: the tests that use
// them prove that stepup-authz understands what real software produces
// (opaque tokens and their introspection answers, RFC 9068 JWT access
// tokens, DPoP-bound tokens and proofs).
//
// node/provider.mjs says what the provider is configured with. Start needs
// node (≥ 20) and the fixture's npm packages: `.ci/run` installs them with
// `npm ci` in node/; Start does the same when node_modules is missing.
package oidcprovider

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Resources the provider issues access tokens for (RFC 8707 resource indicators).
const (
	// ResourceOpaque gets opaque (reference) access tokens.
	ResourceOpaque = "https://api.example.com"
	// ResourceJWT gets RFC 9068 JWT access tokens (ES256) with acr, amr and auth_time.
	ResourceJWT = "https://jwt.example.com"
	// ResourceLightweight gets JWT access tokens (RS256) without acr, amr and
	// auth_time, which introspection still returns (Keycloak's lightweight tokens).
	ResourceLightweight = "https://lightweight.example.com"
)

// Resource-server clients that may call the introspection endpoint.
const (
	IntrospectBasicID     = "rs-basic"
	IntrospectBasicSecret = "rs-basic-secret"
	IntrospectPostID      = "rs-post"
	IntrospectPostSecret  = "rs-post-secret"
)

// Provider is a running node-oidc-provider.
type Provider struct {
	// Issuer is the provider's issuer identifier, http://127.0.0.1:PORT.
	Issuer string
	rp     string
	client *http.Client
}

// Options tune the provider.
type Options struct {
	// AccessTokenTTL is the access tokens' lifetime; 0 means an hour.
	AccessTokenTTL time.Duration
}

// Start runs a provider for the test and stops it when the test ends.
func Start(t testing.TB, opts Options) *Provider {
	t.Helper()
	dir := nodeDir()
	if err := install(dir); err != nil {
		t.Fatalf("oidcprovider: %v", err)
	}
	cmd := exec.Command("node", "provider.mjs")
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if opts.AccessTokenTTL > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("ACCESS_TOKEN_TTL=%d", int(opts.AccessTokenTTL.Seconds())))
	}
	// The provider exits when its stdin closes, so it never outlives the test process.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedWriter{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("oidcprovider: start node: %v (node ≥ 20 must be on PATH)", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	type ready struct{ Issuer, RP string }
	lines := make(chan ready, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			var r ready
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				lines <- r
			}
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case r, ok := <-lines:
		if !ok || r.Issuer == "" {
			t.Fatalf("oidcprovider: provider did not start: %s", stderr.String())
		}
		return &Provider{Issuer: r.Issuer, rp: r.RP, client: &http.Client{Timeout: 20 * time.Second}}
	case <-time.After(30 * time.Second):
		t.Fatalf("oidcprovider: provider did not start within 30s: %s", stderr.String())
	}
	return nil
}

// Login is an end-user login finished at the provider, as the test says it happened.
type Login struct {
	Sub string   `json:"sub,omitempty"`
	ACR string   `json:"acr,omitempty"`
	AMR []string `json:"amr,omitempty"`
	// Age is how long ago the user authenticated (auth_time = now - Age), whole seconds.
	Age time.Duration `json:"-"`
	// Resource selects the access token's kind (ResourceOpaque, ResourceJWT, ResourceLightweight).
	Resource string `json:"resource,omitempty"`
	// Scope requested; "" means "openid payouts:write".
	Scope string `json:"scope,omitempty"`
	// ACRValues is the acr_values request parameter (RFC 9470 §4); the provider records it
	// but the login's acr is the test's.
	ACRValues string `json:"acr_values,omitempty"`
	// DPoP, when set, is the algorithm of a DPoP key oauth4webapi generates; the
	// access token is then bound to it (cnf.jkt).
	DPoP string `json:"dpop,omitempty"`
}

// Tokens is the token endpoint's answer.
type Tokens struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	IDToken     string `json:"id_token"`
	// DPoPKey names the DPoP key (held by the relying party) the token is bound to.
	DPoPKey string `json:"dpop_key"`
}

// Login runs the authorization code flow with PKCE (oauth4webapi as the client),
// finishing the login with the given facts, and returns the tokens.
func (p *Provider) Login(ctx context.Context, l Login) (*Tokens, error) {
	body := struct {
		Login
		Age int64 `json:"age"`
	}{l, int64(l.Age / time.Second)}
	var out Tokens
	return &out, p.call(ctx, "login", body, &out)
}

// ClientCredentials gets a machine token for client "app" (sub == client_id).
func (p *Provider) ClientCredentials(ctx context.Context, resource, scope, dpop string) (*Tokens, error) {
	var out Tokens
	return &out, p.call(ctx, "client_credentials", map[string]string{"resource": resource, "scope": scope, "dpop": dpop}, &out)
}

// Introspect asks the provider's introspection endpoint about token, as client
// IntrospectBasicID, and returns the answer as oauth4webapi parsed it.
func (p *Provider) Introspect(ctx context.Context, token string) (map[string]any, error) {
	var out map[string]any
	return out, p.call(ctx, "introspect", map[string]string{"token": token}, &out)
}

// Revoke revokes token at the provider (RFC 7009).
func (p *Provider) Revoke(ctx context.Context, token string) error {
	return p.call(ctx, "revoke", map[string]string{"token": token}, nil)
}

// Response is what a protected-resource request got back.
type Response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// Request sends a protected-resource request with oauth4webapi: a Bearer
// token, or, with dpopKey, a DPoP token and a proof made by oauth4webapi
// (which also retries once on a use_dpop_nonce challenge).
func (p *Provider) Request(ctx context.Context, accessToken, dpopKey, method, url string) (*Response, error) {
	var out Response
	return &out, p.call(ctx, "request", map[string]string{
		"access_token": accessToken, "dpop_key": dpopKey, "method": method, "url": url,
	}, &out)
}

// Proof is a DPoP proof made by jose with the relying party's key dpopKey.
func (p *Provider) Proof(ctx context.Context, dpopKey, htm, htu, accessToken, nonce string) (proof, jkt string, err error) {
	var out struct{ Proof, JKT string }
	err = p.call(ctx, "proof", map[string]string{
		"dpop_key": dpopKey, "htm": htm, "htu": htu, "access_token": accessToken, "nonce": nonce,
	}, &out)
	return out.Proof, out.JKT, err
}

func (p *Provider) call(ctx context.Context, op string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.rp+"/"+op, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("oidcprovider %s: %w", op, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("oidcprovider %s: %w", op, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("oidcprovider %s: %d %s", op, res.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// nodeDir is the fixture's node/ directory, next to this file.
func nodeDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "node")
}

var installMu sync.Mutex

// install runs `npm ci` when node_modules is missing. Test binaries of
// several packages may start at once, so a file lock serialises them.
func install(dir string) error {
	installMu.Lock()
	defer installMu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err == nil {
		return nil
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "stepup-oidcprovider-npm.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err == nil {
		return nil
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lockedWriter collects the provider's stderr for error messages.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
