//go:build !serveronly

package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepup-authz/stepup-authz/envoy"
	"github.com/stepup-authz/stepup-authz/envoy/proxy"
	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
	"github.com/stepup-authz/stepup-authz/internal/dpopproof"
	"github.com/stepup-authz/stepup-authz/policy"
)

// devAudience is the audience the dev IdP mints for and the dev config expects.
const devAudience = "https://api.example.com"

type devFlags struct {
	proxyAddr, idpAddr, appAddr, grpcAddr, adminAddr string
	envoyFile                                        string
	// authzAddr, when set, is a stepup-authz that the user runs (serve); dev
	// then starts no server of its own and points the proxy's stepup_authz
	// cluster at it.
	authzAddr string
	// dpopNonce turns on server nonces for DPoP proofs (dpop.nonce).
	dpopNonce bool
}

func newDevCmd() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the playground: dev IdP, stepup-authz, an Envoy-compatible proxy and a demo app",
		Long: "dev starts, on localhost, a development identity provider that mints tokens, the\n" +
			"ext_authz server, an Envoy-compatible front proxy on envoy/envoy.yaml (embedded) and a\n" +
			"demo upstream app, then prints how to walk deny -> step-up -> allow with curl.\n" +
			"The dev IdP authenticates nobody: it is for trying things out only.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runDev(ctx, &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.proxyAddr, "proxy-addr", "127.0.0.1:8000", "front proxy (the envoy.yaml listener)")
	fl.StringVar(&f.idpAddr, "idp-addr", "127.0.0.1:8080", "development identity provider")
	fl.StringVar(&f.appAddr, "app-addr", "127.0.0.1:8081", "demo upstream app (cluster app)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:9191", "stepup-authz ext_authz gRPC (cluster stepup_authz)")
	fl.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:9192", "stepup-authz admin HTTP")
	fl.StringVar(&f.envoyFile, "envoy", "", "Envoy bootstrap to run the proxy on (default: the embedded envoy/envoy.yaml)")
	fl.StringVar(&f.authzAddr, "authz-addr", "", "a stepup-authz you run yourself (serve): the proxy checks with it, and dev starts no server of its own")
	fl.BoolVar(&f.dpopNonce, "dpop-nonce", false, "require server nonces in DPoP proofs (dpop.nonce: a proof without one gets 401 use_dpop_nonce and a DPoP-Nonce)")
	cmd.AddCommand(newDevTokenCmd())
	return cmd
}

func runDev(ctx context.Context, f *devFlags, out, errw io.Writer) error {
	bootstrap, bootstrapName := envoy.Bootstrap, "envoy/envoy.yaml, embedded"
	if f.envoyFile != "" {
		b, err := os.ReadFile(f.envoyFile)
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("--envoy: %w", err)}
		}
		bootstrap, bootstrapName = b, f.envoyFile
	}
	authzAddr := f.grpcAddr
	if f.authzAddr != "" && f.dpopNonce {
		return &exitError{code: 1, err: errors.New("--dpop-nonce configures dev's own server; with --authz-addr, set dpop.nonce and dpop.nonce_key_file in your server's config")}
	}
	if f.authzAddr != "" {
		if _, _, err := net.SplitHostPort(f.authzAddr); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("--authz-addr %q: want host:port, e.g. 127.0.0.1:9291: %v", f.authzAddr, err)}
		}
		authzAddr = f.authzAddr
	}
	log := slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)

	// 1. The development identity provider.
	idp, err := devidp.New(devAudience)
	if err != nil {
		return err
	}
	idp.Issuer = "http://" + f.idpAddr
	freshKeyIDs(idp)
	idpLis, err := net.Listen("tcp", f.idpAddr)
	if err != nil {
		return &exitError{code: 1, err: devListenError("--idp-addr", f.idpAddr, err)}
	}
	// The demo page (served through the proxy) mints its tokens here from the browser.
	go serveHTTP(ctx, idpLis, devidp.WithCORS(idp.Handler(), devPageOrigins(f.proxyAddr)), errc)

	// 2. The demo upstream app.
	appLis, err := net.Listen("tcp", f.appAddr)
	if err != nil {
		return &exitError{code: 1, err: devListenError("--app-addr", f.appAddr, err)}
	}
	go serveHTTP(ctx, appLis, demoApp(idp.Issuer), errc)

	// 3. The Envoy-compatible front proxy on the shipped bootstrap, bound
	// before anything is announced.
	px, err := proxy.New(bootstrap, proxy.Options{
		ListenerAddr: f.proxyAddr,
		ClusterAddrs: map[string]string{"stepup_authz": authzAddr, "app": f.appAddr, "idp_jwks": f.idpAddr},
		Logger:       log.With(slog.String("component", "proxy")),
	})
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("front proxy (%s): %w", bootstrapName, err)}
	}
	proxyLis, err := net.Listen("tcp", f.proxyAddr)
	if err != nil {
		return &exitError{code: 1, err: devListenError("--proxy-addr", f.proxyAddr, err)}
	}
	go func() { errc <- px.Serve(ctx, proxyLis) }()
	banner := devBanner{f: f, issuer: idp.Issuer, bootstrap: bootstrapName, routes: px.Routes(), authzAddr: authzAddr}

	// 4. stepup-authz itself, through the same wiring as serve, unless the
	// user runs their own.
	var ready <-chan struct{}
	if f.authzAddr == "" {
		dir, err := os.MkdirTemp("", "stepup-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfgPath := filepath.Join(dir, "config.yaml")
		secretPath := filepath.Join(dir, "introspection-secret")
		if err := os.WriteFile(secretPath, []byte(idp.IntrospectionSecret()+"\n"), 0o600); err != nil {
			return err
		}
		nonceKeyPath := ""
		if f.dpopNonce {
			var key [48]byte
			_, _ = rand.Read(key[:])
			nonceKeyPath = filepath.Join(dir, "dpop-nonce.key")
			if err := os.WriteFile(nonceKeyPath, []byte(hex.EncodeToString(key[:])+"\n"), 0o600); err != nil {
				return err
			}
		}
		if err := os.WriteFile(cfgPath, []byte(devConfig(f, idp.Issuer, secretPath, nonceKeyPath)), 0o600); err != nil {
			return err
		}
		a, err := newApp(cfgPath, config.NewViper(), errFile(errw), map[string]string{"listen.grpc": "--grpc-addr", "listen.admin": "--admin-addr"})
		if err != nil {
			return err
		}
		defer a.keys.Close()
		defer a.stopTracing()
		go func() { errc <- a.run(ctx) }()
		ready = a.ready
	} else {
		closed := make(chan struct{})
		close(closed)
		ready = closed
	}

	// Announce once the server holds the IdP's keys, so the first curl works.
	select {
	case <-ready:
		banner.print(out)
	case <-ctx.Done():
	case err := <-errc:
		return &exitError{code: 1, err: err}
	}
	select {
	case <-ctx.Done():
		cancel()
		return nil
	case err := <-errc:
		cancel()
		if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) {
			return nil
		}
		return &exitError{code: 1, err: err}
	}
}

// freshKeyIDs gives the dev IdP's keys ids of their own for this run. Each
// run generates new keys; under the same kids as the last run, a server that
// outlived the restart (serve behind dev --authz-addr) would check new
// signatures against the old keys it holds under those kids. With new kids it
// fetches the new key set when the first token arrives.
func freshKeyIDs(idp *devidp.IdP) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	var keys []*devidp.Key
	for _, k := range idp.Keys() {
		keys = append(keys, &devidp.Key{ID: k.ID + "-" + suffix, Alg: k.Alg, Private: k.Private})
	}
	idp.SetKeys(keys...)
}

// devListenError says which of dev's addresses is taken and how to move it.
func devListenError(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: the address is already in use (is another stepup-authz dev running?); stop it, or choose another address with %s", flag, addr, flag)
	}
	return fmt.Errorf("%s %s: %v", flag, addr, err)
}

func errFile(w io.Writer) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return os.Stderr
}

func serveHTTP(ctx context.Context, lis net.Listener, h http.Handler, errc chan<- error) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		errc <- err
	}
}

// devConfig is the config of dev's own server; nonceKeyFile, when set, turns
// on DPoP server nonces keyed by it.
func devConfig(f *devFlags, issuer, secretFile, nonceKeyFile string) string {
	dpop := ""
	if nonceKeyFile != "" {
		dpop = fmt.Sprintf("# dev --dpop-nonce: DPoP proofs must carry a current server nonce.\ndpop: { nonce: true, nonce_key_file: %q }\n", nonceKeyFile)
	}
	return dpop + fmt.Sprintf(`# stepup-authz dev: policies come from the proxy's route metadata (envoy/envoy.yaml).
listen: { grpc: %q, admin: %q }
issuers:
  - issuer: %q
    jwks_uri: %q
    audiences: [%q]
    # Opaque tokens (dev token --opaque) are introspected at the dev IdP.
    introspection:
      client_id: %q
      client_secret_file: %q
      opaque_tokens: true
log: { level: info }
# RFC 9728: challenges carry resource_metadata, and GET /.well-known/oauth-protected-resource[/mcp]
# is answered with the metadata document (base derived per request: http://<proxy address>).
protected_resource:
  scopes_supported: ["mcp:tools"]
  resource_name: "stepup-authz playground"
policy:
  routes:
    # The demo page and its scripts load without a token (a browser navigation
    # carries none); every API call still needs one.
    - name: demo-page
      match: { path: "/", methods: ["GET", "HEAD"] }
      mode: "off"
    - name: demo-page-assets
      match: { path_prefix: "/devui/", methods: ["GET", "HEAD"] }
      mode: "off"
`, f.grpcAddr, f.adminAddr, issuer, issuer+"/jwks.json", devAudience, devidp.IntrospectionClientID, secretFile)
}

// devPageOrigins are the origins the demo page can have: the proxy's address,
// and localhost for 127.0.0.1 (and the other way round), plus a Next.js dev
// server on :3000 (as envoy.yaml's CORS policy allows).
func devPageOrigins(proxyAddr string) []string {
	origins := []string{"http://" + proxyAddr, "http://localhost:3000"}
	if host, port, err := net.SplitHostPort(proxyAddr); err == nil {
		switch host {
		case "127.0.0.1", "0.0.0.0", "":
			origins = append(origins, "http://localhost:"+port, "http://127.0.0.1:"+port)
		case "localhost":
			origins = append(origins, "http://127.0.0.1:"+port)
		}
	}
	return origins
}

// devUI is the demo page: index.html, and the compiled step-up helper and page
// script copied from examples/web (npm run devui there).
//
//go:embed devui
var devUI embed.FS

var devPage = template.Must(template.ParseFS(devUI, "devui/index.html"))

// demoApp stands in for the upstream application. GET / is the demo page (the
// "Change bank account" form of the Next.js example this project grew from)
// and /devui/ its scripts; every other
// request is answered with what it received, including the identity headers
// stepup-authz set and the request body (up to 4 KiB).
func demoApp(idpURL string) http.Handler {
	assets, _ := fs.Sub(devUI, "devui")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = devPage.Execute(w, map[string]string{"IdP": idpURL})
	})
	mux.Handle("GET /devui/", http.StripPrefix("/devui/", http.FileServerFS(assets)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		received := map[string]string{}
		for name, vs := range r.Header {
			if l := strings.ToLower(name); strings.HasPrefix(l, "x-stepup-") {
				received[l] = strings.Join(vs, ",")
			}
		}
		out := map[string]any{"ok": true, "method": r.Method, "path": r.URL.RequestURI(), "stepup_headers": received}
		if b, _ := io.ReadAll(io.LimitReader(r.Body, 4096)); len(b) > 0 {
			out["body"] = string(b)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	return mux
}

// devBanner is what dev prints once everything is up. Its route table and
// its walk-through come from the bootstrap the proxy runs, so they say what
// that file says.
type devBanner struct {
	f         *devFlags
	issuer    string
	bootstrap string // the file's name, for humans
	routes    []proxy.Route
	authzAddr string
}

func (b *devBanner) print(w io.Writer) {
	f := b.f
	tokenCmd := "go run ./cmd/stepup-authz dev token"
	if b.issuer != "http://127.0.0.1:8080" {
		tokenCmd += " --idp " + b.issuer
	}
	fmt.Fprintf(w, "\nstepup-authz playground\n")
	fmt.Fprintf(w, "  front proxy               http://%s   (Envoy bootstrap: %s)\n", f.proxyAddr, b.bootstrap)
	if f.authzAddr == "" {
		fmt.Fprintf(w, "  demo page                 http://%s/   (Change bank account: Save -> confirm it's you -> Saved.)\n", f.proxyAddr)
		fmt.Fprintf(w, "                            http://%s/?dpop   (the same with DPoP-bound tokens, RFC 9449)\n", f.proxyAddr)
	} else {
		fmt.Fprintf(w, "  demo page                 http://%s/   (only if your server lets GET / and /devui/ through without a token)\n", f.proxyAddr)
	}
	fmt.Fprintf(w, "  dev identity provider     %s   (discovery, /jwks.json, POST /token, POST /introspect)\n", b.issuer)
	fmt.Fprintf(w, "  demo app (upstream)       http://%s\n", f.appAddr)
	if f.authzAddr == "" {
		fmt.Fprintf(w, "  stepup-authz gRPC         %s   admin http://%s/readyz  /metrics\n", f.grpcAddr, f.adminAddr)
	} else {
		fmt.Fprintf(w, "  stepup-authz gRPC         %s   (yours, from --authz-addr: dev started no server; it must trust\n", b.authzAddr)
		fmt.Fprintf(w, "                            issuer %s with audience %s, as examples/config.yaml does)\n", b.issuer, devAudience)
	}

	fmt.Fprintf(w, "\nRoutes (from %s, first match wins):\n", b.bootstrap)
	vhosts := map[string]bool{}
	for _, r := range b.routes {
		vhosts[r.VirtualHost] = true
	}
	rows := make([][3]string, 0, len(b.routes))
	for _, r := range b.routes {
		methods := "*"
		if len(r.Methods) > 0 {
			methods = strings.Join(r.Methods, ",")
		}
		match := r.Match
		if r.MoreConditions {
			match += " (+ header conditions)"
		}
		if len(vhosts) > 1 {
			match = r.VirtualHost + ": " + match
		}
		rows = append(rows, [3]string{methods, match, routeSummary(r)})
	}
	wm, wp := 0, 0
	for _, row := range rows {
		wm, wp = max(wm, len(row[0])), max(wp, len(row[1]))
	}
	for _, row := range rows {
		fmt.Fprintf(w, "  %-*s  %-*s  %s\n", wm, row[0], wp, row[1], row[2])
	}
	if f.authzAddr == "" {
		fmt.Fprintf(w, "  (dev's own server config lets GET / and /devui/, the demo page, through without a token)\n")
	} else {
		fmt.Fprintf(w, "  (your server's policy.routes and policy.default fill in whatever a route leaves unset)\n")
	}

	fmt.Fprintf(w, "\nTry it (in another terminal):\n")
	if ex, ok := stepUpExample(b.routes); ok {
		fmt.Fprintf(w, "  # 1. %s: denied with step_up_required\n", ex.weakWhat)
		fmt.Fprintf(w, "  TOKEN=$(%s %s)\n", tokenCmd, ex.weakArgs)
		fmt.Fprintf(w, "  curl -i -X %s -H \"Authorization: Bearer $TOKEN\" http://%s%s\n\n", ex.method, f.proxyAddr, ex.path)
		fmt.Fprintf(w, "  # 2. \"step up\": the IdP issues a fresh %s token\n", ex.strongLevel)
		fmt.Fprintf(w, "  TOKEN=$(%s --acr %s)\n\n", tokenCmd, ex.strongLevel)
		fmt.Fprintf(w, "  # 3. retry: allowed; the app echoes the x-stepup-* headers it received\n")
		fmt.Fprintf(w, "  curl -i -X %s -H \"Authorization: Bearer $TOKEN\" http://%s%s\n\n", ex.method, f.proxyAddr, ex.path)
		if f.authzAddr == "" {
			fmt.Fprintf(w, "  # 4. the same with opaque (reference) tokens, which stepup-authz introspects at the IdP\n")
			fmt.Fprintf(w, "  TOKEN=$(%s --opaque %s)\n", tokenCmd, ex.weakArgs)
			fmt.Fprintf(w, "  curl -i -X %s -H \"Authorization: Bearer $TOKEN\" http://%s%s\n", ex.method, f.proxyAddr, ex.path)
			fmt.Fprintf(w, "  TOKEN=$(%s --opaque --acr %s)\n", tokenCmd, ex.strongLevel)
			fmt.Fprintf(w, "  curl -i -X %s -H \"Authorization: Bearer $TOKEN\" http://%s%s\n\n", ex.method, f.proxyAddr, ex.path)
		}
	} else {
		fmt.Fprintf(w, "  # no route in %s asks for step-up (required_acr or max_age); any valid token:\n", b.bootstrap)
		fmt.Fprintf(w, "  TOKEN=$(%s --acr aal1)\n", tokenCmd)
		fmt.Fprintf(w, "  curl -i -H \"Authorization: Bearer $TOKEN\" http://%s/\n\n", f.proxyAddr)
	}
	if path, p, ok := mcpExample(b.routes); ok && f.authzAddr == "" {
		url := "http://" + f.proxyAddr + path
		scopes := strings.Join(p.RequiredScopes, " ")
		fmt.Fprintf(w, "  # MCP clients (RFC 9728): the challenge names the metadata document; tokens need %s\n", scopes)
		fmt.Fprintf(w, "  curl -i %s\n", url)
		fmt.Fprintf(w, "  curl -s http://%s/.well-known/oauth-protected-resource%s\n", f.proxyAddr, p.ResourcePath)
		fmt.Fprintf(w, "  TOKEN=$(%s --scope '%s')\n", tokenCmd, scopes)
		fmt.Fprintf(w, "  curl -i -H \"Authorization: Bearer $TOKEN\" %s\n\n", url)
	}
	fmt.Fprintf(w, "  Without Go: curl -s -d acr=aal2 %s/token\n\nCtrl-C stops everything.\n", b.issuer)
}

// routeSummary says in a few words what a route asks of a request, from the
// policy its metadata (the stepup namespace) and context extensions carry.
func routeSummary(r proxy.Route) string {
	if r.AuthzDisabled {
		return "no token (ext_authz disabled on this route)"
	}
	p, err := routePolicy(r)
	if err != nil {
		return "policy_error (500): " + err.Error()
	}
	if p.EffectiveMode() == policy.ModeOff {
		return "no token (mode off)"
	}
	var parts []string
	if p.RequiredACR != "" {
		parts = append(parts, p.RequiredACR)
	}
	if p.HasMaxAge {
		parts = append(parts, fmt.Sprintf("authenticated within %d s", int64(p.MaxAge.Seconds())))
	}
	switch {
	case len(parts) == 0 && len(p.RequiredScopes) > 0:
		parts = append(parts, "a token with scope "+strings.Join(p.RequiredScopes, " "))
	case len(parts) == 0:
		parts = append(parts, "any valid token")
	case len(p.RequiredScopes) > 0:
		parts = append(parts, "scope "+strings.Join(p.RequiredScopes, " "))
	}
	s := strings.Join(parts, ", ")
	if len(p.MachineScopes) > 0 {
		s += "; machine tokens need " + strings.Join(p.MachineScopes, " ")
	}
	if p.ResourcePath != "" {
		s += " (RFC 9728 resource " + p.ResourcePath + ")"
	}
	if p.EffectiveMode() == policy.ModeDryRun {
		s += " (dry_run: reported, never denied)"
	}
	if _, path, _ := strings.Cut(r.Match, " "); strings.HasPrefix(path, extauthz.WellKnownResource) {
		s = "GET/HEAD: the RFC 9728 metadata document, no token (with protected_resource); otherwise " + s
	}
	return s
}

// routePolicy is the policy a route's metadata (the stepup namespace) and
// context extensions carry, merged as the server merges them.
func routePolicy(r proxy.Route) (policy.Policy, error) {
	var layers []policy.Sourced
	if m, ok := r.RouteMetadata[config.DefaultMetadataNamespace]; ok {
		l, err := policy.ParseMetadata(m, policy.DefaultLevels)
		if err != nil {
			return policy.Policy{}, err
		}
		layers = append(layers, policy.Sourced{Source: policy.SourceRouteMetadata, Layer: l})
	}
	if len(r.ContextExtensions) > 0 {
		l, err := policy.ParseContextExtensions(r.ContextExtensions, policy.DefaultLevels)
		if err != nil {
			return policy.Policy{}, err
		}
		layers = append(layers, policy.Sourced{Source: policy.SourceContextExtensions, Layer: l})
	}
	return policy.Merge(layers...), nil
}

// mcpExample picks the first route that names an RFC 9728 resource_path and
// requires scopes, with a path that can be written down: the MCP walk-through.
func mcpExample(routes []proxy.Route) (path string, p policy.Policy, ok bool) {
	for _, r := range routes {
		if r.AuthzDisabled || r.MoreConditions {
			continue
		}
		kind, path, _ := strings.Cut(r.Match, " ")
		if kind == "safe_regex" || path == "" {
			continue
		}
		if p, err := routePolicy(r); err == nil && p.ResourcePath != "" && len(p.RequiredScopes) > 0 && !p.NeedsStepUp() {
			return path, p, true
		}
	}
	return "", policy.Policy{}, false
}

// devExample is the walk-through the banner prints: a request to a route
// that asks for step-up, first with a token that falls short, then with one
// that meets it.
type devExample struct {
	method, path       string
	weakWhat, weakArgs string
	strongLevel        string
}

// stepUpExample picks the first route that asks for step-up and has a path
// that can be written down (not a regex).
func stepUpExample(routes []proxy.Route) (devExample, bool) {
	for _, r := range routes {
		if r.AuthzDisabled || r.MoreConditions {
			continue
		}
		kind, path, _ := strings.Cut(r.Match, " ")
		if kind == "safe_regex" || path == "" {
			continue
		}
		s := routeSummary(r)
		if !strings.HasPrefix(s, "aal") && !strings.HasPrefix(s, "authenticated") {
			continue
		}
		var layers []policy.Sourced
		if m, ok := r.RouteMetadata[config.DefaultMetadataNamespace]; ok {
			l, _ := policy.ParseMetadata(m, policy.DefaultLevels)
			layers = append(layers, policy.Sourced{Layer: l})
		}
		l, _ := policy.ParseContextExtensions(r.ContextExtensions, policy.DefaultLevels)
		p := policy.Merge(append(layers, policy.Sourced{Layer: l})...)
		ex := devExample{method: "POST", path: path, strongLevel: "aal1"}
		if len(r.Methods) > 0 {
			ex.method = r.Methods[0]
		}
		switch rank := policy.DefaultLevels.Rank(p.RequiredACR); {
		case p.RequiredACR == "":
			age := p.MaxAge + time.Minute
			ex.weakWhat, ex.weakArgs = "a sign-in older than max_age", "--acr aal1 --age "+age.String()
		case rank > 0:
			lower := policy.DefaultLevels[rank-1]
			ex.strongLevel = p.RequiredACR
			ex.weakWhat, ex.weakArgs = "a weaker sign-in ("+lower+")", "--acr "+lower
		default:
			ex.strongLevel = p.RequiredACR
			ex.weakWhat, ex.weakArgs = "a token without acr", "--acr ''"
		}
		return ex, true
	}
	return devExample{}, false
}

func newDevTokenCmd() *cobra.Command {
	var idpURL, acr, sub, scope, clientID, dpopJKT, x5t, dpopAlg, method, target, nonce string
	var opaque bool
	var age time.Duration
	cmd := &cobra.Command{
		Use:   "token --acr LEVEL",
		Short: "Mint an access token from a running dev IdP and print it",
		Long: `Mint an access token from a running dev IdP and print it.

Sender-constrained tokens (RFC 9449, RFC 8705): --dpop-jkt binds the token to a
DPoP key you hold (cnf.jkt), --x5t-s256 to a client certificate (cnf["x5t#S256"]).
--dpop ALG makes a fresh DPoP key, binds the token to it and prints a curl command
for --method and --url with the token under the DPoP scheme and a one-time proof
(add --nonce when the server asked for one with DPoP-Nonce).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			if clientID != "" && !fl.Changed("sub") {
				sub = clientID // a service: sub == client_id (RFC 9068)
			}
			form := url.Values{"sub": {sub}}
			// A machine token stands for no interactive sign-in: it carries acr
			// and auth_time only when asked for (--acr, --age).
			machine := clientID != "" && clientID == sub
			if !machine || fl.Changed("acr") {
				form.Set("acr", acr)
			}
			if !machine || fl.Changed("age") {
				form.Set("auth_age_seconds", strconv.Itoa(int(age.Seconds())))
			}
			if scope != "" {
				form.Set("scope", scope)
			}
			if clientID != "" {
				form.Set("client_id", clientID)
			}
			if opaque {
				form.Set("format", "opaque")
			}
			var key *dpopproof.Key
			if dpopAlg != "" {
				if dpopJKT != "" {
					return &exitError{code: 2, err: errors.New("dev token: --dpop makes its own key; leave out --dpop-jkt")}
				}
				if target == "" {
					return &exitError{code: 2, err: errors.New("dev token: --dpop needs --url, the URL the proof is for (htu)")}
				}
				var err error
				if key, err = dpopproof.NewKey(dpopAlg); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("dev token: --dpop: %w", err)}
				}
				dpopJKT = key.Thumbprint()
			}
			if dpopJKT != "" {
				form.Set("dpop_jkt", dpopJKT)
			}
			if x5t != "" {
				form.Set("x5t_s256", x5t)
			}
			tok, err := mintDevToken(cmd.Context(), strings.TrimSuffix(idpURL, "/")+"/token", form)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("dev token: %w (is `stepup-authz dev` running?)", err)}
			}
			if key == nil {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
				return err
			}
			proof, err := key.Proof(strings.ToUpper(method), target, tok, nonce, time.Now())
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("dev token: proof: %w", err)}
			}
			// One proof, one request: the server refuses a proof it has seen.
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "curl -i -X %s '%s' -H 'Authorization: DPoP %s' -H 'DPoP: %s'\n",
				strings.ToUpper(method), target, tok, proof)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&idpURL, "idp", "http://127.0.0.1:8080", "the dev IdP's URL")
	fl.StringVar(&acr, "acr", "aal1", "acr claim (empty for none)")
	fl.StringVar(&sub, "sub", "user-1", "sub claim")
	fl.DurationVar(&age, "age", 0, "how long ago the user authenticated (auth_time = now - age)")
	fl.StringVar(&scope, "scope", "", "scope claim (space-separated)")
	fl.StringVar(&clientID, "client-id", "", "client_id claim: alone, a machine token (sub = client_id, no acr or auth_time unless --acr/--age); with --sub, a user token carrying client_id")
	fl.BoolVar(&opaque, "opaque", false, "mint an opaque (reference) token, which stepup-authz introspects at the dev IdP")
	fl.StringVar(&dpopJKT, "dpop-jkt", "", "bind the token to this DPoP key thumbprint (cnf.jkt, RFC 7638 base64url)")
	fl.StringVar(&x5t, "x5t-s256", "", "bind the token to this client certificate thumbprint (cnf[\"x5t#S256\"])")
	fl.StringVar(&dpopAlg, "dpop", "", "make a DPoP key of this algorithm (ES256, EdDSA, ...), bind the token to it and print a curl command with a proof")
	fl.StringVar(&method, "method", "GET", "with --dpop: the request method the proof is for (htm)")
	fl.StringVar(&target, "url", "", "with --dpop: the request URL the proof is for (htu), e.g. http://127.0.0.1:8000/api/payout-destination")
	fl.StringVar(&nonce, "nonce", "", "with --dpop: the server's DPoP-Nonce to put in the proof")
	return cmd
}

func mintDevToken(ctx context.Context, endpoint string, form url.Values) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("%s: %s: %s", endpoint, resp.Status, strings.TrimSpace(string(b)))
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("%s: %w", endpoint, err)
	}
	return body.AccessToken, nil
}
