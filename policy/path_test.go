package policy

import (
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"a plain path is unchanged", "/api/payout-destination", "/api/payout-destination"},
		{"the root is unchanged", "/", "/"},
		{"an empty path is the root", "", "/"},
		{"the query string is dropped", "/api/x?y=1&z=2", "/api/x"},
		{"a bare query is the root", "?x=1", "/"},
		{"an encoded slash in the query is not the path's business", "/api/x?next=%2Fadmin%5C", "/api/x"},
		{"a fragment is dropped", "/api/x#top", "/api/x"},
		{"a repeated slash is merged", "/api//x", "/api/x"},
		{"many repeated slashes are merged", "///api///x//", "/api/x/"},
		{"a dot segment is removed", "/a/./b", "/a/b"},
		{"a dot-dot segment removes its parent", "/a/../b", "/b"},
		{"dot-dot segments stop at the root", "/../../a", "/a"},
		{"dot-dot alone is the root", "/..", "/"},
		{"dot alone is the root", "/.", "/"},
		{"a trailing dot-dot leaves a trailing slash", "/a/b/..", "/a/"},
		{"a trailing dot leaves a trailing slash", "/a/b/.", "/a/b/"},
		{"a trailing slash is kept", "/a/b/", "/a/b/"},
		{"three dots are a name, not a dot segment", "/a/.../b", "/a/.../b"},
		{"a leading dot in a name is kept", "/.well-known/openid-configuration", "/.well-known/openid-configuration"},
		{"a dot-dot prefix in a name is kept", "/a/..b/c", "/a/..b/c"},
		{"an encoded unreserved letter is decoded", "/%61pi", "/api"},
		{"an encoded upper-case letter is decoded and keeps its case", "/%41PI", "/API"},
		{"encoded digits, hyphen, underscore and tilde are decoded", "/%31%2D%5F%7E", "/1-_~"},
		{"an encoded dot-dot is resolved as a dot segment", "/api/%2e%2e/x", "/x"},
		{"an upper-case encoded dot-dot is resolved as a dot segment", "/api/%2E%2E/x", "/x"},
		{"a half-encoded dot-dot is resolved as a dot segment", "/api/.%2e/x", "/x"},
		{"an encoded dot is resolved as a dot segment", "/api/%2e/x", "/api/x"},
		{"a reserved escape is kept and upper-cased", "/a%3ab", "/a%3Ab"},
		{"an encoded space is kept", "/a%20b", "/a%20b"},
		{"an encoded percent is kept, so nothing is decoded twice", "/a%252Fb", "/a%252Fb"},
		{"an encoded NUL is kept encoded", "/a%00b", "/a%00b"},
		{"UTF-8 escapes are kept and upper-cased", "/caf%c3%a9", "/caf%C3%A9"},
		// Envoy's normalize_path percent-encodes these (Chromium's path canonicaliser), so
		// requests arrive encoded and a rule written raw must be normalised the same way.
		{"raw non-ASCII bytes are percent-encoded, as Envoy sends them", "/café", "/caf%C3%A9"},
		{"a raw space is percent-encoded", "/a b", "/a%20b"},
		{"characters that may not appear raw are percent-encoded", "/\"<>^`{|}", "/%22%3C%3E%5E%60%7B%7C%7D"},
		{"control characters and DEL are percent-encoded", "/a\tb\x01\x7f", "/a%09b%01%7F"},
		{"a raw NUL is kept encoded, like an encoded one", "/a\x00b", "/a%00b"},
		{"reserved characters allowed raw stay raw", "/a!$&'()*+,;=:@[]b", "/a!$&'()*+,;=:@[]b"},
		{"the asterisk form of OPTIONS is kept", "*", "*"},
		{"the asterisk form keeps no query", "*?x", "*"},
		// Dot segments are resolved before slashes are merged, as Envoy does
		// (normalize_path, then merge_slashes): an empty segment is a segment.
		{"dot segments are resolved before slashes are merged, as Envoy does", "/a//../b", "/a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			if err != nil {
				t.Fatalf("NormalizePath(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("NormalizePath(%q) = %q, want %q", tt.in, got, tt.want)
			}
			// Envoy may already have normalised the path: doing it again must not change it.
			again, err := NormalizePath(got)
			if err != nil || again != got {
				t.Errorf("NormalizePath(%q) = %q, %v; normalising is not idempotent", got, again, err)
			}
		})
	}
}

func TestNormalizePathRefuses(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"an upper-case encoded slash is refused", "/api%2Fpayout-destination", `path "/api%2Fpayout-destination" contains an encoded slash or backslash (%2F)`},
		{"a lower-case encoded slash is refused", "/api%2fpayout-destination", "encoded slash or backslash (%2f)"},
		{"an encoded backslash is refused", "/api%5Cpayout-destination", "encoded slash or backslash (%5C)"},
		{"a lower-case encoded backslash is refused", "/api%5cx", "encoded slash or backslash (%5c)"},
		{"a literal backslash is refused", `/api\payout-destination`, `path "/api\\payout-destination" contains a backslash`},
		{"a backslash before a dot-dot is refused", `/api/x\..\payout-destination`, "contains a backslash"},
		{"a percent at the end is malformed", "/api%", `path "/api%" has a malformed percent-encoding`},
		{"a percent with one hex digit at the end is malformed", "/api%2", "has a malformed percent-encoding"},
		{"a percent with non-hex digits is malformed", "/a%zzb", "has a malformed percent-encoding"},
		{"a percent with one non-hex digit is malformed", "/a%2gb", "has a malformed percent-encoding"},
		{"a percent followed by a percent is malformed", "/a%%2F", "has a malformed percent-encoding"},
		{"a relative path is refused", "api/x", `path "api/x" does not start with /`},
		{"an absolute URL is refused", "https://app.example.com/api", "does not start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			if err == nil {
				t.Fatalf("NormalizePath(%q) = %q, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if got != "" {
				t.Errorf("NormalizePath(%q) returned %q with its error", tt.in, got)
			}
		})
	}
}

// TestNormalizePathAgainstBypass sends spellings of a protected path that
// an upstream would serve as that path, and checks a /api/payout-destination
// prefix rule still sees them; and spellings that are genuinely elsewhere.
func TestNormalizePathAgainstBypass(t *testing.T) {
	const prefix = "/api/payout-destination"
	tests := []struct {
		name        string
		in          string
		wantMatched bool
	}{
		{"a repeated slash does not escape the rule", "/api//payout-destination", true},
		{"a leading double slash does not escape the rule", "//api/payout-destination", true},
		{"an encoded letter does not escape the rule", "/api/%70ayout-destination", true},
		{"an encoded hyphen does not escape the rule", "/api/payout%2Ddestination", true},
		{"a dot segment does not escape the rule", "/api/./payout-destination", true},
		{"a detour through a sibling does not escape the rule", "/api/x/../payout-destination", true},
		{"an encoded detour does not escape the rule", "/api/x/%2E%2E/payout-destination", true},
		{"a detour above the root does not escape the rule", "/../api/payout-destination", true},
		{"a query string does not escape the rule", "/api/payout-destination?dry=1", true},
		{"a sub-path is under the rule", "/api/payout-destination/123", true},
		{"a trailing slash is under the rule", "/api/payout-destination/", true},
		// Leaving the protected path by dot-dot really leaves it: the upstream
		// is sent /api/x too, which is not the protected resource.
		{"dot-dot out of the protected path leads elsewhere", "/api/payout-destination/../x", false},
		// Paths are case-sensitive (RFC 3986 §6.2.2.1 only folds scheme and
		// host). An upstream that folds case must be covered by its own rule.
		{"an upper-case path is a different path", "/API/payout-destination", false},
		{"an upper-case segment is a different path", "/api/PAYOUT-destination", false},
		{"an encoded upper-case letter is a different path", "/api/%50ayout-destination", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			if err != nil {
				t.Fatalf("NormalizePath(%q): %v", tt.in, err)
			}
			if matched := strings.HasPrefix(got, prefix); matched != tt.wantMatched {
				t.Errorf("NormalizePath(%q) = %q; under %s: %v, want %v", tt.in, got, prefix, matched, tt.wantMatched)
			}
		})
	}
}
