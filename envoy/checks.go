package envoy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The cross checks below catch what Envoy's schema (and so PGV) cannot: configs
// that load but do not do what a step-up deployment needs. Each finding names
// the path to fix.

const (
	routerFilterName       = "envoy.filters.http.router"
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// identityHeaders are the headers stepup-authz sets on an allowed request. On a
// route where ext_authz does not run, nothing overwrites client-sent copies.
var identityHeaders = []string{"x-stepup-sub", "x-stepup-acr", "x-stepup-auth-time"}

type checker struct {
	opts     Options
	ns       string
	problems []Problem

	clusters     map[string]*clusterv3.Cluster
	clusterPaths map[string]string
	// dynamicClusters is set when clusters may also come from CDS, so a name
	// missing from static_resources is not necessarily an error.
	dynamicClusters bool
}

func crossCheck(b *bootstrapv3.Bootstrap, opts Options) []Problem {
	c := &checker{
		opts:         opts,
		ns:           opts.namespace(),
		clusters:     map[string]*clusterv3.Cluster{},
		clusterPaths: map[string]string{},
		dynamicClusters: b.GetDynamicResources().GetCdsConfig() != nil ||
			b.GetDynamicResources().GetCdsResourcesLocator() != "",
	}
	for i, cl := range b.GetStaticResources().GetClusters() {
		p := index("static_resources.clusters", i)
		if prev, dup := c.clusterPaths[cl.GetName()]; dup && cl.GetName() != "" {
			c.add(field(p, "name"), "cluster %q is already defined at %s; Envoy rejects duplicate cluster names", cl.GetName(), prev)
			continue
		}
		c.clusters[cl.GetName()] = cl
		c.clusterPaths[cl.GetName()] = p
	}
	for i, l := range b.GetStaticResources().GetListeners() {
		lp := index("static_resources.listeners", i)
		for j, fc := range l.GetFilterChains() {
			c.filterChain(index(field(lp, "filter_chains"), j), fc)
		}
		if fc := l.GetDefaultFilterChain(); fc != nil {
			c.filterChain(field(lp, "default_filter_chain"), fc)
		}
	}
	return c.problems
}

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// unpack returns the message in a, or nil when a is empty or not linked in
// (protojson has already reported that).
func unpack(a *anypb.Any) proto.Message {
	if a == nil {
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil
	}
	return m
}

func (c *checker) filterChain(path string, fc *listenerv3.FilterChain) {
	for k, f := range fc.GetFilters() {
		if hcm, ok := unpack(f.GetTypedConfig()).(*hcmv3.HttpConnectionManager); ok {
			c.hcm(field(index(field(path, "filters"), k), "typed_config"), hcm, fc.GetTransportSocket() != nil)
		}
	}
}

// authzFilter is one ext_authz entry of an HCM's http_filters.
type authzFilter struct {
	name string
	path string // of its typed_config
	cfg  *extauthzv3.ExtAuthz
	// disabledByDefault is HttpFilter.disabled: the filter runs only on routes
	// whose typed_per_filter_config enables it (the Envoy Gateway layout).
	disabledByDefault bool
}

func (c *checker) hcm(path string, h *hcmv3.HttpConnectionManager, tls bool) {
	filters := h.GetHttpFilters()
	names := make(map[string]bool, len(filters))
	var filterNames []string
	var authz []authzFilter
	jwts := map[string]*jwtauthnv3.JwtAuthentication{} // by typed_config path
	for n, f := range filters {
		names[f.GetName()] = true
		filterNames = append(filterNames, f.GetName())
		tp := field(index(field(path, "http_filters"), n), "typed_config")
		switch cfg := unpack(f.GetTypedConfig()).(type) {
		case *extauthzv3.ExtAuthz:
			authz = append(authz, authzFilter{name: f.GetName(), path: tp, cfg: cfg, disabledByDefault: f.GetDisabled()})
			c.extAuthz(tp, cfg)
		case *jwtauthnv3.JwtAuthentication:
			jwts[tp] = cfg
		}
	}
	c.routerLast(path, filters)
	for _, tp := range slices.Sorted(maps.Keys(jwts)) {
		c.jwtAuthn(tp, jwts[tp], len(authz) > 0)
	}

	if len(authz) > 0 {
		// stepup-authz normalises paths before matching its own route rules;
		// Envoy must route (and so pick the route's policy) on the same path.
		if !h.GetNormalizePath().GetValue() {
			c.add(field(path, "normalize_path"), "must be true: Envoy would route on the raw path (/api/./payout-destination) while stepup-authz matches the normalised one, so the proxy and the server could disagree on which policy applies")
		}
		if !h.GetMergeSlashes() {
			c.add(field(path, "merge_slashes"), "must be true: //api/payout-destination would miss the /api/payout-destination route (and its step-up policy) in Envoy while stepup-authz merges the slashes")
		}
	}

	rc := h.GetRouteConfig()
	if rc == nil {
		return // RDS or scoped routes: nothing to cross-check offline
	}
	rcPath := field(path, "route_config")
	rs := routeScan{c: c, names: names, filterNames: filterNames, authz: authz}
	rs.routeConfig(rcPath, rc)

	for _, f := range authz {
		c.metadataNamespaces(f, rs.withMetadata)
	}
	c.clientCertificates(path, h, tls, authz, rs.needCertificate)
}

// clientCertificates: a certificate-bound token (RFC 8705) passes only when
// stepup-authz sees the client's certificate, which Envoy sends as
// attributes.source.certificate (include_peer_certificate) or in
// x-forwarded-client-cert, and only for a TLS connection it terminates itself
// (CheckRequestUtils::setAttrContextPeer, mutateXfccRequestHeader).
func (c *checker) clientCertificates(path string, h *hcmv3.HttpConnectionManager, tls bool, authz []authzFilter, needCert []string) {
	mode := h.GetForwardClientCertDetails()
	if c.opts.ReadsXFCC && len(authz) > 0 &&
		(mode == hcmv3.HttpConnectionManager_FORWARD_ONLY || mode == hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY) {
		c.add(field(path, "forward_client_cert_details"), "%s passes on an x-forwarded-client-cert the client wrote itself, and stepup-authz (mtls.certificate_from: xfcc) takes its Cert= as the client certificate: a client could name any certificate; use SANITIZE_SET with set_current_client_cert_details: {cert: true}", mode)
	}
	peer := false
	for _, f := range authz {
		if !f.cfg.GetIncludePeerCertificate() {
			continue
		}
		peer = true
		if !tls {
			c.add(field(f.path, "include_peer_certificate"), "is true, but this filter chain has no TLS transport_socket: Envoy fills attributes.source.certificate only for a TLS connection it terminates, so certificate-bound tokens never pass here (see envoy-mtls.yaml)")
		}
	}
	if len(needCert) == 0 || peer {
		return
	}
	if mode == hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY {
		return // a hop in front (a load balancer that terminates TLS) may write the header
	}
	xfcc := (mode == hcmv3.HttpConnectionManager_SANITIZE_SET || mode == hcmv3.HttpConnectionManager_APPEND_FORWARD) &&
		h.GetSetCurrentClientCertDetails().GetCert()
	if !xfcc || !tls {
		c.add(path, "routes %s require sender_constraint: mtls, but no client certificate reaches stepup-authz: set include_peer_certificate: true on the ext_authz filter of a TLS listener (or forward_client_cert_details: SANITIZE_SET with set_current_client_cert_details: {cert: true} and mtls.certificate_from: xfcc)", quoteList(needCert))
	}
}

// routerLast: Envoy stops at the router (it is terminal), so filters after it
// never run, and a chain that does not end in a terminal filter is rejected.
func (c *checker) routerLast(path string, filters []*hcmv3.HttpFilter) {
	if len(filters) == 0 {
		return
	}
	last := len(filters) - 1
	for n, f := range filters {
		if isRouter(f) && n != last {
			c.add(index(field(path, "http_filters"), n), "the router (%s) must be the last HTTP filter; the filters after it (%s) never run", f.GetName(), filterList(filters[n+1:]))
		}
	}
	if f := filters[last]; !isRouter(f) {
		c.add(index(field(path, "http_filters"), last), "the last HTTP filter must be the router (%s), not %q", routerFilterName, f.GetName())
	}
}

func isRouter(f *hcmv3.HttpFilter) bool {
	if f.GetTypedConfig() == nil {
		return f.GetName() == routerFilterName
	}
	_, ok := unpack(f.GetTypedConfig()).(*routerv3.Router)
	return ok
}

func filterList(fs []*hcmv3.HttpFilter) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.GetName()
	}
	return strings.Join(names, ", ")
}

func (c *checker) extAuthz(path string, cfg *extauthzv3.ExtAuthz) {
	if gs := cfg.GetGrpcService(); gs != nil {
		if v := cfg.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
			c.add(field(path, "transport_api_version"), "is %s; must be V3 (Envoy refuses V2 and AUTO for the ext_authz gRPC service)", v)
		}
		if eg := gs.GetEnvoyGrpc(); eg != nil {
			cp := field(path, "grpc_service.envoy_grpc.cluster_name")
			if c.clusterRef(cp, eg.GetClusterName()) {
				c.http2(eg.GetClusterName(), cp)
			}
		}
	}
	if hs := cfg.GetHttpService(); hs != nil {
		c.clusterRef(field(path, "http_service.server_uri.cluster"), hs.GetServerUri().GetCluster())
	}
	if cfg.GetFailureModeAllow() {
		c.add(field(path, "failure_mode_allow"), "is true: when stepup-authz fails or times out every request passes without step-up (fail-open); set false and status_on_error: {code: ServiceUnavailable}")
	}
}

// clusterRef reports a reference to a cluster that is not defined. It returns
// true when the cluster is known statically.
func (c *checker) clusterRef(path, name string) bool {
	if name == "" {
		return false // required fields are PGV's job
	}
	if _, ok := c.clusters[name]; ok {
		return true
	}
	if !c.dynamicClusters {
		c.add(path, "cluster %q is not defined in static_resources.clusters", name)
	}
	return false
}

// http2: gRPC needs HTTP/2. Without it Envoy talks HTTP/1.1 to the authz
// server and every check takes the error path (status_on_error).
func (c *checker) http2(name, refPath string) {
	cl := c.clusters[name]
	for _, a := range cl.GetTypedExtensionProtocolOptions() {
		po, ok := unpack(a).(*upstreamhttpv3.HttpProtocolOptions)
		if !ok {
			continue
		}
		switch {
		case po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil,
			po.GetExplicitHttpConfig().GetHttp3ProtocolOptions() != nil:
			return
		case po.GetAutoConfig() != nil && cl.GetTransportSocket() != nil:
			return // ALPN over TLS negotiates h2
		}
	}
	//lint:ignore SA1019 Envoy still honours the deprecated cluster-level http2_protocol_options, so a config using it speaks HTTP/2.
	if cl.GetHttp2ProtocolOptions() != nil {
		return
	}
	c.add(c.clusterPaths[name], "cluster %q serves the ext_authz gRPC service (%s) but does not speak HTTP/2: set typed_extension_protocol_options[%q].explicit_http_config.http2_protocol_options: {}", name, refPath, httpProtocolOptionsKey)
}

// jwtAuthn: the remote JWKS cluster must exist, and with ext_authz behind it
// the token must be forwarded, or stepup-authz never sees one.
func (c *checker) jwtAuthn(path string, cfg *jwtauthnv3.JwtAuthentication, withAuthz bool) {
	providers := cfg.GetProviders()
	for _, name := range slices.Sorted(maps.Keys(providers)) {
		p := providers[name]
		pp := key(field(path, "providers"), name)
		if uri := p.GetRemoteJwks().GetHttpUri(); uri != nil {
			c.clusterRef(field(pp, "remote_jwks.http_uri.cluster"), uri.GetCluster())
		}
		if withAuthz && !p.GetForward() {
			c.add(field(pp, "forward"), "is false: jwt_authn removes a verified token before ext_authz runs, so stepup-authz sees valid tokens as missing; set forward: true")
		}
	}
}

// metadataNamespaces: Envoy forwards route metadata only for the namespaces an
// ext_authz filter lists, and only to a gRPC service.
func (c *checker) metadataNamespaces(f authzFilter, routes []string) {
	if len(routes) == 0 {
		return
	}
	if f.cfg.GetGrpcService() == nil {
		c.add(f.path, "routes %s carry filter_metadata %q, but route metadata is only sent to a gRPC authorization service (grpc_service)", quoteList(routes), c.ns)
		return
	}
	if !slices.Contains(f.cfg.GetRouteMetadataContextNamespaces(), c.ns) {
		c.add(field(f.path, "route_metadata_context_namespaces"), "must contain %q: routes %s carry filter_metadata %q, which Envoy sends to stepup-authz only for the namespaces listed here", c.ns, quoteList(routes), c.ns)
	}
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// routeScan walks one HCM's inline route_config.
type routeScan struct {
	c           *checker
	names       map[string]bool // http_filters names
	filterNames []string
	authz       []authzFilter
	// withMetadata lists the routes carrying filter_metadata[namespace].
	withMetadata []string
	// needCertificate lists the routes whose metadata says sender_constraint: mtls.
	needCertificate []string
}

func (rs *routeScan) routeConfig(path string, rc *routev3.RouteConfiguration) {
	rs.perFilterConfig(field(path, "typed_per_filter_config"), rc.GetTypedPerFilterConfig())
	for v, vh := range rc.GetVirtualHosts() {
		vp := index(field(path, "virtual_hosts"), v)
		rs.perFilterConfig(field(vp, "typed_per_filter_config"), vh.GetTypedPerFilterConfig())
		if _, ok := vh.GetMetadata().GetFilterMetadata()[rs.c.ns]; ok && len(rs.authz) > 0 {
			rs.c.add(key(field(vp, "metadata.filter_metadata"), rs.c.ns), "virtual host metadata is never sent to ext_authz (only the selected route's metadata is); move it to each route")
		}
		for r, route := range vh.GetRoutes() {
			rs.route(index(field(vp, "routes"), r), route, vh, rc)
		}
	}
}

func (rs *routeScan) route(path string, r *routev3.Route, vh *routev3.VirtualHost, rc *routev3.RouteConfiguration) {
	c := rs.c
	label := ""
	if r.GetName() != "" {
		label = fmt.Sprintf("route %q: ", r.GetName())
	}
	if a := r.GetRoute(); a != nil {
		c.clusterRef(field(path, "route.cluster"), a.GetCluster())
		for i, wc := range a.GetWeightedClusters().GetClusters() {
			wp := index(field(path, "route.weighted_clusters.clusters"), i)
			c.clusterRef(field(wp, "name"), wc.GetName())
			rs.perFilterConfig(field(wp, "typed_per_filter_config"), wc.GetTypedPerFilterConfig())
		}
		for i, m := range a.GetRequestMirrorPolicies() {
			c.clusterRef(field(index(field(path, "route.request_mirror_policies"), i), "cluster"), m.GetCluster())
		}
	}
	rs.perFilterConfig(field(path, "typed_per_filter_config"), r.GetTypedPerFilterConfig())

	md, hasPolicy := r.GetMetadata().GetFilterMetadata()[c.ns]
	mdPath := key(field(path, "metadata.filter_metadata"), c.ns)
	if hasPolicy {
		rs.withMetadata = append(rs.withMetadata, routeLabel(r, path))
		if md.GetFields()["sender_constraint"].GetStringValue() == "mtls" {
			rs.needCertificate = append(rs.needCertificate, routeLabel(r, path))
		}
		valid := true
		if c.opts.CheckPolicy != nil {
			if err := c.opts.CheckPolicy(md.AsMap()); err != nil {
				c.add(mdPath, "%s%v", label, err)
				valid = false
			}
		}
		if valid && c.opts.WarnPolicy != nil {
			for _, w := range c.opts.WarnPolicy(md.AsMap()) {
				c.problems = append(c.problems, Problem{Path: mdPath, Message: label + w, Warning: true})
			}
		}
	}

	if len(rs.authz) == 0 {
		return
	}
	levels := []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), rc.GetTypedPerFilterConfig()}
	for _, f := range rs.authz {
		if authzEnabled(f, levels) {
			return
		}
	}
	// No ext_authz filter runs on this route.
	if hasPolicy {
		c.add(mdPath, "%sext_authz is disabled on this route, so this step-up policy is never enforced", label)
	}
	if r.GetRoute() == nil {
		return // direct responses and redirects never reach an upstream
	}
	removed := map[string]bool{}
	for _, hs := range [][]string{r.GetRequestHeadersToRemove(), vh.GetRequestHeadersToRemove(), rc.GetRequestHeadersToRemove()} {
		for _, h := range hs {
			removed[strings.ToLower(h)] = true
		}
	}
	var missing []string
	for _, h := range identityHeaders {
		if !removed[h] {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		c.add(field(path, "request_headers_to_remove"), "%sext_authz is disabled on this route, so nothing removes client-sent %s: list them in request_headers_to_remove, or forged identity headers reach the upstream", label, strings.Join(missing, ", "))
	}
}

func routeLabel(r *routev3.Route, path string) string {
	if r.GetName() != "" {
		return r.GetName()
	}
	return path
}

// authzEnabled reports whether ext_authz filter f runs for a route, given the
// route's, virtual host's and route configuration's typed_per_filter_config
// (most specific first; the most specific entry wins).
func authzEnabled(f authzFilter, levels []map[string]*anypb.Any) bool {
	for _, m := range levels {
		a, ok := m[f.name]
		if !ok {
			continue
		}
		msg := unpack(a)
		if fc, ok := msg.(*routev3.FilterConfig); ok {
			if fc.GetDisabled() {
				return false
			}
			msg = unpack(fc.GetConfig())
		}
		if pr, ok := msg.(*extauthzv3.ExtAuthzPerRoute); ok {
			return !pr.GetDisabled()
		}
		return true // any per-route config enables a filter disabled by default
	}
	return !f.disabledByDefault
}

// perFilterConfig checks one typed_per_filter_config map. Since Envoy 1.29 the
// key must be the filter's name in http_filters; anything else is accepted at
// load time and then silently ignored.
func (rs *routeScan) perFilterConfig(path string, m map[string]*anypb.Any) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kp := key(path, k)
		if !rs.names[k] {
			rs.c.add(kp, "no HTTP filter is named %q in this http_connection_manager (%s); Envoy ignores config under an unknown name", k, strings.Join(rs.filterNames, ", "))
		}
		msg := unpack(m[k])
		if fc, ok := msg.(*routev3.FilterConfig); ok {
			kp = field(kp, "config")
			msg = unpack(fc.GetConfig())
		}
		if pr, ok := msg.(*extauthzv3.ExtAuthzPerRoute); ok {
			rs.checkSettings(field(kp, "check_settings"), pr.GetCheckSettings())
		}
	}
}

func (rs *routeScan) checkSettings(path string, cs *extauthzv3.CheckSettings) {
	if cs == nil {
		return
	}
	if cs.GetWithRequestBody() != nil && cs.GetDisableRequestBodyBuffering() {
		rs.c.add(path, "with_request_body and disable_request_body_buffering are both set; Envoy accepts only one")
	}
	if ce := cs.GetContextExtensions(); len(ce) > 0 {
		valid := true
		if rs.c.opts.CheckExtensions != nil {
			if err := rs.c.opts.CheckExtensions(ce); err != nil {
				rs.c.add(field(path, "context_extensions"), "%v", err)
				valid = false
			}
		}
		if valid && rs.c.opts.WarnExtensions != nil {
			for _, w := range rs.c.opts.WarnExtensions(ce) {
				rs.c.problems = append(rs.c.problems, Problem{Path: field(path, "context_extensions"), Message: w, Warning: true})
			}
		}
	}
}
