package proxy

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults of the ext_authz filter (source/extensions/filters/http/ext_authz/config.cc
// and the ExtAuthz proto).
const (
	defaultAuthzTimeout  = 200 * time.Millisecond
	defaultStatusOnError = http.StatusForbidden
	failureModeHeader    = "x-envoy-auth-failure-mode-allowed"
	partialBodyHeader    = "x-envoy-auth-partial-body"
)

// extAuthzFilter is envoy.filters.http.ext_authz with a gRPC service
// (source/extensions/filters/http/ext_authz/ext_authz.cc and
// source/extensions/filters/common/ext_authz/*; ENVOY.md §1-3).
type extAuthzFilter struct {
	name    string
	client  authv3.AuthorizationClient
	timeout time.Duration
	md      metadata.MD // grpc_service.initial_metadata
	maxRecv int

	failureModeAllow          bool
	failureModeAllowHeaderAdd bool
	statusOnError             int
	metadataNS                []string
	routeMetadataNS           []string
	routeTypedMetadataNS      []string
	allowed, disallowed       listMatcher
	encodeRaw                 bool
	includePeerCert           bool
	includeTLSSession         bool
	clearRouteCache           bool
	validateMutations         bool
	ingestMetadata            bool
	maxDeniedBody             uint32
}

// extAuthzPerRoute is one ExtAuthzPerRoute.
type extAuthzPerRoute struct {
	disabled          bool
	contextExtensions map[string]string
}

func (p *Proxy) buildExtAuthz(path, name string, c *extauthzv3.ExtAuthz) (*extAuthzFilter, error) {
	if c.GetHttpService() != nil {
		return nil, unsupported(join(path, "http_service"), "only the gRPC authorization service")
	}
	if err := only(path, c, "grpc_service", "transport_api_version", "failure_mode_allow", "failure_mode_allow_header_add",
		"status_on_error", "metadata_context_namespaces", "typed_metadata_context_namespaces",
		"route_metadata_context_namespaces", "route_typed_metadata_context_namespaces", "allowed_headers",
		"disallowed_headers", "encode_raw_headers", "clear_route_cache", "validate_mutations",
		"enable_dynamic_metadata_ingestion", "max_denied_response_body_bytes",
		// source.certificate and tls_session.sni, on a TLS listener.
		"include_peer_certificate", "include_tls_session",
		// Stats, logging and tracing only.
		"stat_prefix", "charge_cluster_response_stats", "emit_filter_state_stats", "filter_metadata", "emit_client_span"); err != nil {
		return nil, err
	}
	// Envoy's checkTransportVersion refuses AUTO and V2 for the gRPC client.
	if c.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		return nil, fmt.Errorf("%s.transport_api_version: is %s; Envoy requires V3", path, c.GetTransportApiVersion())
	}
	gs := c.GetGrpcService()
	gp := join(path, "grpc_service")
	if gs == nil {
		return nil, fmt.Errorf("%s: required", gp)
	}
	if gs.GetGoogleGrpc() != nil {
		return nil, unsupported(join(gp, "google_grpc"), "use envoy_grpc")
	}
	if err := only(gp, gs, "envoy_grpc", "timeout", "initial_metadata"); err != nil {
		return nil, err
	}
	eg := gs.GetEnvoyGrpc()
	ep := join(gp, "envoy_grpc")
	if err := only(ep, eg, "cluster_name", "authority", "max_receive_message_length", "skip_envoy_headers"); err != nil {
		return nil, err
	}
	cl, ok := p.clusters[eg.GetClusterName()]
	if !ok {
		return nil, fmt.Errorf("%s.cluster_name: cluster %q is not defined in static_resources.clusters", ep, eg.GetClusterName())
	}
	if !cl.http2 {
		// Envoy would speak HTTP/1.1 to the gRPC server and every check would
		// take the error path (ENVOY.md §4); refuse rather than emulate that.
		return nil, fmt.Errorf("%s.cluster_name: cluster %q does not speak HTTP/2: set typed_extension_protocol_options[%q].explicit_http_config.http2_protocol_options: {}", ep, cl.name, httpProtocolOptionsK)
	}
	f := &extAuthzFilter{
		name:                      name,
		timeout:                   defaultAuthzTimeout,
		failureModeAllow:          c.GetFailureModeAllow(),
		failureModeAllowHeaderAdd: c.GetFailureModeAllowHeaderAdd(),
		statusOnError:             defaultStatusOnError,
		metadataNS:                c.GetMetadataContextNamespaces(),
		routeMetadataNS:           c.GetRouteMetadataContextNamespaces(),
		routeTypedMetadataNS:      c.GetRouteTypedMetadataContextNamespaces(),
		encodeRaw:                 c.GetEncodeRawHeaders(),
		includePeerCert:           c.GetIncludePeerCertificate(),
		includeTLSSession:         c.GetIncludeTlsSession(),
		clearRouteCache:           c.GetClearRouteCache(),
		validateMutations:         c.GetValidateMutations(),
		ingestMetadata:            c.GetEnableDynamicMetadataIngestion() == nil || c.GetEnableDynamicMetadataIngestion().GetValue(),
		maxDeniedBody:             c.GetMaxDeniedResponseBodyBytes(),
		maxRecv:                   int(eg.GetMaxReceiveMessageLength().GetValue()),
	}
	if len(c.GetTypedMetadataContextNamespaces()) > 0 {
		// No filter here writes typed dynamic metadata, so there is never
		// anything to forward; accepted for fidelity, warned about.
		p.log.Warn("envoy config: typed_metadata_context_namespaces has no effect in the development proxy", "path", join(path, "typed_metadata_context_namespaces"))
	}
	if t := gs.GetTimeout(); t != nil {
		if t.AsDuration() <= 0 {
			return nil, unsupported(join(gp, "timeout"), "a zero timeout")
		}
		f.timeout = t.AsDuration()
	}
	if code := c.GetStatusOnError().GetCode(); code != 0 {
		f.statusOnError = int(code)
	}
	var err error
	if f.allowed, err = newListMatcher(join(path, "allowed_headers"), c.GetAllowedHeaders()); err != nil {
		return nil, err
	}
	if f.disallowed, err = newListMatcher(join(path, "disallowed_headers"), c.GetDisallowedHeaders()); err != nil {
		return nil, err
	}
	for i, hv := range gs.GetInitialMetadata() {
		if err := only(indexed(join(gp, "initial_metadata"), i), hv, "key", "value"); err != nil {
			return nil, err
		}
		if f.md == nil {
			f.md = metadata.MD{}
		}
		f.md.Append(hv.GetKey(), hv.GetValue())
	}

	cc, err := p.grpcConn(cl, eg.GetAuthority())
	if err != nil {
		return nil, fmt.Errorf("%s: %v", ep, err)
	}
	f.client = authv3.NewAuthorizationClient(cc)
	return f, nil
}

// grpcConn returns a client connection to a cluster. Envoy's envoy_grpc
// client uses the cluster name as :authority unless authority is set
// (GrpcService.EnvoyGrpc.authority).
func (p *Proxy) grpcConn(cl *cluster, authority string) (*grpc.ClientConn, error) {
	if authority == "" {
		authority = cl.name
	}
	key := cl.name + "\x00" + authority
	if cc, ok := p.grpcConns[key]; ok {
		return cc, nil
	}
	// A short reconnect backoff: Envoy opens a new connection for the next
	// request, so an authz server that comes back is used again at once.
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = 50*time.Millisecond, time.Second
	cc, err := grpc.NewClient("passthrough:///"+cl.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(authority),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: cl.connectTimeout}),
	)
	if err != nil {
		return nil, err
	}
	p.grpcConns[key] = cc
	return cc, nil
}

func (f *extAuthzFilter) perRoute(path string, m proto.Message) (any, error) {
	pr, ok := m.(*extauthzv3.ExtAuthzPerRoute)
	if !ok {
		return nil, unsupported(path, fmt.Sprintf("%T for the ext_authz filter; expected an ExtAuthzPerRoute", m))
	}
	if err := only(path, pr, "disabled", "check_settings"); err != nil {
		return nil, err
	}
	out := &extAuthzPerRoute{disabled: pr.GetDisabled()}
	if cs := pr.GetCheckSettings(); cs != nil {
		if err := only(join(path, "check_settings"), cs, "context_extensions"); err != nil {
			return nil, err
		}
		out.contextExtensions = cs.GetContextExtensions()
	}
	return out, nil
}

type extAuthzStream struct {
	f *extAuthzFilter
	// OkHttpResponse.response_headers_to_add, applied when encoding.
	responseMutations []*corev3.HeaderValueOption
}

func (f *extAuthzFilter) newStream(s *stream) filterStream { return &extAuthzStream{f: f} }

// routeSettings returns whether the check is skipped and the context
// extensions merged route configuration -> virtual host -> route, the more
// specific key winning (FilterConfigPerRoute::merge); only the most specific
// ExtAuthzPerRoute decides "disabled" (Filter::getPerRouteFlags).
func (f *extAuthzFilter) routeSettings(r *route) (bool, map[string]string) {
	var ce map[string]string
	var last *extAuthzPerRoute
	for _, pf := range r.perFilterConfigs(f.name) {
		pr, ok := pf.cfg.(*extAuthzPerRoute)
		if !ok {
			continue
		}
		last = pr
		if len(pr.contextExtensions) > 0 {
			if ce == nil {
				ce = map[string]string{}
			}
			maps.Copy(ce, pr.contextExtensions)
		}
	}
	if last != nil && last.disabled {
		return true, nil
	}
	return false, ce
}

func (x *extAuthzStream) decodeHeaders(s *stream) *localReply {
	f := x.f
	if s.route == nil {
		// getPerRouteFlags: no route, no check (the router answers 404).
		return nil
	}
	skip, ce := f.routeSettings(s.route)
	if skip {
		return nil
	}
	req := f.checkRequest(s, ce)
	ctx, cancel := context.WithTimeout(s.r.Context(), f.timeout)
	defer cancel()
	if f.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, f.md.Copy())
	}
	var opts []grpc.CallOption
	if f.maxRecv > 0 {
		opts = append(opts, grpc.MaxCallRecvMsgSize(f.maxRecv))
	}
	start := time.Now()
	resp, err := f.client.Check(ctx, req, opts...)
	if err != nil {
		// Connection failure, deadline or a gRPC error status instead of a
		// CheckResponse: GrpcClientImpl::onFailure -> CheckStatus::Error.
		s.p.log.Debug("ext_authz check failed", "filter", f.name, "error", err)
		return x.onError(s, nil)
	}
	return x.onComplete(s, resp, time.Since(start))
}

// onComplete follows Filter::onComplete with GrpcClientImpl::onSuccess's
// classification (ENVOY.md §2).
func (x *extAuthzStream) onComplete(s *stream, resp *authv3.CheckResponse, took time.Duration) *localReply {
	f := x.f
	ok := resp.GetStatus().GetCode() == 0 // a missing status is code 0: allow

	dm := resp.GetDynamicMetadata()
	//lint:ignore SA1019 Envoy still lets the deprecated ok_response.dynamic_metadata override the response's (ext_authz_grpc_impl.cc).
	if okDM := resp.GetOkResponse().GetDynamicMetadata(); ok && okDM != nil {
		dm = okDM
	}
	if f.ingestMetadata && len(dm.GetFields()) > 0 {
		dm = proto.Clone(dm).(*structpb.Struct)
		if ok {
			dm.Fields["ext_authz_duration"] = structpb.NewNumberValue(float64(took.Milliseconds()))
		}
		s.setMetadata(extAuthzNamespace, dm)
	}

	switch {
	case ok:
		return x.onOK(s, resp.GetOkResponse())
	case resp.GetErrorResponse() != nil:
		// Envoy >= 1.37: error_response is the error path, not a denial.
		return x.onError(s, resp.GetErrorResponse())
	default:
		dr := resp.GetDeniedResponse()
		if err := f.checkMutations(dr.GetHeaders()); err != nil {
			return x.invalid(s, err)
		}
		body := dr.GetBody()
		if f.maxDeniedBody > 0 && uint32(len(body)) > f.maxDeniedBody {
			body = body[:f.maxDeniedBody]
		}
		return &localReply{
			status:  httpStatus(s, dr.GetStatus().GetCode(), http.StatusForbidden),
			body:    body,
			modify:  replaceAll(dr.GetHeaders()),
			details: "ext_authz_denied",
			flag:    "UAEX",
		}
	}
}

// onError: failure_mode_allow lets the request through (adding
// x-envoy-auth-failure-mode-allowed when configured); otherwise the reply is
// status_on_error with an empty body and no custom headers, or, for an
// error_response, its status (if set), headers and body.
func (x *extAuthzStream) onError(s *stream, er *authv3.DeniedHttpResponse) *localReply {
	f := x.f
	if f.failureModeAllow {
		if f.failureModeAllowHeaderAdd {
			s.headers.add(failureModeHeader, "true")
		}
		return nil
	}
	lr := &localReply{status: f.statusOnError, details: "ext_authz_error", flag: "UAEX"}
	if er != nil {
		if err := f.checkMutations(er.GetHeaders()); err != nil {
			return x.invalid(s, err)
		}
		lr.status = httpStatus(s, er.GetStatus().GetCode(), f.statusOnError)
		lr.body = er.GetBody()
		lr.modify = replaceAll(er.GetHeaders())
	}
	return lr
}

// invalid is validate_mutations rejecting a response: 500, empty body.
func (x *extAuthzStream) invalid(s *stream, err error) *localReply {
	s.p.log.Debug("ext_authz response rejected", "filter", x.f.name, "error", err)
	return &localReply{status: http.StatusInternalServerError, details: "ext_authz_invalid", flag: "UAEX"}
}

// httpStatus maps an envoy.type.v3.StatusCode to the reply status: 0 means
// def. Codes outside 100-999 cannot be written by an HTTP server; Envoy's
// behaviour for them is not documented, so the proxy answers 500 and logs it.
func httpStatus(s *stream, code typev3.StatusCode, def int) int {
	c := int(code)
	switch {
	case c == 0:
		return def
	case c < 100 || c > 999:
		s.p.warnOnce(fmt.Sprintf("status:%d", c), "ext_authz returned an HTTP status that cannot be sent; answering 500", "status", c)
		return http.StatusInternalServerError
	}
	return c
}

// replaceAll is the denied (and error) response header callback: every header
// named by the server is first removed, then all its values are added, so
// repeated headers such as Set-Cookie survive (ENVOY.md §2, Filter::onComplete).
func replaceAll(hs []*corev3.HeaderValueOption) func(*headerMap) {
	return func(h *headerMap) {
		for _, o := range hs {
			h.remove(o.GetHeader().GetKey())
		}
		for _, o := range hs {
			h.add(o.GetHeader().GetKey(), o.GetHeader().GetValue())
		}
	}
}

// checkMutations implements validate_mutations: an invalid header name or
// value makes the response invalid.
func (f *extAuthzFilter) checkMutations(hs []*corev3.HeaderValueOption, more ...[]*corev3.HeaderValueOption) error {
	if !f.validateMutations {
		return nil
	}
	for _, list := range append([][]*corev3.HeaderValueOption{hs}, more...) {
		for _, o := range list {
			k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
			if !validHeaderName(strings.TrimPrefix(k, ":")) || !validHeaderValue(v) {
				return fmt.Errorf("invalid header %q", k)
			}
		}
	}
	return nil
}

func (x *extAuthzStream) onOK(s *stream, ok *authv3.OkHttpResponse) *localReply {
	f := x.f
	if err := f.checkMutations(ok.GetHeaders(), ok.GetResponseHeadersToAdd()); err != nil {
		return x.invalid(s, err)
	}
	if f.validateMutations {
		for _, k := range ok.GetHeadersToRemove() {
			if !validHeaderName(k) {
				return x.invalid(s, fmt.Errorf("invalid header to remove %q", k))
			}
		}
	}
	mutated := false
	for _, o := range ok.GetHeaders() {
		if isPseudo(strings.ToLower(o.GetHeader().GetKey())) {
			// Rewriting :path or :authority through headers is not part of the
			// documented contract; the proxy does not guess and ignores it.
			s.p.warnOnce("pseudo:"+o.GetHeader().GetKey(), "ext_authz ok_response sets a pseudo-header; ignored by the development proxy", "header", o.GetHeader().GetKey())
			continue
		}
		applyMutation(s.headers, o)
		mutated = true
	}
	// headers_to_remove is applied after headers; pseudo-headers and Host are
	// never removed (HeaderUtility::isRemovableHeader).
	for _, k := range ok.GetHeadersToRemove() {
		if isRemovableHeader(k) {
			s.headers.remove(k)
			mutated = true
		}
	}
	x.responseMutations = ok.GetResponseHeadersToAdd()

	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		s.headers.set(":path", rewriteQuery(s.headers.value(":path"), ok.GetQueryParametersToSet(), ok.GetQueryParametersToRemove()))
		mutated = true
	}
	if f.clearRouteCache && mutated {
		// clear_route_cache: the route is selected again with the new headers.
		s.route = s.p.hcm.routes.selectRoute(s.headers)
	}
	return nil
}

// applyMutation applies one HeaderValueOption to h. The deprecated append
// BoolValue wins when set (true: append to the existing value with ",",
// false: overwrite); otherwise append_action decides
// (ext_authz_grpc_impl.cc getAppendAction). APPEND_IF_EXISTS_OR_ADD is the
// enum's zero value, so an unset append_action appends a new entry, as the
// newest Envoy does: a server must set OVERWRITE_IF_EXISTS_OR_ADD explicitly
// to replace a client-sent header (CONTRACT.md, "Wire details").
func applyMutation(h *headerMap, o *corev3.HeaderValueOption) {
	k, v := strings.ToLower(o.GetHeader().GetKey()), o.GetHeader().GetValue()
	//lint:ignore SA1019 Envoy's ext_authz still honours the deprecated append BoolValue before append_action (getAppendAction).
	if a := o.GetAppend(); a != nil {
		if a.GetValue() {
			h.appendValue(k, v)
		} else {
			h.set(k, v)
		}
		return
	}
	switch o.GetAppendAction() {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		h.add(k, v)
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !h.has(k) {
			h.add(k, v)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		h.set(k, v)
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.has(k) {
			h.set(k, v)
		}
	}
}

// rewriteQuery follows the ext_authz filter's query rewrite: the query string
// is parsed without decoding (Http::Utility::parseQueryString), keys are set
// or removed, and the query is rebuilt in key order with one value per key
// (a std::map, Http::Utility::replaceQueryString).
func rewriteQuery(path string, set []*corev3.QueryParameter, remove []string) string {
	p, q := splitQuery(path)
	params := map[string]string{}
	for _, kv := range strings.Split(strings.TrimPrefix(q, "?"), "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := params[k]; !seen {
			params[k] = v
		}
	}
	for _, qp := range set {
		params[qp.GetKey()] = qp.GetValue()
	}
	for _, k := range remove {
		delete(params, k)
	}
	if len(params) == 0 {
		return p
	}
	keys := slices.Sorted(maps.Keys(params))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + params[k]
	}
	return p + "?" + strings.Join(parts, "&")
}

// encodeHeaders adds OkHttpResponse.response_headers_to_add to the client's
// response (Filter::encodeHeaders).
func (x *extAuthzStream) encodeHeaders(s *stream, h *headerMap) {
	for _, o := range x.responseMutations {
		applyMutation(h, o)
	}
}

// checkRequest builds the CheckRequest (CheckRequestUtils::createHttpCheck;
// ENVOY.md §1).
func (f *extAuthzFilter) checkRequest(s *stream, ce map[string]string) *authv3.CheckRequest {
	h := s.headers
	hr := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(s.id, 10), // the stream id, not x-request-id
		Method:   h.value(":method"),
		Path:     h.value(":path"), // normalised, with the query string
		Host:     h.value(":authority"),
		Scheme:   h.value(":scheme"),
		Protocol: s.protocol,
	}
	include := func(k string) bool {
		if k == partialBodyHeader {
			return false
		}
		if f.allowed != nil && !f.allowed.match(k) {
			return false
		}
		return f.disallowed == nil || !f.disallowed.match(k)
	}
	if f.encodeRaw {
		// encode_raw_headers: header_map with raw bytes, one entry per
		// occurrence, and headers left empty.
		hm := &corev3.HeaderMap{}
		for _, e := range h.entries {
			if include(e.key) {
				hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: e.key, RawValue: []byte(e.value)})
			}
		}
		hr.HeaderMap = hm
	} else {
		hr.Headers = map[string]string{}
		for _, k := range h.keys() {
			if include(k) {
				v, _ := h.joined(k) // repeated headers joined with ","
				hr.Headers[k] = sanitizeUTF8(v)
			}
		}
	}

	attrs := &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address: peerAddress(s.remote),
			Service: h.value("x-envoy-downstream-service-cluster"),
		},
		Destination: &authv3.AttributeContext_Peer{Address: peerAddress(s.local)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(s.start),
			Http: hr,
		},
		ContextExtensions:    ce,
		MetadataContext:      &corev3.Metadata{},
		RouteMetadataContext: &corev3.Metadata{},
	}
	// CheckRequestUtils::setAttrContextPeer: on a TLS connection the principals
	// come from the certificates; source.certificate is the URL-encoded PEM of
	// the client's leaf only (never the chain), and only with
	// include_peer_certificate (ENVOY.md, December facts §3).
	if st := s.tls; st != nil {
		attrs.Destination.Principal = principal(s.p.tls.local)
		if len(st.PeerCertificates) > 0 {
			leaf := st.PeerCertificates[0]
			attrs.Source.Principal = principal(leaf)
			if f.includePeerCert {
				attrs.Source.Certificate = urlEncodedPEM(leaf)
			}
		}
		if f.includeTLSSession {
			attrs.TlsSession = &authv3.AttributeContext_TLSSession{Sni: st.ServerName}
		}
	}
	// metadata_context: dynamic metadata of earlier filters (jwt_authn), for the
	// listed namespaces only.
	for _, ns := range f.metadataNS {
		if v, ok := s.metadata[ns]; ok {
			if attrs.MetadataContext.FilterMetadata == nil {
				attrs.MetadataContext.FilterMetadata = map[string]*structpb.Struct{}
			}
			attrs.MetadataContext.FilterMetadata[ns] = proto.Clone(v).(*structpb.Struct)
		}
	}
	// route_metadata_context: the selected route's metadata (never the virtual
	// host's), for the listed namespaces only (Envoy >= 1.29).
	rmd := s.route.metadata
	for _, ns := range f.routeMetadataNS {
		if v, ok := rmd.GetFilterMetadata()[ns]; ok {
			if attrs.RouteMetadataContext.FilterMetadata == nil {
				attrs.RouteMetadataContext.FilterMetadata = map[string]*structpb.Struct{}
			}
			attrs.RouteMetadataContext.FilterMetadata[ns] = proto.Clone(v).(*structpb.Struct)
		}
	}
	for _, ns := range f.routeTypedMetadataNS {
		if v, ok := rmd.GetTypedFilterMetadata()[ns]; ok {
			if attrs.RouteMetadataContext.TypedFilterMetadata == nil {
				attrs.RouteMetadataContext.TypedFilterMetadata = map[string]*anypb.Any{}
			}
			attrs.RouteMetadataContext.TypedFilterMetadata[ns] = proto.Clone(v).(*anypb.Any)
		}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// peerAddress is Network::Utility::addressToProtobufAddress for an IP address.
func peerAddress(a net.Addr) *corev3.Address {
	if a == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil
	}
	pn, _ := strconv.ParseUint(port, 10, 32)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(pn)},
	}}}
}
