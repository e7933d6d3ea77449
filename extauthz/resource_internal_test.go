package extauthz

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
)

func TestAppendAuthParam(t *testing.T) {
	const rm = `resource_metadata="https://a.example/.well-known/oauth-protected-resource"`
	tests := []struct{ name, in, want string }{
		{"a bare scheme gets the parameter after a space", "Bearer", "Bearer " + rm},
		{"a challenge with parameters gets it after a comma", `Bearer error="invalid_token"`, `Bearer error="invalid_token", ` + rm},
		{"each of two challenges gets it", `Bearer, DPoP algs="ES256 EdDSA"`, `Bearer ` + rm + `, DPoP algs="ES256 EdDSA", ` + rm},
		{"commas inside a quoted description do not start a challenge", `DPoP error="invalid_dpop_proof", error_description="lacks jti, htm, htu or iat, or one, Bearer x", algs="ES256"`,
			`DPoP error="invalid_dpop_proof", error_description="lacks jti, htm, htu or iat, or one, Bearer x", algs="ES256", ` + rm},
		{"a parameter with spaces around = is still a parameter", `Bearer error = "x", scope="a"`, `Bearer error = "x", scope="a", ` + rm},
		{"an escaped quote inside a quoted string does not end it", `Bearer error_description="a \", Basic", x="y"`, `Bearer error_description="a \", Basic", x="y", ` + rm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := appendAuthParam(tt.in, rm); got != tt.want {
				t.Errorf("\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestMetadataSuffix(t *testing.T) {
	tests := []struct {
		method, path string
		suffix       string
		ok           bool
	}{
		{"GET", "/.well-known/oauth-protected-resource", "", true},
		{"HEAD", "/.well-known/oauth-protected-resource/mcp", "/mcp", true},
		{"GET", "/.well-known/oauth-protected-resource/", "/", true},
		{"GET", "/.well-known/oauth-protected-resource/mcp?q=/x", "/mcp", true},
		{"GET", "/a/../.well-known/oauth-protected-resource/%6Dcp", "/mcp", true},
		{"POST", "/.well-known/oauth-protected-resource", "", false},
		{"OPTIONS", "/.well-known/oauth-protected-resource", "", false},
		{"get", "/.well-known/oauth-protected-resource", "", false},
		{"GET", "/.well-known/oauth-protected-resourceX", "", false},
		{"GET", "/.well-known/oauth-protected-resource/../admin", "", false},
		{"GET", "/.well-known/oauth-protected-resource%2Fmcp", "", false},
		{"GET", "/.well-known/oauth-protected-resource\\mcp", "", false},
		{"GET", "/mcp", "", false},
		{"GET", "", "", false},
	}
	for _, tt := range tests {
		suffix, ok := metadataSuffix(tt.method, tt.path)
		if suffix != tt.suffix || ok != tt.ok {
			t.Errorf("metadataSuffix(%s, %q) = %q, %v; want %q, %v", tt.method, tt.path, suffix, ok, tt.suffix, tt.ok)
		}
	}
}

// The shared denials with resource_metadata are remembered per origin and
// resource path, and never mixed up between them.
func TestChallengeMemo(t *testing.T) {
	r := newProtectedResource(&config.ProtectedResource{})
	a := &attributes{host: "a.example", forwardedProto: "https"}
	first := r.challenge(deniedNoToken, a, "/mcp")
	if first == deniedNoToken || r.challenge(deniedNoToken, a, "/mcp") != first {
		t.Fatal("the no-token denial with resource_metadata is not remembered")
	}
	b := &attributes{host: "b.example", forwardedProto: "https"}
	if got := deniedHeader(r.challenge(deniedNoToken, b, "/mcp"), "www-authenticate"); got != `Bearer resource_metadata="https://b.example/.well-known/oauth-protected-resource/mcp"` {
		t.Errorf("another host: %s", got)
	}
	if got := deniedHeader(r.challenge(deniedInvalid, a, ""), "www-authenticate"); got != `Bearer error="invalid_token", resource_metadata="https://a.example/.well-known/oauth-protected-resource"` {
		t.Errorf("invalid token, no resource path: %s", got)
	}
	bad := &attributes{host: `x" y`, forwardedProto: "https"}
	if r.challenge(deniedNoToken, bad, "/mcp") != deniedNoToken || r.challenges.len() != 3 {
		t.Errorf("an unsafe authority must get the plain denial, and not be remembered (%d remembered)", r.challenges.len())
	}
	if deniedHeader(deniedNoToken, "www-authenticate") != "Bearer" {
		t.Error("the shared denial was modified")
	}
}

func deniedHeader(dr *authv3.DeniedHttpResponse, key string) string {
	for _, h := range dr.GetHeaders() {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
