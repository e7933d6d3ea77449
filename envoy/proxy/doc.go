// Package proxy is an Envoy-compatible front proxy for development and tests
// only. It is a stand-in for Envoy where no Envoy binary can be installed
// (`stepup-authz dev` and the e2e tests), not a production proxy.
//
// It reads the same bootstrap YAML as Envoy (loaded strictly with
// envoy.ValidateBootstrap) and implements exactly the subset of Envoy that the
// shipped stepup-authz YAMLs use: one listener (plaintext, or TLS with an
// optional client certificate) with one HTTP connection manager and an inline
// route_config; x-forwarded-proto and x-forwarded-client-cert as the
// connection manager sets them; path normalisation; virtual host and route
// matching; the CORS, jwt_authn, ext_authz (gRPC service) and router HTTP
// filters; STATIC/STRICT_DNS/LOGICAL_DNS clusters (first endpoint only); and
// text access logs. Any other field that would change behaviour makes New fail
// with an error naming that field: the proxy never guesses.
//
// Each behaviour cites the Envoy documentation, proto comment or source file it
// follows (see /work/shared/ENVOY.md for the ext_authz facts). Where Envoy
// versions differ, the comment says which behaviour was chosen and why.
//
// Access log lines go to Options.Logger (one record per request and access_log
// entry, with method, path, status, decision and reason attributes), not to
// the stdout, stderr or file the config names.
//
// Known simplifications:
//   - Header order: Go's net/http does not keep the order in which different
//     request headers arrived, so regular headers follow the pseudo-headers
//     sorted by name (visible only in header_map with encode_raw_headers).
//   - Stats, the admin interface, health checking, tracing and load balancing
//     are not implemented; health_checks and admin are accepted and ignored,
//     and a cluster always uses its first endpoint.
//   - Downstream gRPC (trailers-only local replies) is not emulated.
package proxy
