package token

import (
	"errors"
	"net/url"
	"strings"
)

// RFC 9449 §4.3 compares a proof's htu with the request URL "ignoring any query
// and fragment parts", after the syntax- and scheme-based normalisation of RFC
// 3986 §6.2.2 and §6.2.3. Both sides go through NormalizeHTU and are then
// compared as strings: scheme and host lower-cased, a default port dropped, an
// empty path made "/", percent-encoded unreserved characters decoded and other
// escapes upper-cased, dot segments removed, query and fragment dropped.

// RequestURL is the URL a proof's htu must name for a request: scheme from
// x-forwarded-proto (first value when Envoy appended several) else the
// request's scheme, authority from :authority, and the path without its
// query. It returns an error when these do not make an http(s) URL.
func RequestURL(forwardedProto, scheme, authority, path string) (string, error) {
	s := forwardedProto
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if s == "" {
		s = scheme
	}
	if s == "" {
		return "", errors.New("the request has no scheme (x-forwarded-proto or :scheme)")
	}
	if authority == "" {
		return "", errors.New("the request has no :authority")
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if !strings.HasPrefix(path, "/") {
		// "*" (OPTIONS) and CONNECT's authority form have no URL a proof can name.
		return "", errors.New("the request path is not absolute")
	}
	return NormalizeHTU(s + "://" + authority + path)
}

// NormalizeHTU normalises an http(s) URL for htu comparison (see above). A URL
// with user information, another scheme or no host is an error.
func NormalizeHTU(raw string) (string, error) {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", errors.New("not an http or https URL")
	}
	if u.User != nil {
		return "", errors.New("has user information")
	}
	if u.Opaque != "" || u.Host == "" {
		return "", errors.New("has no host")
	}
	// "host:" (an empty port) means the default port (RFC 3986 §6.2.3); so does
	// the scheme's own port, written with leading zeros or not.
	host, port := strings.ToLower(u.Hostname()), strings.TrimLeft(u.Port(), "0")
	if u.Port() != "" && port == "" {
		port = "0"
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path, err := normalizeURLPath(u.EscapedPath())
	if err != nil {
		return "", err
	}
	return scheme + "://" + host + path, nil
}

// normalizeURLPath applies RFC 3986 §6.2.2 to an escaped path: escapes of
// unreserved characters decoded, the others upper-cased, dot segments removed
// (§5.2.4), and an empty path made "/" (§6.2.3).
func normalizeURLPath(p string) (string, error) {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errors.New("path has a malformed percent-escape")
		}
		d := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(d) {
			b.WriteByte(d)
		} else {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(p[i+1 : i+3]))
		}
		i += 2
	}
	out := removeDotSegments(b.String())
	if out == "" {
		out = "/"
	}
	return out, nil
}

// removeDotSegments is RFC 3986 §5.2.4.
func removeDotSegments(in string) string {
	var out []string
	segs := strings.Split(in, "/")
	for i, s := range segs {
		switch s {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved is RFC 3986 §2.3.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// RequestOrigin is RequestURL's scheme://authority without a path, normalised
// the same way: the base of RFC 9728 resource identifiers derived per request
// ("as for htu", CONTRACT.md).
func RequestOrigin(forwardedProto, scheme, authority string) (string, error) {
	u, err := RequestURL(forwardedProto, scheme, authority, "/")
	if err != nil {
		return "", err
	}
	origin := strings.TrimSuffix(u, "/")
	if strings.Contains(origin[strings.Index(origin, "://")+3:], "/") {
		return "", errors.New("the request's :authority holds a path")
	}
	return origin, nil
}
