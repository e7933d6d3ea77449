package proxy

import (
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/stepup-authz/stepup-authz/policy"
)

// shippedPath normalises :path as the shipped bootstraps configure Envoy
// (envoy/envoy*.yaml: normalize_path, merge_slashes,
// path_with_escaped_slashes_action: REJECT_REQUEST).
func shippedPath(p string) (string, pathAction) {
	return normalizePath(p, true, true, hcmv3.HttpConnectionManager_REJECT_REQUEST)
}

// FuzzPathNormalizersAgree holds the front proxy's port of Envoy's path handling
// and the server's policy.NormalizePath to one meaning of a path (DESIGN.md: "The
// proxy and the server must agree on what a path is"). For any :path that starts
// with '/' (Envoy's connection manager answers anything else with 404
// invalid_path before it normalises):
//
//  1. What Envoy forwards, the server reads as that same path:
//     policy.NormalizePath of the forwarded :path is its path part, with escapes
//     upper-cased (RFC 3986 §6.2.2.1: Envoy keeps an escape's case, the server
//     matches every spelling). Envoy's merge_slashes leaves a path of nothing but
//     slashes as "//" (PathTransformer::mergeSlashes keeps a leading and a trailing
//     slash around the empty join of no segments); the server reads it as "/", the
//     root it stands for, so an exact "/" rule still covers it. The one refusal is
//     a '%' that starts no escape, which Envoy forwards as it is and the server
//     refuses (policy_error): a denial, never another path.
//  2. Given the same raw path, both give that path, or both refuse, or one refuses
//     for a reason that is its own: Envoy alone refuses a fragment ('#', runtime
//     flag http_reject_path_with_fragment) and NUL, raw or %00 (invalid to its
//     canonicaliser); the server alone refuses a literal backslash (Envoy turns it
//     into '/') and a '%' that starts no escape (CONTRACT.md: a policy error
//     rather than a guess).
func FuzzPathNormalizersAgree(f *testing.F) {
	for _, s := range []string{
		"/", "/api/payout-destination", "//api///payout-destination/", "/api/./x/../payout-destination?x=/../y",
		"/api/%2e%2E/x", "/api/.%2e/x", "/a//../b", "/%41%62c%2D%5F%7E", "/a%3ab%3A", "/caf%c3%a9", "/café",
		"/a b\"<>^`{|}\x7f\t", "/a%2Fb", "/a%2fb", "/a%5Cb", `/a\b`, `/api/x\..\payout-destination`, "/a%zz",
		"/a%", "/a%2", "/%%300", "/%%32e/", "/%%41", "/a%00b", "/a\x00b", "/a#frag", "/a?b#c", "/a?%2F#",
		"/a/b/..", "/a/b/.", "/../../a", "/.well-known/oauth-protected-resource/mcp", "/x/..%41", "/a%252Fb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !strings.HasPrefix(raw, "/") {
			return
		}
		forwarded, action := shippedPath(raw)
		server, err := policy.NormalizePath(raw)

		// 1. What Envoy forwards, the server reads as the same path.
		if action == pathContinue {
			fpath, _ := splitQuery(forwarded)
			again, err := policy.NormalizePath(forwarded)
			switch {
			case hasStrayPercent(fpath):
				if err == nil {
					t.Fatalf("%q: Envoy forwards %q with a stray '%%'; the server read it as %q instead of refusing", raw, forwarded, again)
				}
			case err != nil:
				t.Fatalf("%q: Envoy forwards %q; the server refuses it: %v", raw, forwarded, err)
			case again != serverForm(fpath):
				t.Fatalf("%q: Envoy forwards %q; the server matches %q, not %q", raw, forwarded, again, serverForm(fpath))
			}
		}

		// 2. Given the raw path, both agree, or one refuses for a reason of its own.
		rawPath, _ := splitQuery(raw)
		switch {
		case action == pathContinue && err == nil:
			fpath, _ := splitQuery(forwarded)
			if server != serverForm(fpath) {
				t.Fatalf("%q: Envoy forwards %q, the server matches %q", raw, forwarded, server)
			}
		case action == pathContinue: // the server alone refuses
			if !strings.Contains(rawPath, `\`) && !hasStrayPercent(rawPath) {
				t.Fatalf("%q: Envoy forwards %q, the server refuses: %v", raw, forwarded, err)
			}
		case action == pathRedirect:
			t.Fatalf("%q: REJECT_REQUEST redirected to %q", raw, forwarded)
		case err == nil: // Envoy alone refuses
			if !strings.Contains(raw, "#") && !strings.Contains(rawPath, "\x00") && !strings.Contains(rawPath, "%00") {
				t.Fatalf("%q: Envoy refuses it, the server matches %q", raw, server)
			}
		}
	})
}

// serverForm is the path part Envoy forwards as policy.NormalizePath must read it.
func serverForm(fpath string) string {
	if fpath == "//" {
		return "/"
	}
	return upperEscapes(fpath)
}

// upperEscapes upper-cases the hex digits of every escape, as policy.NormalizePath
// writes them.
func upperEscapes(p string) string {
	b := []byte(p)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' && isHex(b[i+1]) && isHex(b[i+2]) {
			b[i+1], b[i+2] = upper(b[i+1]), upper(b[i+2])
			i += 2
		}
	}
	return string(b)
}

// hasStrayPercent reports a '%' not followed by two hex digits.
func hasStrayPercent(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return true
			}
			i += 2
		}
	}
	return false
}

func isHex(c byte) bool { _, ok := unhex(c); return ok }

func upper(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
