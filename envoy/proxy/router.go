package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
)

// routerConfig is envoy.filters.http.router.
type routerConfig struct {
	suppressEnvoyHeaders bool
}

func buildRouter(path string, r *routerv3.Router) (*routerConfig, error) {
	// dynamic_stats and start_child_span only affect stats and tracing.
	if err := only(path, r, "dynamic_stats", "start_child_span", "suppress_envoy_headers"); err != nil {
		return nil, err
	}
	return &routerConfig{suppressEnvoyHeaders: r.GetSuppressEnvoyHeaders()}, nil
}

// transport returns the HTTP client transport for a cluster: HTTP/1.1, or
// HTTP/2 with prior knowledge when the cluster's HttpProtocolOptions say so.
func (p *Proxy) transport(c *cluster) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.transports[c.name]; ok {
		return t
	}
	d := &net.Dialer{Timeout: c.connectTimeout}
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		DisableCompression:  true, // the client's Accept-Encoding goes upstream unchanged
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}
	if c.http2 {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	p.transports[c.name] = t
	return t
}

// forward is the router filter (source/common/router/router.cc): it sends the
// request to the route's cluster and returns the upstream response, or a
// local reply when there is no route or the upstream fails.
func (rc *routerConfig) forward(p *Proxy, s *stream) *localReply {
	rt := s.route
	if rt == nil {
		// Router::decodeHeaders: no route -> 404, empty body, flag NR.
		return &localReply{status: http.StatusNotFound, details: "route_not_found", flag: "NR"}
	}
	cl := p.clusters[rt.cluster]
	s.upstreamHost = cl.addr

	h := s.headers.clone()
	// Router::finalizeRequestHeaders: route, then virtual host, then route
	// configuration request_headers_to_remove.
	for _, hs := range [][]string{rt.headersToRemove, rt.vh.headersToRemove, rt.vh.rc.headersToRemove} {
		for _, k := range hs {
			if isRemovableHeader(k) {
				h.remove(k)
			}
		}
	}
	if !rc.suppressEnvoyHeaders {
		// The router tells the upstream how long it will wait
		// (x-envoy-expected-rq-timeout-ms, router docs).
		if rt.timeout > 0 {
			h.set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(rt.timeout.Milliseconds(), 10))
		}
	}

	ctx := s.r.Context()
	var cancel context.CancelFunc
	if rt.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, h.value(":method"), "http://"+cl.addr+h.value(":path"), s.r.Body)
	if err != nil {
		cancel()
		return &localReply{status: http.StatusBadRequest, details: "invalid_request", flag: "DPE"}
	}
	req.Host = h.value(":authority")
	req.Header = h.httpHeader()
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil // no Go default User-Agent
	}
	req.ContentLength = s.r.ContentLength
	if s.r.ContentLength == 0 {
		req.Body = http.NoBody
	}
	start := time.Now()
	resp, err := p.transport(cl).RoundTrip(req)
	if err != nil {
		cancel()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Router::onResponseTimeout: 504 "upstream request timeout", flag UT.
			return &localReply{status: http.StatusGatewayTimeout, body: "upstream request timeout", details: "upstream_response_timeout", flag: "UT"}
		}
		// Router::onUpstreamReset: 503 with the reset reason, flag UF.
		return &localReply{
			status:  http.StatusServiceUnavailable,
			body:    "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: " + errText(err),
			details: "upstream_reset_before_response_started{connection_failure}",
			flag:    "UF",
		}
	}
	rh := newHeaderMap()
	rh.fromHTTPHeader(resp.Header)
	for _, k := range []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"} {
		rh.remove(k)
	}
	if resp.ContentLength >= 0 && !rh.has("content-length") && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		rh.set("content-length", strconv.FormatInt(resp.ContentLength, 10))
	}
	if !rc.suppressEnvoyHeaders {
		rh.set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	}
	s.status = resp.StatusCode
	s.respHeaders = rh
	s.respBody = resp.Body
	s.respClose = func() { resp.Body.Close(); cancel() }
	s.details = "via_upstream"
	return nil
}

func errText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return strings.TrimSpace(fmt.Sprint(op.Err))
	}
	return err.Error()
}
