package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

const (
	// wellKnownPath is where OpenID Connect Discovery 1.0 §4 publishes provider metadata.
	wellKnownPath = "/.well-known/openid-configuration"
	// maxBodyBytes bounds every discovery and JWKS response we read.
	maxBodyBytes = 1 << 20
	// maxRedirects bounds redirects followed by a key fetch.
	maxRedirects = 5
)

// discoveryURL is the provider metadata URL of issuer; a trailing slash of the issuer is
// dropped first so "https://idp/" does not become "https://idp//.well-known/...".
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + wellKnownPath
}

// checkFetchURL accepts the URLs that keys may come from: https anywhere, http only on a
// loopback host (for development and tests), because anything else lets a network
// attacker substitute the keys.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("url %q: keys are fetched only from an https URL with a host (http only on loopback hosts: localhost, 127.0.0.0/8, ::1)", raw)
	}
	switch {
	case FetchableURL(u):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("url %q: http is allowed only on loopback hosts (localhost, 127.0.0.0/8, ::1); use https", raw)
	default:
		return fmt.Errorf("url %q: scheme must be https", raw)
	}
}

// FetchableURL is the rule for every URL keys, discovery documents and
// introspection answers come from: https anywhere, http only on a loopback
// host. The config's validation applies the same function.
func FetchableURL(u *url.URL) bool {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return true
	case "http":
		return isLoopbackHost(u.Hostname())
	}
	return false
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP literal.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkRedirect keeps redirects of key fetches under the same URL rule as the
// configured URLs, so an https endpoint cannot hand us over to plain http.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return checkFetchURL(req.URL.String())
}

// fetchError is a failed fetch together with the result word reported to OnFetch.
type fetchError struct {
	result string
	err    error
}

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// fetchResult is the OnFetch result word for err.
func fetchResult(err error) string {
	var fe *fetchError
	if errors.As(err, &fe) {
		return fe.result
	}
	return FetchError
}

// response is the part of an HTTP answer that the key fetcher looks at.
type response struct {
	status int
	body   []byte
	header http.Header
}

// get performs a GET of uri with the given extra headers and reads at most maxBodyBytes
// of the body. Transport failures are FetchError; an oversized body is FetchInvalid.
func get(ctx context.Context, client *http.Client, uri string, extra http.Header) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, &fetchError{FetchError, fmt.Errorf("GET %s: %w", uri, err)}
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "stepup-authz")
	resp, err := client.Do(req)
	if err != nil {
		return nil, &fetchError{FetchError, fmt.Errorf("GET %s: %w", uri, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, &fetchError{FetchError, fmt.Errorf("GET %s: read body: %w", uri, err)}
	}
	if len(body) > maxBodyBytes {
		return nil, &fetchError{FetchInvalid, fmt.Errorf("GET %s: body larger than %d bytes", uri, maxBodyBytes)}
	}
	return &response{status: resp.StatusCode, body: body, header: resp.Header}, nil
}

// discover reads issuer's OpenID provider metadata and returns its jwks_uri. The
// metadata's issuer must equal ours exactly (OpenID Connect Discovery 1.0 §4.3), and the
// jwks_uri must pass checkFetchURL.
func discover(ctx context.Context, client *http.Client, issuer string) (string, error) {
	uri := discoveryURL(issuer)
	resp, err := get(ctx, client, uri, nil)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if resp.status != http.StatusOK {
		return "", &fetchError{FetchError, fmt.Errorf("discovery: GET %s: status %d", uri, resp.status)}
	}
	var doc struct {
		Issuer  *string `json:"issuer"`
		JWKSURI *string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		return "", &fetchError{FetchInvalid, fmt.Errorf("discovery: %s: %w", uri, err)}
	}
	if doc.Issuer == nil || *doc.Issuer != issuer {
		got := "<absent>"
		if doc.Issuer != nil {
			got = fmt.Sprintf("%q", *doc.Issuer)
		}
		return "", &fetchError{FetchInvalid, fmt.Errorf("discovery: %s: issuer is %s, want %q", uri, got, issuer)}
	}
	if doc.JWKSURI == nil || *doc.JWKSURI == "" {
		return "", &fetchError{FetchInvalid, fmt.Errorf("discovery: %s: no jwks_uri", uri)}
	}
	if err := checkFetchURL(*doc.JWKSURI); err != nil {
		return "", &fetchError{FetchInvalid, fmt.Errorf("discovery: %s: jwks_uri: %w", uri, err)}
	}
	return *doc.JWKSURI, nil
}
