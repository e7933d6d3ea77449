package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/envoy"
)

// Options adjust a proxy built from a bootstrap YAML.
type Options struct {
	// ListenerAddr overrides the (single) listener's socket_address, so tests
	// can listen on a free 127.0.0.1 port; "" keeps the YAML's.
	ListenerAddr string
	// ClusterAddrs maps a cluster name to "host:port", overriding that
	// cluster's endpoint. Names the bootstrap does not define are ignored, so
	// one map serves every shipped YAML; a malformed address is an error.
	ClusterAddrs map[string]string
	// Logger receives access log lines (when the HCM configures access_log)
	// and configuration warnings; nil discards them.
	Logger *slog.Logger
}

// Proxy is an Envoy-compatible front proxy (development and tests only).
type Proxy struct {
	opts       Options
	log        *slog.Logger
	listenAddr string
	clusters   map[string]*cluster
	hcm        *hcmConfig
	tls        *listenerTLS // nil: a plaintext listener
	warned     sync.Map

	grpcConns  map[string]*grpc.ClientConn // by cluster name
	transports map[string]*http.Transport  // by cluster name

	mu     sync.Mutex
	addr   string
	srv    *http.Server
	closed bool
}

// New builds the proxy from a bootstrap YAML. It supports exactly the subset
// of Envoy configuration that stepup-authz's YAMLs use and refuses anything
// else with an error naming the field; it never guesses.
//
// The YAML is loaded with envoy.ValidateBootstrap (strict: unknown fields,
// wrong types and duplicate keys fail). Its stepup-specific advice (for
// example "failure_mode_allow is fail-open") is logged as warnings, not
// enforced: Envoy itself accepts such configs, and so does its stand-in.
func New(bootstrapYAML []byte, opts Options) (*Proxy, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, problems := envoy.ValidateBootstrap(bootstrapYAML, envoy.Options{})
	if b == nil {
		msgs := make([]string, len(problems))
		for i, pr := range problems {
			msgs[i] = pr.String()
		}
		return nil, fmt.Errorf("envoy bootstrap: %s", strings.Join(msgs, "; "))
	}
	for _, pr := range problems {
		log.Warn("envoy config", "problem", pr.String())
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %v", err)
	}
	p := &Proxy{
		opts:       opts,
		log:        log,
		grpcConns:  map[string]*grpc.ClientConn{},
		transports: map[string]*http.Transport{},
	}
	if err := p.build(b); err != nil {
		p.Close()
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return p, nil
}

// Handler returns the proxy as an http.Handler, for httptest.
func (p *Proxy) Handler() http.Handler { return http.HandlerFunc(p.serveHTTP) }

// Addr returns the address the proxy listens on once ListenAndServe or Serve
// has bound it, else "".
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// ListenAndServe listens on the listener's address (or Options.ListenerAddr)
// and serves until ctx is done, then shuts down gracefully.
func (p *Proxy) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", p.listenAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", p.listenAddr, err)
	}
	return p.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then shuts down gracefully: it stops
// accepting and waits up to 5s for in-flight requests.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	switch {
	case p.tls != nil:
		// Over TLS, HTTP/2 is what ALPN negotiates, and only when the
		// listener offers h2 (common_tls_context.alpn_protocols).
		srv.Protocols.SetHTTP2(p.hcm.acceptH2C && slices.Contains(p.tls.config.NextProtos, "h2"))
		srv.TLSConfig = p.tls.config.Clone()
		ln = tls.NewListener(ln, srv.TLSConfig)
	case p.hcm.acceptH2C:
		// codec_type AUTO also accepts HTTP/2 with prior knowledge.
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return errors.New("proxy is closed")
	}
	p.srv = srv
	p.addr = ln.Addr().String()
	p.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		<-errc
		return err
	}
}

// Close stops serving at once and releases the gRPC and upstream connections.
// It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.srv != nil {
		errs = append(errs, p.srv.Close())
		p.srv = nil
	}
	if p.closed {
		return errors.Join(errs...)
	}
	p.closed = true
	for _, cc := range p.grpcConns {
		errs = append(errs, cc.Close())
	}
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// stream is one request's state (Envoy's ActiveStream and StreamInfo).
type stream struct {
	p        *Proxy
	r        *http.Request
	id       uint64
	start    time.Time
	protocol string
	remote   net.Addr
	local    net.Addr
	tls      *tls.ConnectionState // nil on a plaintext listener

	body     *countingReader
	headers  *headerMap // request headers, pseudo-headers first
	route    *route
	metadata map[string]*structpb.Struct // dynamic metadata by namespace

	// response
	status       int
	respHeaders  *headerMap
	respBody     io.Reader
	respClose    func()
	flags        []string // access log %RESPONSE_FLAGS%
	details      string   // %RESPONSE_CODE_DETAILS%
	upstreamHost string
	bytesSent    int64
}

// filterStream is one HTTP filter's per-request state.
type filterStream interface {
	// decodeHeaders runs on the request, in http_filters order; a non-nil
	// local reply stops the chain (the filter answered the request).
	decodeHeaders(s *stream) *localReply
	// encodeHeaders runs on every response, in reverse order.
	encodeHeaders(s *stream, h *headerMap)
}

// localReply is a response generated by the proxy itself
// (Http::Utility::sendLocalReply).
type localReply struct {
	status  int
	body    string
	modify  func(h *headerMap) // ext_authz's header callback
	details string
	flag    string
}

func (s *stream) addFlag(f string) {
	if f != "" {
		s.flags = append(s.flags, f)
	}
}

func (s *stream) setMetadata(ns string, v *structpb.Struct) {
	if s.metadata == nil {
		s.metadata = map[string]*structpb.Struct{}
	}
	s.metadata[ns] = v
}

func newStreamID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

func protocolString(r *http.Request) string {
	// Http::Utility::getProtocolString.
	switch {
	case r.ProtoMajor == 2:
		return "HTTP/2"
	case r.ProtoMajor == 3:
		return "HTTP/3"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

func addrOf(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s := &stream{
		p:        p,
		r:        r,
		id:       newStreamID(),
		start:    time.Now(),
		protocol: protocolString(r),
		remote:   addrOf(r.RemoteAddr),
		tls:      r.TLS,
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		s.local = la
	}
	if r.Body != nil {
		s.body = &countingReader{r: r.Body}
		r.Body = s.body
	}
	defer func() {
		if s.respClose != nil {
			s.respClose()
		}
	}()
	p.decode(s)
	p.respond(w, s)
	p.writeAccessLogs(s)
}

// decode runs the HTTP connection manager and the filter chain for s and
// leaves the response in s.
func (p *Proxy) decode(s *stream) {
	h := p.hcm
	if lr := p.prepareRequest(s); lr != nil {
		// Rejected by the connection manager before any filter ran
		// (ActiveStream::decodeHeaders), so no filter encodes the reply.
		p.setLocalReply(s, lr)
		p.finishHeaders(s)
		return
	}
	s.route = h.routes.selectRoute(s.headers)

	var active []filterStream
	var reply *localReply
	for _, e := range h.filters {
		if s.route != nil && !s.route.filterEnabled(e) {
			continue
		}
		if s.route == nil && e.disabled {
			continue
		}
		fs := e.factory.newStream(s)
		active = append(active, fs)
		if reply = fs.decodeHeaders(s); reply != nil {
			break
		}
	}
	if reply == nil {
		reply = h.router.forward(p, s)
	}
	if reply != nil {
		p.setLocalReply(s, reply)
	}
	// FilterManager::encodeHeaders(nullptr, ...) starts at the first encoder
	// filter, so local replies pass every encoder, in reverse order: a CORS
	// filter before ext_authz decorates ext_authz's denials. Filters after the
	// one that replied never saw the request and have nothing to add.
	for i := len(active) - 1; i >= 0; i-- {
		active[i].encodeHeaders(s, s.respHeaders)
	}
	p.finishHeaders(s)
}

// prepareRequest builds the request header map and applies the connection
// manager's request handling (conn_manager_utility.cc): path normalisation,
// host port stripping, request id, x-forwarded-proto, x-forwarded-for.
func (p *Proxy) prepareRequest(s *stream) *localReply {
	h := p.hcm
	r := s.r
	hm := newHeaderMap()
	path := r.RequestURI
	if path == "" || !strings.HasPrefix(path, "/") {
		// Absolute-form request target: the HTTP/1 codec keeps path and query.
		path = r.URL.RequestURI()
	}
	hm.add(":authority", r.Host)
	hm.add(":path", path)
	hm.add(":method", r.Method)
	reg := r.Header.Clone()
	// Connection-specific headers, and x-envoy-internal which only Envoy may
	// set, are removed before filters run
	// (ConnectionManagerUtility::mutateRequestHeaders); "te" keeps only
	// "trailers".
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "X-Envoy-Internal"} {
		reg.Del(k)
	}
	if te := reg.Values("Te"); len(te) > 0 {
		reg.Del("Te")
		for _, v := range te {
			if strings.EqualFold(strings.TrimSpace(v), "trailers") {
				reg.Set("Te", "trailers")
			}
		}
	}
	// x-forwarded-proto and :scheme, as ConnectionManagerUtility::mutateRequestHeaders
	// (source/common/http/conn_manager_utility.cc) sets them before any filter
	// runs. An edge proxy (use_remote_address: true) with no trusted hops
	// overwrites a client's x-forwarded-proto with the downstream connection's
	// scheme ("If the prior hop is not a trusted proxy, overwrite any
	// x-forwarded-proto value it set as untrusted"); with xff_num_trusted_hops
	// > 0, or without use_remote_address, a value the previous hop sent is
	// kept; an absent one is always set from the connection. DPoP's htu and the
	// RFC 9728 resource are built from this header (CONTRACT.md), so this is
	// what decides whether a client can choose the scheme its proof names.
	connScheme := "http"
	if s.tls != nil {
		connScheme = "https"
	}
	if len(reg.Values("X-Forwarded-Proto")) == 0 || h.useRemoteAddress && h.xffTrustedHops == 0 {
		reg.Set("X-Forwarded-Proto", connScheme)
	}
	// :scheme is absent from HTTP/1 requests: it comes from x-forwarded-proto
	// when that is a valid scheme, else from the connection (getScheme in the
	// same file). HTTP/2 clients send their own :scheme, which Go's server
	// does not expose; the same rule stands in for it.
	scheme := connScheme
	if xfp := reg.Get("X-Forwarded-Proto"); strings.EqualFold(xfp, "http") || strings.EqualFold(xfp, "https") {
		scheme = xfp
	}
	hm.add(":scheme", scheme)
	hm.fromHTTPHeader(reg)
	s.headers = hm
	var local *x509.Certificate
	if p.tls != nil {
		local = p.tls.local
	}
	h.xfcc.mutate(hm, s.tls, local)

	edge := false
	if h.useRemoteAddress && s.remote != nil {
		// An edge request (mutateRequestHeaders: use_remote_address and not
		// internal; since Envoy 1.33 no address is internal unless
		// internal_address_config names it, which the proxy does not
		// support). The client's address is the connection's, or with
		// trusted hops the one they wrote into XFF (getLastAddressFromXFF,
		// read before this hop appends); XFF gets the connection's address
		// (HCM headers docs, x-forwarded-for); nothing the client said about
		// earlier hops or about itself as a mesh service is kept.
		edge = true
		ip, _, _ := net.SplitHostPort(s.remote.String())
		external := ip
		if h.xffTrustedHops > 0 {
			if a := xffAddress(hm.value("x-forwarded-for"), int(h.xffTrustedHops)-1); a != "" {
				external = a
			}
		}
		if !h.skipXffAppend {
			hm.appendValue("x-forwarded-for", ip)
		}
		hm.set("x-envoy-external-address", external)
		for _, k := range []string{"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node"} {
			hm.remove(k)
		}
	}
	switch {
	case h.generateRequestID && edge && !h.preserveRequestID:
		// "Generate x-request-id for all edge requests" unless
		// preserve_external_request_id.
		hm.set("x-request-id", newUUID())
	case h.generateRequestID && !hm.has("x-request-id"):
		// "It will also generate an x-request-id header for internal requests
		// that do not already have one" (HCM headers docs, x-request-id).
		hm.add("x-request-id", newUUID())
	}

	switch {
	case h.stripAnyPort:
		hm.set(":authority", stripPort(hm.value(":authority")))
	case h.stripMatchingPort && s.local != nil:
		_, lport, _ := net.SplitHostPort(s.local.String())
		if host := hm.value(":authority"); strings.HasSuffix(host, ":"+lport) {
			hm.set(":authority", strings.TrimSuffix(host, ":"+lport))
		}
	}

	np, action := normalizePath(path, h.normalize, h.merge, h.escaped)
	switch action {
	case pathReject:
		return &localReply{status: http.StatusBadRequest, details: "path_normalization_failed"}
	case pathRedirect:
		return &localReply{status: http.StatusTemporaryRedirect, details: "path_normalization_failed",
			modify: func(rh *headerMap) { rh.set("location", np) }}
	}
	hm.set(":path", np)
	return nil
}

// xffAddress is Utility::getLastAddressFromXFF: the address skip entries from
// the right of an x-forwarded-for value, or "" when there are too few or it
// is not an IP address.
func xffAddress(xff string, skip int) string {
	if xff == "" {
		return ""
	}
	parts := strings.Split(xff, ",")
	if skip >= len(parts) {
		return ""
	}
	a := strings.TrimSpace(parts[len(parts)-1-skip])
	if net.ParseIP(a) == nil {
		return ""
	}
	return a
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// setLocalReply turns a local reply into the stream's response, as
// Http::Utility::sendLocalReply does: the filter's header callback runs first;
// then, for a non-empty body, content-length is set and content-type is set to
// text/plain only if the callback set none. A HEAD request gets no body.
func (p *Proxy) setLocalReply(s *stream, lr *localReply) {
	if s.respClose != nil {
		s.respClose()
		s.respClose = nil
	}
	rh := newHeaderMap()
	if lr.modify != nil {
		lr.modify(rh)
	}
	if lr.body != "" {
		rh.set("content-length", fmt.Sprint(len(lr.body)))
		if !rh.has("content-type") {
			rh.set("content-type", "text/plain")
		}
	}
	s.status = lr.status
	s.respHeaders = rh
	s.respBody = strings.NewReader(lr.body)
	if s.r.Method == http.MethodHead {
		s.respBody = strings.NewReader("")
	}
	s.details = lr.details
	s.addFlag(lr.flag)
	s.upstreamHost = ""
}

// finishHeaders applies the connection manager's response handling: the
// server header (server_header_transformation, default OVERWRITE).
func (p *Proxy) finishHeaders(s *stream) {
	switch p.hcm.serverTransform {
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		if !s.respHeaders.has("server") {
			s.respHeaders.set("server", p.hcm.serverName)
		}
	case hcmv3.HttpConnectionManager_PASS_THROUGH:
	default:
		s.respHeaders.set("server", p.hcm.serverName)
	}
}

// respond writes the stream's response to the client.
func (p *Proxy) respond(w http.ResponseWriter, s *stream) {
	wh := w.Header()
	// Keep Go from adding headers Envoy would not: no content sniffing.
	wh["Content-Type"] = nil
	for _, e := range s.respHeaders.entries {
		if isPseudo(e.key) {
			continue
		}
		ck := http.CanonicalHeaderKey(e.key)
		if ck == "Content-Type" && wh["Content-Type"] == nil {
			wh["Content-Type"] = []string{e.value}
			continue
		}
		wh.Add(ck, e.value)
	}
	w.WriteHeader(s.status)
	if s.respBody != nil {
		n, _ := io.Copy(flushWriter{w}, s.respBody)
		s.bytesSent = n
	}
}

// flushWriter flushes after every write, so streamed upstream responses are
// not held back.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
