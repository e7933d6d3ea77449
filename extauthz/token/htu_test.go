package token

import "testing"

func TestNormalizeHTU(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/payout", "https://api.example.com/payout"},
		{"HTTPS://API.EXAMPLE.COM/payout", "https://api.example.com/payout"},
		{"https://api.example.com:443/payout", "https://api.example.com/payout"},
		{"https://api.example.com:0443/payout", "https://api.example.com/payout"},
		{"https://api.example.com:/payout", "https://api.example.com/payout"},
		{"http://api.example.com:80/payout", "http://api.example.com/payout"},
		{"http://api.example.com:443/payout", "http://api.example.com:443/payout"},
		{"https://api.example.com:8443/payout", "https://api.example.com:8443/payout"},
		{"https://api.example.com", "https://api.example.com/"},
		{"https://api.example.com/payout?x=1#frag", "https://api.example.com/payout"},
		{"https://api.example.com/a/./b/../c", "https://api.example.com/a/c"},
		{"https://api.example.com/%7euser/%2fx/%e2%82%ac", "https://api.example.com/~user/%2Fx/%E2%82%AC"},
		{"https://[::1]:8443/x", "https://[::1]:8443/x"},
		{"https://[::1]:443/x", "https://[::1]/x"},
		{"https://api.example.com/Payout", "https://api.example.com/Payout"},
	} {
		got, err := NormalizeHTU(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeHTU(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"/payout", "ftp://api.example.com/x", "https://user:pw@api.example.com/x",
		"https:///x", "https://api.example.com/%zz", "mailto:a@example.com", "",
	} {
		if got, err := NormalizeHTU(bad); err == nil {
			t.Errorf("NormalizeHTU(%q) = %q, want an error", bad, got)
		}
	}
}

func TestRequestURL(t *testing.T) {
	for _, tc := range []struct {
		name, proto, scheme, authority, path, want string
	}{
		{"x-forwarded-proto wins over the scheme Envoy saw", "https", "http", "api.example.com", "/payout?x=1", "https://api.example.com/payout"},
		{"the first of several x-forwarded-proto values", "https, http", "http", "api.example.com", "/", "https://api.example.com/"},
		{"the request's scheme without x-forwarded-proto", "", "http", "api.example.com:8080", "/a", "http://api.example.com:8080/a"},
		{"authority case and default port do not matter", "", "https", "API.example.com:443", "/a", "https://api.example.com/a"},
	} {
		got, err := RequestURL(tc.proto, tc.scheme, tc.authority, tc.path)
		if err != nil || got != tc.want {
			t.Errorf("%s: RequestURL = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ name, proto, scheme, authority, path string }{
		{"no scheme at all", "", "", "api.example.com", "/"},
		{"no authority", "https", "https", "", "/"},
		{"an asterisk-form path", "https", "https", "api.example.com", "*"},
		{"a forged scheme", "javascript", "https", "api.example.com", "/"},
	} {
		if got, err := RequestURL(tc.proto, tc.scheme, tc.authority, tc.path); err == nil {
			t.Errorf("%s: RequestURL = %q, want an error", tc.name, got)
		}
	}
}
