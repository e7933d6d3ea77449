package policy

import (
	"fmt"
	"strings"
)

// NormalizePath turns the path Envoy sends into the form route rules match,
// the same way shipped Envoy configs normalise it (normalize_path,
// merge_slashes): the query string is dropped, percent-encoded unreserved
// characters are decoded (RFC 3986 §6.2.2.2), bytes that may not appear raw
// in a path are percent-encoded as Envoy's canonicaliser does (controls,
// space, "<>^`{|}, DEL and non-ASCII), dot segments are resolved
// (RFC 3986 §5.2.4) and then repeated slashes are merged. Escapes are
// upper-cased (RFC 3986 §6.2.2.1; Envoy keeps their case, so this matches
// strictly more spellings of the same path). An encoded slash or a backslash is
// refused: proxies and apps disagree on what they mean, and a guess here is a
// bypass there. So is a '%' that does not start an escape, which Envoy would
// forward unchanged for the app to guess at.
func NormalizePath(p string) (string, error) {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		return "/", nil
	}
	if p[0] != '/' {
		if p == "*" {
			return p, nil
		}
		return "", fmt.Errorf("path %q does not start with /", p)
	}
	if !needsWork(p) {
		return p, nil
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			return "", fmt.Errorf("path %q contains a backslash", p)
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", fmt.Errorf("path %q has a malformed percent-encoding", p)
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			switch {
			case d == '/' || d == '\\':
				return "", fmt.Errorf("path %q contains an encoded slash or backslash (%s)", p, p[i:i+3])
			case isUnreserved(d):
				b.WriteByte(d)
			default:
				b.WriteByte('%')
				b.WriteByte(upperHex(p[i+1]))
				b.WriteByte(upperHex(p[i+2]))
			}
			i += 2
		case mustEscape(c):
			// Envoy sends "/café" as "/caf%C3%A9" (normalize_path): a rule written either
			// way must match it, and ValidateMatch turns the raw spelling away.
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	// Envoy resolves dot segments (normalize_path) before merging slashes
	// (merge_slashes), so /a//../b is /a/b: the empty segment is a segment.
	return mergeSlashes(removeDotSegments(b.String())), nil
}

func needsWork(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '\\':
			return true
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				return true
			}
		default:
			if mustEscape(c) {
				return true
			}
		}
	}
	return false
}

// mustEscape reports the bytes Envoy's path canonicaliser percent-encodes
// (Chromium's kPathCharLookup as snapshotted in Envoy,
// source/common/chromium_url/url_canon_path.cc: controls, space, '"', '<', '>',
// '^', '`', '{', '|', '}', DEL and every byte >= 0x80). '#', '?' and '%' never
// reach here; NUL, which Envoy refuses, is kept encoded like "%00".
func mustEscape(c byte) bool {
	switch c {
	case '"', '<', '>', '^', '`', '{', '|', '}':
		return true
	}
	return c <= ' ' || c >= 0x7f
}

const hexDigits = "0123456789ABCDEF"

func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// removeDotSegments is RFC 3986 §5.2.4 over an absolute path; it keeps a
// trailing slash, unlike path.Clean.
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
