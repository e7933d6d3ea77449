package main

import (
	"context"
	"embed"
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
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// devAudience is the audience the dev IdP mints for and the dev config expects.
const devAudience = "https://api.example.com"

type devFlags struct {
	proxyAddr, idpAddr, appAddr, grpcAddr, adminAddr string
	envoyFile                                        string
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
	cmd.AddCommand(newDevTokenCmd())
	return cmd
}

func runDev(ctx context.Context, f *devFlags, out, errw io.Writer) error {
	bootstrap := envoy.Bootstrap
	if f.envoyFile != "" {
		b, err := os.ReadFile(f.envoyFile)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		bootstrap = b
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
	idpLis, err := net.Listen("tcp", f.idpAddr)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("--idp-addr: %w", err)}
	}
	// The demo page (served through the proxy) mints its tokens here from the browser.
	go serveHTTP(ctx, idpLis, devidp.WithCORS(idp.Handler(), devPageOrigins(f.proxyAddr)), errc)

	// 2. The demo upstream app.
	appLis, err := net.Listen("tcp", f.appAddr)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("--app-addr: %w", err)}
	}
	go serveHTTP(ctx, appLis, demoApp(idp.Issuer), errc)

	// 3. The Envoy-compatible front proxy on the shipped bootstrap, bound
	// before anything is announced.
	px, err := proxy.New(bootstrap, proxy.Options{
		ListenerAddr: f.proxyAddr,
		ClusterAddrs: map[string]string{"stepup_authz": f.grpcAddr, "app": f.appAddr, "idp_jwks": f.idpAddr},
		Logger:       log.With(slog.String("component", "proxy")),
	})
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("front proxy: %w", err)}
	}
	proxyLis, err := net.Listen("tcp", f.proxyAddr)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("--proxy-addr: %w", err)}
	}
	go func() { errc <- px.Serve(ctx, proxyLis) }()

	// 4. stepup-authz itself, through the same wiring as serve.
	dir, err := os.MkdirTemp("", "stepup-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(devConfig(f, idp.Issuer)), 0o600); err != nil {
		return err
	}
	a, err := newApp(cfgPath, config.NewViper(), errFile(errw), map[string]string{"listen.grpc": "--grpc-addr", "listen.admin": "--admin-addr"})
	if err != nil {
		return err
	}
	defer a.rt.KeySets.Close()
	go func() { errc <- a.run(ctx) }()

	// Announce once the server holds the IdP's keys, so the first curl works.
	select {
	case <-a.ready:
		printDevBanner(out, f, idp.Issuer)
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

func devConfig(f *devFlags, issuer string) string {
	return fmt.Sprintf(`# stepup-authz dev: policies come from the proxy's route metadata (envoy/envoy.yaml).
listen: { grpc: %q, admin: %q }
issuers:
  - issuer: %q
    jwks_uri: %q
    audiences: [%q]
log: { level: info }
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
`, f.grpcAddr, f.adminAddr, issuer, issuer+"/jwks.json", devAudience)
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
// seed's "Change bank account" form) and /devui/ its scripts; every other
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

func printDevBanner(w io.Writer, f *devFlags, issuer string) {
	tokenCmd := "go run ./cmd/stepup-authz dev token"
	if issuer != "http://127.0.0.1:8080" {
		tokenCmd += " --idp " + issuer
	}
	fmt.Fprintf(w, `
stepup-authz playground
  front proxy (envoy.yaml)  http://%[1]s
  demo page                 http://%[1]s/   (Change bank account: Save -> confirm it's you -> Saved.)
  dev identity provider     %[2]s   (discovery, /jwks.json, POST /token)
  demo app (upstream)       http://%[3]s
  stepup-authz gRPC         %[4]s   admin http://%[5]s/readyz  /metrics

Routes (policy in envoy.yaml route metadata):
  POST   /api/payout-destination      aal2, authenticated within 300 s
  DELETE /api/account                 aal2, authenticated within 60 s
  *      /api/marketing-preferences   any valid token
  GET    /healthz                     no token

Try it (in another terminal):
  # 1. a password-only session (aal1): denied with step_up_required
  TOKEN=$(%[6]s --acr aal1)
  curl -i -X POST -H "Authorization: Bearer $TOKEN" http://%[1]s/api/payout-destination

  # 2. "step up": the IdP issues a fresh aal2 token
  TOKEN=$(%[6]s --acr aal2)

  # 3. retry: allowed; the app echoes the x-stepup-* headers it received
  curl -i -X POST -H "Authorization: Bearer $TOKEN" http://%[1]s/api/payout-destination

  Without Go: curl -s -d acr=aal2 %[2]s/token

Ctrl-C stops everything.
`, f.proxyAddr, issuer, f.appAddr, f.grpcAddr, f.adminAddr, tokenCmd)
}

func newDevTokenCmd() *cobra.Command {
	var idpURL, acr, sub, scope, clientID string
	var age time.Duration
	cmd := &cobra.Command{
		Use:   "token --acr LEVEL",
		Short: "Mint an access token from a running dev IdP and print it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			form := url.Values{"sub": {sub}, "acr": {acr}, "auth_age_seconds": {strconv.Itoa(int(age.Seconds()))}}
			if scope != "" {
				form.Set("scope", scope)
			}
			if clientID != "" {
				form.Set("client_id", clientID)
			}
			tok, err := mintDevToken(cmd.Context(), strings.TrimSuffix(idpURL, "/")+"/token", form)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("dev token: %w (is `stepup-authz dev` running?)", err)}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&idpURL, "idp", "http://127.0.0.1:8080", "the dev IdP's URL")
	fl.StringVar(&acr, "acr", "aal1", "acr claim (empty for none)")
	fl.StringVar(&sub, "sub", "user-1", "sub claim")
	fl.DurationVar(&age, "age", 0, "how long ago the user authenticated (auth_time = now - age)")
	fl.StringVar(&scope, "scope", "", "scope claim (space-separated)")
	fl.StringVar(&clientID, "client-id", "", "client_id claim (equal to --sub makes a machine token)")
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
