package proxy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Names of the extensions the proxy implements.
const (
	hcmType              = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	httpProtocolOptionsK = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	extAuthzNamespace    = "envoy.filters.http.ext_authz"
	jwtAuthnNamespace    = "envoy.filters.http.jwt_authn"
)

// errUnsupported marks configuration the development proxy does not implement.
var errUnsupported = errors.New("not supported by the development proxy")

// unsupported names a field the proxy refuses, with an optional reason.
func unsupported(path, why string) error {
	if why == "" {
		return fmt.Errorf("%s: %w", path, errUnsupported)
	}
	return fmt.Errorf("%s: %w (%s)", path, errUnsupported, why)
}

// only refuses any field of m that is set and not listed in supported. Fields
// left at their proto3 default are not "set", so `failure_mode_allow: false`
// is always accepted. This is what keeps the proxy from guessing: a field it
// does not know is an error naming that field.
func only(path string, m proto.Message, supported ...string) error {
	var bad []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(supported, string(fd.Name())) {
			bad = append(bad, string(fd.Name()))
		}
		return true
	})
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return unsupported(join(path, bad[0]), "")
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func indexed(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func keyed(path, k string) string { return fmt.Sprintf("%s[%q]", path, k) }

// unpack opens an Any and runs its PGV validation (ENVOY.md §5: PGV never
// looks inside an Any, so every message the proxy acts on is validated here).
func unpack(path string, a *anypb.Any) (proto.Message, error) {
	if a == nil {
		return nil, fmt.Errorf("%s: typed_config is required", path)
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
	}
	return m, nil
}

// durationOr returns d, or def when d is unset.
func durationOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// cluster is one static cluster; the proxy always uses its first endpoint.
type cluster struct {
	name           string
	addr           string // host:port
	http2          bool
	connectTimeout time.Duration
}

// build turns a loaded bootstrap into the proxy's configuration.
func (p *Proxy) build(b *bootstrapv3.Bootstrap) error {
	if err := only("", b, "node", "static_resources", "admin"); err != nil {
		return err
	}
	sr := b.GetStaticResources()
	if err := only("static_resources", sr, "listeners", "clusters"); err != nil {
		return err
	}
	p.clusters = map[string]*cluster{}
	for i, c := range sr.GetClusters() {
		cl, err := buildCluster(indexed("static_resources.clusters", i), c)
		if err != nil {
			return err
		}
		if _, dup := p.clusters[cl.name]; dup {
			return fmt.Errorf("%s.name: cluster %q is defined twice", indexed("static_resources.clusters", i), cl.name)
		}
		p.clusters[cl.name] = cl
	}
	for _, name := range slices.Sorted(maps.Keys(p.opts.ClusterAddrs)) {
		if _, _, err := net.SplitHostPort(p.opts.ClusterAddrs[name]); err != nil {
			return fmt.Errorf("Options.ClusterAddrs[%q]: %v", name, err)
		}
		cl, ok := p.clusters[name]
		if !ok {
			// One map serves every shipped bootstrap (only the jwt_authn one
			// has idp_jwks), so a name the bootstrap lacks is not an error.
			p.log.Debug("Options.ClusterAddrs names a cluster the bootstrap does not define; ignored", "cluster", name)
			continue
		}
		cl.addr = p.opts.ClusterAddrs[name]
	}

	ls := sr.GetListeners()
	if len(ls) != 1 {
		return unsupported("static_resources.listeners", fmt.Sprintf("exactly one listener is supported, found %d", len(ls)))
	}
	return p.buildListener("static_resources.listeners[0]", ls[0])
}

func socketAddress(path string, a *corev3.Address) (string, error) {
	if err := only(path, a, "socket_address"); err != nil {
		return "", err
	}
	sa := a.GetSocketAddress()
	path = join(path, "socket_address")
	if err := only(path, sa, "address", "port_value", "protocol"); err != nil {
		return "", err
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", unsupported(join(path, "protocol"), "only TCP")
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)), nil
}

func buildCluster(path string, c *clusterv3.Cluster) (*cluster, error) {
	if c.GetTransportSocket() != nil {
		return nil, unsupported(join(path, "transport_socket"), "TLS to upstreams is not implemented")
	}
	if err := only(path, c, "name", "type", "connect_timeout", "load_assignment", "typed_extension_protocol_options",
		"health_checks", "lb_policy", "dns_lookup_family", "http2_protocol_options"); err != nil {
		return nil, err
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
	default:
		return nil, unsupported(join(path, "type"), fmt.Sprintf("%s; only STATIC, STRICT_DNS and LOGICAL_DNS", c.GetType()))
	}
	cl := &cluster{
		name:           c.GetName(),
		connectTimeout: durationOr(c.GetConnectTimeout(), 5*time.Second),
		//lint:ignore SA1019 Envoy still honours the deprecated cluster-level http2_protocol_options, so the proxy must too.
		http2: c.GetHttp2ProtocolOptions() != nil,
	}
	for _, k := range slices.Sorted(maps.Keys(c.GetTypedExtensionProtocolOptions())) {
		kp := keyed(join(path, "typed_extension_protocol_options"), k)
		if k != httpProtocolOptionsK {
			return nil, unsupported(kp, "")
		}
		m, err := unpack(kp, c.GetTypedExtensionProtocolOptions()[k])
		if err != nil {
			return nil, err
		}
		po, ok := m.(*upstreamhttpv3.HttpProtocolOptions)
		if !ok {
			return nil, unsupported(kp, fmt.Sprintf("type %T", m))
		}
		if err := only(kp, po, "explicit_http_config", "common_http_protocol_options"); err != nil {
			return nil, err
		}
		if po.GetExplicitHttpConfig() == nil {
			return nil, unsupported(kp, "only explicit_http_config")
		}
		ec := po.GetExplicitHttpConfig()
		switch {
		case ec.GetHttp2ProtocolOptions() != nil:
			cl.http2 = true
		case ec.GetHttpProtocolOptions() != nil:
		default:
			return nil, unsupported(join(kp, "explicit_http_config"), "only http_protocol_options or http2_protocol_options")
		}
	}
	la := c.GetLoadAssignment()
	lp := join(path, "load_assignment")
	if la == nil {
		return nil, fmt.Errorf("%s: required (the proxy has no service discovery)", lp)
	}
	if err := only(lp, la, "cluster_name", "endpoints"); err != nil {
		return nil, err
	}
	if len(la.GetEndpoints()) == 0 || len(la.GetEndpoints()[0].GetLbEndpoints()) == 0 {
		return nil, fmt.Errorf("%s.endpoints: at least one lb_endpoint is required", lp)
	}
	ep := la.GetEndpoints()[0].GetLbEndpoints()[0]
	epPath := join(lp, "endpoints[0].lb_endpoints[0]")
	if err := only(epPath, ep, "endpoint"); err != nil {
		return nil, err
	}
	if err := only(join(epPath, "endpoint"), ep.GetEndpoint(), "address"); err != nil {
		return nil, err
	}
	addr, err := socketAddress(join(epPath, "endpoint.address"), ep.GetEndpoint().GetAddress())
	if err != nil {
		return nil, err
	}
	cl.addr = addr
	return cl, nil
}

func (p *Proxy) buildListener(path string, l *listenerv3.Listener) error {
	if err := only(path, l, "name", "address", "filter_chains", "per_connection_buffer_limit_bytes", "traffic_direction"); err != nil {
		return err
	}
	addr, err := socketAddress(join(path, "address"), l.GetAddress())
	if err != nil {
		return err
	}
	p.listenAddr = addr
	if p.opts.ListenerAddr != "" {
		if _, _, err := net.SplitHostPort(p.opts.ListenerAddr); err != nil {
			return fmt.Errorf("Options.ListenerAddr: %v", err)
		}
		p.listenAddr = p.opts.ListenerAddr
	}
	fcs := l.GetFilterChains()
	if len(fcs) != 1 {
		return unsupported(join(path, "filter_chains"), fmt.Sprintf("exactly one filter chain is supported, found %d", len(fcs)))
	}
	fcp := join(path, "filter_chains[0]")
	if err := only(fcp, fcs[0], "filters", "name", "transport_socket"); err != nil {
		return err
	}
	if ts := fcs[0].GetTransportSocket(); ts != nil {
		if p.tls, err = buildListenerTLS(join(fcp, "transport_socket"), ts); err != nil {
			return err
		}
	}
	fs := fcs[0].GetFilters()
	if len(fs) != 1 {
		return unsupported(join(fcp, "filters"), fmt.Sprintf("exactly one network filter (the http_connection_manager) is supported, found %d", len(fs)))
	}
	fp := join(fcp, "filters[0]")
	if err := only(fp, fs[0], "name", "typed_config"); err != nil {
		return err
	}
	tp := join(fp, "typed_config")
	if fs[0].GetTypedConfig().GetTypeUrl() != "type.googleapis.com/"+hcmType {
		return unsupported(tp, fmt.Sprintf("network filter %q; only the http_connection_manager", fs[0].GetTypedConfig().GetTypeUrl()))
	}
	m, err := unpack(tp, fs[0].GetTypedConfig())
	if err != nil {
		return err
	}
	h, err := p.buildHCM(tp, m.(*hcmv3.HttpConnectionManager))
	if err != nil {
		return err
	}
	p.hcm = h
	return nil
}

// hcmConfig is the HTTP connection manager.
type hcmConfig struct {
	normalize, merge  bool
	escaped           hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
	useRemoteAddress  bool
	xffTrustedHops    uint32
	skipXffAppend     bool
	xfcc              xfccConfig
	generateRequestID bool
	preserveRequestID bool // preserve_external_request_id
	serverName        string
	serverTransform   hcmv3.HttpConnectionManager_ServerHeaderTransformation
	stripAnyPort      bool
	stripMatchingPort bool
	acceptH2C         bool
	routes            *routeConfig
	filters           []*filterEntry
	router            *routerConfig
	accessLogs        []*accessLogger
}

// filterEntry is one http_filters entry other than the router.
type filterEntry struct {
	name     string
	disabled bool // HttpFilter.disabled: runs only where per-route config enables it
	factory  filterFactory
}

// filterFactory is an HTTP filter's configuration.
type filterFactory interface {
	// newStream makes the per-request state.
	newStream(s *stream) filterStream
	// perRoute parses a typed_per_filter_config entry for this filter; a
	// filter without per-route configuration returns an error.
	perRoute(path string, m proto.Message) (any, error)
}

func (p *Proxy) buildHCM(path string, h *hcmv3.HttpConnectionManager) (*hcmConfig, error) {
	if h.GetRds() != nil {
		return nil, unsupported(join(path, "rds"), "RDS; use an inline route_config")
	}
	if h.GetScopedRoutes() != nil {
		return nil, unsupported(join(path, "scoped_routes"), "use an inline route_config")
	}
	if err := only(path, h, "codec_type", "stat_prefix", "route_config", "http_filters", "normalize_path", "merge_slashes",
		"path_with_escaped_slashes_action", "access_log", "use_remote_address", "xff_num_trusted_hops", "skip_xff_append", "generate_request_id",
		"forward_client_cert_details", "set_current_client_cert_details", "preserve_external_request_id",
		"server_name", "server_header_transformation", "strip_any_host_port", "strip_matching_host_port",
		// Timeouts do not change what a request or an authorization server sees.
		"stream_idle_timeout", "request_timeout", "request_headers_timeout", "drain_timeout", "delayed_close_timeout",
		"common_http_protocol_options"); err != nil {
		return nil, err
	}
	if cp := h.GetCommonHttpProtocolOptions(); cp != nil {
		if err := only(join(path, "common_http_protocol_options"), cp, "idle_timeout", "max_connection_duration", "max_stream_duration"); err != nil {
			return nil, err
		}
	}
	c := &hcmConfig{
		normalize:         h.GetNormalizePath().GetValue(),
		merge:             h.GetMergeSlashes(),
		escaped:           h.GetPathWithEscapedSlashesAction(),
		useRemoteAddress:  h.GetUseRemoteAddress().GetValue(),
		xffTrustedHops:    h.GetXffNumTrustedHops(),
		preserveRequestID: h.GetPreserveExternalRequestId(),
		skipXffAppend:     h.GetSkipXffAppend(),
		generateRequestID: h.GetGenerateRequestId() == nil || h.GetGenerateRequestId().GetValue(),
		serverName:        h.GetServerName(),
		serverTransform:   h.GetServerHeaderTransformation(),
		stripAnyPort:      h.GetStripAnyHostPort(),
		stripMatchingPort: h.GetStripMatchingHostPort(),
	}
	var err error
	if c.xfcc, err = buildXFCC(path, h); err != nil {
		return nil, err
	}
	if c.serverName == "" {
		c.serverName = "envoy" // HttpConnectionManager.server_name: 'defaults to "envoy"'
	}
	switch h.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		c.acceptH2C = true // AUTO: HTTP/1.1 or HTTP/2 with prior knowledge
	case hcmv3.HttpConnectionManager_HTTP1:
	default:
		return nil, unsupported(join(path, "codec_type"), h.GetCodecType().String()+"; only AUTO and HTTP1")
	}
	if h.GetNormalizePath() == nil {
		// Unset normalize_path defers to a runtime flag that defaults to false.
		c.normalize = false
	}

	for i, al := range h.GetAccessLog() {
		l, err := p.buildAccessLog(indexed(join(path, "access_log"), i), al)
		if err != nil {
			return nil, err
		}
		c.accessLogs = append(c.accessLogs, l)
	}

	filters := h.GetHttpFilters()
	if len(filters) == 0 {
		return nil, fmt.Errorf("%s: at least the router is required", join(path, "http_filters"))
	}
	for i, f := range filters {
		fp := indexed(join(path, "http_filters"), i)
		if err := only(fp, f, "name", "typed_config", "disabled"); err != nil {
			return nil, err
		}
		tp := join(fp, "typed_config")
		m, err := unpack(tp, f.GetTypedConfig())
		if err != nil {
			return nil, err
		}
		if r, ok := m.(*routerv3.Router); ok {
			// Envoy requires the terminal router last; filters after it never run.
			if i != len(filters)-1 {
				return nil, fmt.Errorf("%s: the router must be the last HTTP filter", fp)
			}
			if f.GetDisabled() {
				return nil, unsupported(join(fp, "disabled"), "the router cannot be disabled")
			}
			rc, err := buildRouter(tp, r)
			if err != nil {
				return nil, err
			}
			c.router = rc
			continue
		}
		if i == len(filters)-1 {
			return nil, fmt.Errorf("%s: the last HTTP filter must be the router (envoy.filters.http.router), not %q", fp, f.GetName())
		}
		if slices.ContainsFunc(c.filters, func(e *filterEntry) bool { return e.name == f.GetName() }) {
			return nil, fmt.Errorf("%s.name: %q is used twice", fp, f.GetName())
		}
		var ff filterFactory
		switch cfg := m.(type) {
		case *corsv3.Cors:
			ff, err = buildCors(tp, f.GetName(), cfg)
		case *extauthzv3.ExtAuthz:
			ff, err = p.buildExtAuthz(tp, f.GetName(), cfg)
		case *jwtauthnv3.JwtAuthentication:
			if f.GetDisabled() {
				return nil, unsupported(join(fp, "disabled"), "for jwt_authn")
			}
			ff, err = p.buildJwtAuthn(tp, cfg)
		default:
			return nil, unsupported(fp, fmt.Sprintf("HTTP filter %q (%s); supported: cors, jwt_authn, ext_authz, router", f.GetName(), f.GetTypedConfig().GetTypeUrl()))
		}
		if err != nil {
			return nil, err
		}
		c.filters = append(c.filters, &filterEntry{name: f.GetName(), disabled: f.GetDisabled(), factory: ff})
	}

	rcPath := join(path, "route_config")
	if h.GetRouteConfig() == nil {
		return nil, fmt.Errorf("%s: an inline route_config is required", rcPath)
	}
	rc, err := p.buildRouteConfig(rcPath, h.GetRouteConfig(), c.filters)
	if err != nil {
		return nil, err
	}
	c.routes = rc
	return c, nil
}

// perFilter is one typed_per_filter_config entry.
type perFilter struct {
	disabled bool // FilterConfig.disabled
	cfg      any  // the filter's parsed per-route config; nil for a bare FilterConfig
}

type routeConfig struct {
	vhosts          []*virtualHost
	ignorePort      bool
	headersToRemove []string
	perFilter       map[string]*perFilter
}

type virtualHost struct {
	name            string
	domains         []string
	routes          []*route
	headersToRemove []string
	perFilter       map[string]*perFilter
	rc              *routeConfig
}

type route struct {
	name            string
	match           *routeMatch
	cluster         string
	timeout         time.Duration // 0: none
	metadata        *corev3.Metadata
	headersToRemove []string
	perFilter       map[string]*perFilter
	vh              *virtualHost
}

// perFilterConfigs returns the route configuration's, virtual host's and
// route's entries for filter name, least specific first (Envoy's
// Http::Utility::getAllPerFilterConfig order).
func (r *route) perFilterConfigs(name string) []*perFilter {
	var out []*perFilter
	for _, m := range []map[string]*perFilter{r.vh.rc.perFilter, r.vh.perFilter, r.perFilter} {
		if pf, ok := m[name]; ok {
			out = append(out, pf)
		}
	}
	return out
}

// mostSpecific returns the most specific entry for filter name, or nil.
func (r *route) mostSpecific(name string) *perFilter {
	all := r.perFilterConfigs(name)
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// filterEnabled reports whether filter e runs on route r: FilterConfig's
// disabled turns it off; a filter disabled in http_filters runs only where a
// per-route config names it (HttpFilter.disabled, route FilterConfig docs).
func (r *route) filterEnabled(e *filterEntry) bool {
	pf := r.mostSpecific(e.name)
	if pf == nil {
		return !e.disabled
	}
	return !pf.disabled
}

func (p *Proxy) buildRouteConfig(path string, rc *routev3.RouteConfiguration, filters []*filterEntry) (*routeConfig, error) {
	if err := only(path, rc, "name", "virtual_hosts", "request_headers_to_remove", "validate_clusters",
		"ignore_port_in_host_matching", "typed_per_filter_config"); err != nil {
		return nil, err
	}
	out := &routeConfig{ignorePort: rc.GetIgnorePortInHostMatching(), headersToRemove: lowerAll(rc.GetRequestHeadersToRemove())}
	var err error
	if out.perFilter, err = p.buildPerFilter(join(path, "typed_per_filter_config"), rc.GetTypedPerFilterConfig(), filters); err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for i, vh := range rc.GetVirtualHosts() {
		vp := indexed(join(path, "virtual_hosts"), i)
		if err := only(vp, vh, "name", "domains", "routes", "request_headers_to_remove", "typed_per_filter_config", "metadata"); err != nil {
			return nil, err
		}
		v := &virtualHost{name: vh.GetName(), headersToRemove: lowerAll(vh.GetRequestHeadersToRemove()), rc: out}
		for j, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			if prev, dup := seen[d]; dup {
				// config_impl.cc: "Only unique values for domains are permitted."
				return nil, fmt.Errorf("%s: domain %q is already used by %s", indexed(join(vp, "domains"), j), d, prev)
			}
			seen[d] = vp
			v.domains = append(v.domains, d)
		}
		if v.perFilter, err = p.buildPerFilter(join(vp, "typed_per_filter_config"), vh.GetTypedPerFilterConfig(), filters); err != nil {
			return nil, err
		}
		for j, r := range vh.GetRoutes() {
			rt, err := p.buildRoute(indexed(join(vp, "routes"), j), r, filters)
			if err != nil {
				return nil, err
			}
			rt.vh = v
			v.routes = append(v.routes, rt)
		}
		out.vhosts = append(out.vhosts, v)
	}
	return out, nil
}

func lowerAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

func (p *Proxy) buildRoute(path string, r *routev3.Route, filters []*filterEntry) (*route, error) {
	if r.GetRoute() == nil {
		return nil, unsupported(path, "only routes with a route action (no redirect, direct_response or filter_action)")
	}
	if err := only(path, r, "name", "match", "route", "metadata", "typed_per_filter_config", "request_headers_to_remove"); err != nil {
		return nil, err
	}
	m, err := newRouteMatch(join(path, "match"), r.GetMatch())
	if err != nil {
		return nil, err
	}
	ap := join(path, "route")
	a := r.GetRoute()
	if err := only(ap, a, "cluster", "timeout", "idle_timeout"); err != nil {
		return nil, err
	}
	if _, ok := p.clusters[a.GetCluster()]; !ok {
		return nil, fmt.Errorf("%s.cluster: cluster %q is not defined in static_resources.clusters", ap, a.GetCluster())
	}
	rt := &route{
		name:    r.GetName(),
		match:   m,
		cluster: a.GetCluster(),
		// RouteAction.timeout: "If not specified, the default is 15s"; 0 disables it.
		timeout:         durationOr(a.GetTimeout(), 15*time.Second),
		metadata:        r.GetMetadata(),
		headersToRemove: lowerAll(r.GetRequestHeadersToRemove()),
	}
	if md := r.GetMetadata(); md != nil {
		if err := only(join(path, "metadata"), md, "filter_metadata", "typed_filter_metadata"); err != nil {
			return nil, err
		}
	}
	if rt.perFilter, err = p.buildPerFilter(join(path, "typed_per_filter_config"), r.GetTypedPerFilterConfig(), filters); err != nil {
		return nil, err
	}
	return rt, nil
}

// buildPerFilter parses one typed_per_filter_config map. Since Envoy 1.29 a
// key must equal an http_filters name; any other key is accepted by Envoy and
// then silently ignored (ENVOY.md §3), so the proxy ignores it too, with a
// warning.
func (p *Proxy) buildPerFilter(path string, m map[string]*anypb.Any, filters []*filterEntry) (map[string]*perFilter, error) {
	out := map[string]*perFilter{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kp := keyed(path, k)
		i := slices.IndexFunc(filters, func(e *filterEntry) bool { return e.name == k })
		if i < 0 {
			p.log.Warn("envoy config: typed_per_filter_config key names no HTTP filter; Envoy ignores it", "path", kp)
			continue
		}
		msg, err := unpack(kp, m[k])
		if err != nil {
			return nil, err
		}
		pf := &perFilter{}
		if fc, ok := msg.(*routev3.FilterConfig); ok {
			if err := only(kp, fc, "config", "disabled", "is_optional"); err != nil {
				return nil, err
			}
			pf.disabled = fc.GetDisabled()
			if fc.GetConfig() == nil {
				out[k] = pf
				continue
			}
			kp = join(kp, "config")
			if msg, err = unpack(kp, fc.GetConfig()); err != nil {
				return nil, err
			}
		}
		if pf.cfg, err = filters[i].factory.perRoute(kp, msg); err != nil {
			return nil, err
		}
		out[k] = pf
	}
	return out, nil
}

// selectVirtualHost follows RouteMatcher::findVirtualHost
// (source/common/router/config_impl.cc): the host is lower-cased; exact
// domains first, then suffix wildcards ("*.foo.com") and prefix wildcards
// ("foo.*"), longest first, a wildcard never matching the empty string, then
// "*". The port is part of the host unless ignore_port_in_host_matching (or
// the HCM's strip_*_host_port) removed it.
func (rc *routeConfig) selectVirtualHost(host string) *virtualHost {
	host = strings.ToLower(host)
	if rc.ignorePort {
		host = stripPort(host)
	}
	var best *virtualHost
	bestLen, bestKind := -1, 99
	for _, vh := range rc.vhosts {
		for _, d := range vh.domains {
			kind, l := -1, len(d)
			switch {
			case d == host:
				kind = 0
			case d == "*":
				kind, l = 3, 0
			case strings.HasPrefix(d, "*") && len(host) > len(d)-1 && strings.HasSuffix(host, d[1:]):
				kind = 1
			case strings.HasSuffix(d, "*") && len(host) > len(d)-1 && strings.HasPrefix(host, d[:len(d)-1]):
				kind = 2
			}
			if kind < 0 {
				continue
			}
			if kind < bestKind || kind == bestKind && l > bestLen {
				best, bestKind, bestLen = vh, kind, l
			}
		}
	}
	return best
}

// stripPort removes a ":port" suffix from host (IPv6 literals keep their
// brackets).
func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		if _, err := strconv.Atoi(host[i+1:]); err == nil {
			return host[:i]
		}
	}
	return host
}

// selectRoute returns the first route of the virtual host that matches
// (first match wins), or nil.
func (rc *routeConfig) selectRoute(h *headerMap) *route {
	vh := rc.selectVirtualHost(h.value(":authority"))
	if vh == nil {
		return nil
	}
	for _, r := range vh.routes {
		if r.match.match(h) {
			return r
		}
	}
	return nil
}

// warnOnce logs msg once per key.
func (p *Proxy) warnOnce(key, msg string, args ...any) {
	if _, loaded := p.warned.LoadOrStore(key, true); !loaded {
		p.log.Warn(msg, args...)
	}
}
