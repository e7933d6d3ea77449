package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/extauthz/wire"
	"github.com/stepup-authz/stepup-authz/internal/tracing"
)

// shutdownGrace bounds how long in-flight Checks may take to drain.
const shutdownGrace = 15 * time.Second

func newServeCmd() *cobra.Command {
	var path string
	v := config.NewViper()
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the ext_authz gRPC server and the admin HTTP server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			setGCPercent(os.LookupEnv)
			return serve(ctx, path, v, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "config file (YAML); re-read when it changes")
	f.String("listen-grpc", "", "ext_authz gRPC address (listen.grpc)")
	f.String("listen-admin", "", "admin HTTP address (listen.admin)")
	f.String("log-level", "", "debug, info, warn or error (log.level)")
	f.String("log-format", "", "text or json (log.format)")
	f.String("metadata-namespace", "", "route metadata namespace (metadata_namespace)")
	f.String("clock-skew", "", "leeway for exp, nbf, iat and auth_time (clock_skew)")
	f.String("listen-reflection", "", "true: gRPC server reflection, for grpcurl (listen.reflection)")
	f.String("codec", "", "gRPC protobuf codec: fast (default) or proto, grpc-go's standard codec (listen.codec)")
	for flag, key := range serveFlags {
		_ = v.BindPFlag(key, f.Lookup(flag))
	}
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// serveFlags maps serve's flags to the config keys they override.
var serveFlags = map[string]string{
	"listen-grpc": "listen.grpc", "listen-admin": "listen.admin", "listen-reflection": "listen.reflection",
	"codec": "listen.codec", "log-level": "log.level", "log-format": "log.format",
	"metadata-namespace": "metadata_namespace", "clock-skew": "clock_skew",
}

// serveAddrHints say how to move serve's listeners elsewhere.
var serveAddrHints = map[string]string{
	"listen.grpc":  "listen.grpc in the config, --listen-grpc or " + config.EnvVar("listen.grpc"),
	"listen.admin": "listen.admin in the config, --listen-admin or " + config.EnvVar("listen.admin"),
}

// app is one running server: the wiring shared by serve and dev.
type app struct {
	path    string
	v       *config.Overrides
	log     *slog.Logger
	metrics *extauthz.Metrics
	reg     *prometheus.Registry
	// keys outlives reloads: the JWKS key sets and their HTTP clients.
	keys *token.KeySets
	// engineOpts builds every Engine, the first and each reload's.
	engineOpts extauthz.EngineOptions
	srv        *extauthz.Server // holds the current Engine, swapped on reload
	health     *health.Server
	// cfg is the config the server started with; listen addresses are not reloaded.
	cfg *config.Config

	// The listeners are bound before any key is fetched, so a busy port is
	// the first and only thing reported.
	grpcLis, adminLis net.Listener
	// tracer is the OpenTelemetry setup, nil when tracing is off; it follows
	// tracingCfg, the config's tracing block at start (reloads leave it).
	tracer     *tracing.Provider
	tracingCfg config.Tracing

	mu    sync.Mutex    // serialises reloads
	ready chan struct{} // closed once the first key fetch of every issuer finished
}

// loadProblems prints one line per problem, each naming where it is: the
// config file, or the environment variable or flag that overrode a key.
func loadProblems(path string, err error) error {
	var problems config.Problems
	if errors.As(err, &problems) {
		return &exitError{code: 1, err: errors.New(problems.Located(path).Error())}
	}
	return &exitError{code: 1, err: fmt.Errorf("%s: %w", path, err)}
}

// listenError says which address could not be bound, what is likely true and
// how to choose another (hint).
func listenError(what, addr, hint string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: the address is already in use (another stepup-authz serve or dev may be running); stop it, or choose another address with %s", what, addr, hint)
	}
	return fmt.Errorf("%s %s: %v; choose another address with %s", what, addr, err, hint)
}

// newApp loads the config, binds the listeners and starts fetching keys.
// addrHints say, for listen.grpc and listen.admin, how the caller's user
// moves them.
func newApp(path string, v *config.Overrides, stderr *os.File, addrHints map[string]string) (*app, error) {
	cfg, err := config.Load(path, v)
	if err != nil {
		return nil, loadProblems(path, err)
	}
	a := &app{path: path, v: v, cfg: cfg, reg: prometheus.NewRegistry(), ready: make(chan struct{})}
	if a.grpcLis, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
		return nil, &exitError{code: 1, err: listenError("listen.grpc", cfg.Listen.GRPC, addrHints["listen.grpc"], err)}
	}
	if a.adminLis, err = net.Listen("tcp", cfg.Listen.Admin); err != nil {
		a.grpcLis.Close()
		return nil, &exitError{code: 1, err: listenError("listen.admin", cfg.Listen.Admin, addrHints["listen.admin"], err)}
	}
	a.log = newLogger(stderr, cfg.Log)
	logWarnings(a.log, cfg)
	// Tracing is set up once, at start (README, "Tracing"); off, nothing is built.
	a.tracingCfg = cfg.Tracing
	if a.tracer, err = tracing.New(context.Background(), cfg.Tracing, versionString(), os.Getenv); err != nil {
		a.grpcLis.Close()
		a.adminLis.Close()
		return nil, &exitError{code: 1, err: err}
	}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = extauthz.NewMetrics(a.reg)
	ks := token.NewKeySets(token.KeySetOptions{
		RefreshInterval: cfg.JWKSRefreshInterval,
		OnFetch: func(issuer, result string) {
			a.metrics.JWKSFetches.WithLabelValues(issuer, result).Inc()
		},
		Logger: a.log,
		Tracer: a.tracer.KeyFetchTracer(),
	})
	a.keys = ks
	a.engineOpts = extauthz.EngineOptions{OnIntrospection: func(issuer, result string) {
		a.metrics.Introspections.WithLabelValues(issuer, result).Inc()
	},
		// One set of DPoP replay stores for every config this process loads:
		// a reload must never forget a used proof.
		Replay: extauthz.NewReplayStores(),
	}
	engine, err := extauthz.NewEngine(cfg, ks, a.engineOpts)
	if err != nil {
		ks.Close()
		a.grpcLis.Close()
		a.adminLis.Close()
		return nil, &exitError{code: 1, err: fmt.Errorf("%s: %w", path, err)}
	}
	opts := extauthz.Options{Metrics: a.metrics, Logger: a.log}
	if a.tracer != nil {
		opts.Tracing = extauthz.Tracing{Tracer: a.tracer.Tracer, Propagator: a.tracer.Propagator, IncludeSubject: cfg.Tracing.IncludeSubject}
		a.log.Info("tracing on", slog.String("protocol", a.tracer.Settings.Protocol),
			slog.String("endpoint", a.tracer.Settings.Endpoint), slog.Float64("sample_ratio", a.tracer.Settings.SampleRatio))
	}
	a.srv = extauthz.NewServer(engine, opts)
	a.metrics.RegisterTokenCache(a.reg, func() extauthz.CacheStatser { return a.srv.Engine() })
	a.metrics.RegisterKeySets(a.reg, func() []token.IssuerStatus { return a.srv.Engine().Status() },
		cfg.JWKSRefreshInterval, time.Now)
	a.metrics.ConfigApplied(cfg, time.Now())
	a.health = health.NewServer()
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	a.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return a, nil
}

// stopTracing sends the spans still buffered, within a few seconds.
func (a *app) stopTracing() {
	if a.tracer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.tracer.Shutdown(ctx); err != nil {
		a.log.Warn("tracing: spans not sent at shutdown", slog.Any("err", err))
	}
}

// logWarnings logs what validate would warn about a valid config (config.Warnings),
// at start and on every reload: the config is served, but likely not as meant.
func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", slog.String("warning", w))
	}
}

func newLogger(w *os.File, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, path string, v *config.Overrides, stderr any) error {
	errw, _ := stderr.(*os.File)
	if errw == nil {
		errw = os.Stderr
	}
	a, err := newApp(path, v, errw, serveAddrHints)
	if err != nil {
		return err
	}
	defer a.keys.Close()
	defer a.stopTracing()
	return a.run(ctx)
}

// run serves until ctx is cancelled, then shuts down gracefully: stop
// accepting, report NOT_SERVING, drain in-flight Checks, exit.
func (a *app) run(ctx context.Context) error {
	grpcLis, adminLis := a.grpcLis, a.adminLis
	opts, err := grpcServerOptions(a.cfg.Listen.Codec)
	if err != nil {
		grpcLis.Close()
		adminLis.Close()
		return &exitError{code: 1, err: fmt.Errorf("listen.codec: %w", err)}
	}
	if t := a.cfg.Listen.TLS; t != nil {
		creds, err := serverTLS(t)
		if err != nil {
			grpcLis.Close()
			adminLis.Close()
			return &exitError{code: 1, err: fmt.Errorf("listen.tls: %w", err)}
		}
		opts = append(opts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, a.srv)
	healthpb.RegisterHealthServer(gs, a.health)
	if a.cfg.Listen.Reflection {
		// grpc.reflection.v1 (and v1alpha): lets grpcurl describe and call the
		// server without .proto files. Off unless listen.reflection is true.
		reflection.Register(gs)
	}
	admin := &http.Server{Handler: a.adminMux(), ReadHeaderTimeout: 5 * time.Second}

	a.log.Info("stepup-authz serving", slog.String("version", versionString()),
		slog.String("grpc", grpcLis.Addr().String()), slog.String("admin", adminLis.Addr().String()),
		slog.Bool("tls", a.cfg.Listen.TLS != nil), slog.Bool("reflection", a.cfg.Listen.Reflection), slog.String("codec", a.cfg.Listen.Codec),
		slog.String("config", a.path))

	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(grpcLis) }()
	go func() {
		if err := admin.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go a.awaitReady(watchCtx)
	go a.watch(watchCtx)

	select {
	case <-ctx.Done():
	case err := <-errc:
		a.log.Error("server failed", slog.Any("err", err))
		gs.Stop()
		_ = admin.Close()
		return &exitError{code: 1, err: err}
	}

	a.log.Info("shutting down: draining in-flight checks")
	a.health.Shutdown()
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		a.log.Warn("drain timed out; closing remaining connections")
		gs.Stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(sctx)
	a.log.Info("stopped")
	return nil
}

// gRPC server limits (README, "gRPC server limits"). Only Envoy should reach this
// port; the limits bound what a misbehaving or compromised peer can cost.
const (
	// maxCheckRequestBytes bounds one CheckRequest. Envoy's request headers are
	// 60 KiB by default (max_request_headers_kb); 4 MiB leaves room for raised
	// limits and metadata. A larger message is refused with RESOURCE_EXHAUSTED,
	// which Envoy answers with status_on_error (fail closed unless
	// failure_mode_allow is set).
	maxCheckRequestBytes = 4 << 20
	// maxStreamsPerConn matches Envoy's default circuit breaker (1024 pending
	// requests per cluster); Envoy opens another connection beyond it.
	maxStreamsPerConn = 1024
	// keepaliveMinTime is the most often a client may ping. Envoy's HTTP/2
	// connection_keepalive is usually tens of seconds; a stricter limit would
	// answer its pings with GOAWAY (too_many_pings) and churn connections.
	keepaliveMinTime = 5 * time.Second
	// keepaliveTime and keepaliveTimeout: ping an idle Envoy after a minute and drop
	// the connection when it does not answer within 20s, so a vanished peer does not
	// hold server resources until TCP gives up.
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
	// maxConnectionAge makes clients reconnect now and then, so new replicas get a
	// share of long-lived Envoy connections; in-flight Checks get the grace.
	maxConnectionAge      = 10 * time.Minute
	maxConnectionAgeGrace = 30 * time.Second
	// handshakeTimeout bounds a connection's (TLS) handshake.
	handshakeTimeout = 10 * time.Second
)

// grpcServerOptions are the gRPC server's options, speaking protobuf with the
// codec called codec (wire.Names).
func grpcServerOptions(codec string) ([]grpc.ServerOption, error) {
	// wire.Fast decodes the protobuf wire format faster (BENCHMARKS.md);
	// wire.Proto is grpc-go's standard codec.
	codecOpt, err := wire.ServerOption(codec)
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{
		codecOpt,
		// Checks run on long-lived workers rather than a new goroutine each, which
		// would grow its stack on every Check (BENCHMARKS.md); beyond them, grpc
		// starts goroutines as usual.
		grpc.NumStreamWorkers(streamWorkers()),
		grpc.MaxRecvMsgSize(maxCheckRequestBytes),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  keepaliveTime,
			Timeout:               keepaliveTimeout,
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: maxConnectionAgeGrace,
		}),
		grpc.ConnectionTimeout(handshakeTimeout),
	}, nil
}

// gcPercent is the garbage collector's target (GOGC) for serve when the
// environment sets none. At Go's default, 100, a replica whose live heap is a
// few MiB collects every ~300 Checks, and collection was the largest share of
// a cached Check's CPU that stepup-authz can change; at 200 a cached Check
// costs ~15% less CPU (BENCHMARKS.md, "Several connections"). The heap may grow
// to three times the live heap instead of two: ~200 MiB with a full default
// token cache, within k8s/base's 256 Mi limit, and GOMEMLIMIT, set from that
// limit, makes the collector work harder before it is reached.
const gcPercent = 200

// setGCPercent applies gcPercent unless the environment sets GOGC (lookupEnv
// is os.LookupEnv), which the Go runtime has then applied already.
func setGCPercent(lookupEnv func(string) (string, bool)) {
	if _, set := lookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}

// streamWorkers is enough workers for the Checks one replica has in flight.
func streamWorkers() uint32 { return uint32(max(64, 8*runtime.GOMAXPROCS(0))) }

// awaitReady flips gRPC health to SERVING once readiness holds.
func (a *app) awaitReady(ctx context.Context) {
	a.srv.Engine().WaitFirstFetch(ctx)
	if ctx.Err() != nil {
		return
	}
	close(a.ready)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		status := healthpb.HealthCheckResponse_NOT_SERVING
		if ok, _ := a.readiness(); ok {
			status = healthpb.HealthCheckResponse_SERVING
		}
		if status != last {
			a.health.SetServingStatus("", status)
			a.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, status)
			last = status
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type issuerReport struct {
	Issuer string `json:"issuer"`
	// State and Message say what the rest means (token.IssuerStatus.State, Message).
	State   string `json:"state"`
	Message string `json:"message"`
	// Fetched is true once the first fetch attempt finished, whether or not it succeeded.
	Fetched     bool            `json:"fetched"`
	Keys        int             `json:"keys"`
	Skipped     int             `json:"skipped"`
	SkippedKeys []skippedReport `json:"skipped_keys,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	LastSuccess string          `json:"last_success,omitempty"`
	// Introspection is set for an issuer that is introspected.
	Introspection *introspectionReport `json:"introspection,omitempty"`
}

type skippedReport struct {
	KID    string `json:"kid"`
	Kty    string `json:"kty,omitempty"`
	Crv    string `json:"crv,omitempty"`
	Reason string `json:"reason"`
}

type introspectionReport struct {
	Endpoint     string `json:"endpoint,omitempty"`
	OpaqueTokens bool   `json:"opaque_tokens"`
	// Ready: the endpoint is known (configured, or read from discovery).
	Ready     bool   `json:"ready"`
	LastError string `json:"last_error,omitempty"`
}

// readiness holds once the first key fetch of every configured issuer has
// finished and at least one issuer can judge tokens: it holds keys, or it
// takes opaque tokens and its introspection endpoint is known (configured, or
// read from discovery). One IdP being down must not take every replica out of
// service.
func (a *app) readiness() (bool, []issuerReport) {
	select {
	case <-a.ready:
	default:
		return false, a.issuerReports()
	}
	reports := a.issuerReports()
	anyKeys, allFetched := false, true
	for _, r := range reports {
		anyKeys = anyKeys || r.Keys > 0 || (r.Introspection != nil && r.Introspection.OpaqueTokens && r.Introspection.Ready)
		allFetched = allFetched && r.Fetched
	}
	return anyKeys && allFetched, reports
}

// readinessMessage says why the replica is or is not ready, and what to look at.
func readinessMessage(ok bool, reports []issuerReport) string {
	withKeys, fetching := 0, 0
	for _, r := range reports {
		if r.Keys > 0 || (r.Introspection != nil && r.Introspection.OpaqueTokens && r.Introspection.Ready) {
			withKeys++
		}
		if !r.Fetched {
			fetching++
		}
	}
	switch {
	case ok && withKeys == len(reports):
		return fmt.Sprintf("ready: all %d issuers can judge tokens (keys held, or opaque tokens introspected)", len(reports))
	case ok:
		return fmt.Sprintf("ready: %d of %d issuers can judge tokens; tokens of the others get 503 until their keys are fetched (see each issuer's message)", withKeys, len(reports))
	case fetching > 0 || withKeys > 0:
		return fmt.Sprintf("not ready: the first key fetch of %d of %d issuers has not finished", fetching, len(reports))
	default:
		return "not ready: no issuer holds keys (or introspects opaque tokens), so every token would get 503; see each issuer's last_error and check that their jwks_uri is reachable from this server"
	}
}

func (a *app) issuerReports() []issuerReport {
	var out []issuerReport
	for _, st := range a.srv.Engine().Status() {
		r := issuerReport{Issuer: st.Issuer, State: st.State(), Message: st.Message(),
			Fetched: st.Fetched, Keys: st.Keys, Skipped: st.Skipped, LastError: st.LastError}
		for _, k := range st.SkippedKeys {
			r.SkippedKeys = append(r.SkippedKeys, skippedReport{KID: k.KID, Kty: k.Kty, Crv: k.Crv, Reason: k.Reason})
		}
		if in := st.Introspection; in != nil {
			r.Introspection = &introspectionReport{Endpoint: in.Endpoint, OpaqueTokens: in.OpaqueTokens, Ready: in.Ready, LastError: in.LastError}
		}
		if !st.LastSuccess.IsZero() {
			r.LastSuccess = st.LastSuccess.UTC().Format(time.RFC3339)
		}
		out = append(out, r)
	}
	return out
}

func (a *app) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, reports := a.readiness()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "message": readinessMessage(ok, reports), "issuers": reports})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	return mux
}

// serverTLS serves gRPC over TLS, or mutual TLS when a client CA is given,
// for Envoys outside a mesh. Certificates are re-read when their files change.
func serverTLS(t *config.TLS) (credentials.TransportCredentials, error) {
	certs := &certReloader{certFile: t.CertFile, keyFile: t.KeyFile}
	if _, err := certs.get(nil); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file %s: no PEM certificate found", t.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(tc), nil
}

// certReloader re-reads the key pair when the certificate file's mtime
// changes, so cert-manager rotations need no restart.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	mtime             time.Time
	cert              *tls.Certificate
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st, err := os.Stat(c.certFile)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && st.ModTime().Equal(c.mtime) {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil // keep serving the last good pair mid-rotation
		}
		return nil, err
	}
	c.cert, c.mtime = &cert, st.ModTime()
	return c.cert, nil
}
