package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fuzz targets. Committed seeds live in testdata/fuzz/<target>; CI runs each target
// briefly (.ci/run), e.g.
//
//	go test -run='^$' -fuzz='^FuzzNormalizePath$' -fuzztime=60s ./policy

var fuzzLevels = Levels{"aal1", "aal2", "aal3"}

// checkLayer asserts what every successfully parsed layer must hold: values that can
// sit in a WWW-Authenticate parameter or a log line, levels from the ladder, and a
// max_age that is a whole, non-negative number of seconds (or cleared).
func checkLayer(t *testing.T, l Layer) {
	t.Helper()
	if l.RequiredACR.Set && l.RequiredACR.Value != "" {
		if fuzzLevels.Rank(l.RequiredACR.Value) < 0 {
			t.Fatalf("required_acr %q is not a level", l.RequiredACR.Value)
		}
		if checkHeaderSafe(l.RequiredACR.Value) != nil {
			t.Fatalf("required_acr %q is not header-safe", l.RequiredACR.Value)
		}
	}
	if l.MaxAge.Set {
		d := l.MaxAge.Value
		if d != noMaxAge && (d < 0 || d%time.Second != 0) {
			t.Fatalf("max_age %v is negative or not whole seconds", d)
		}
	}
	for _, s := range append(append([]string(nil), l.MachineScopes.Value...), l.RequiredScopes.Value...) {
		if checkScopeToken(s) != nil {
			t.Fatalf("scope %q is not an RFC 6749 scope-token", s)
		}
	}
	// resource_path goes into a quoted header parameter and a URL as it is.
	if rp := l.ResourcePath.Value; rp != "" {
		if n, err := NormalizePath(rp); err != nil || n != rp || rp[0] != '/' || checkHeaderSafe(rp) != nil {
			t.Fatalf("resource_path %q is not a normalised, header-safe path", rp)
		}
	}
	switch l.Mode.Value {
	case "", ModeEnforce, ModeDryRun, ModeOff:
	default:
		t.Fatalf("mode %q", l.Mode.Value)
	}
	if strings.IndexFunc(l.Name.Value, isControl) >= 0 {
		t.Fatalf("name %q has a control character", l.Name.Value)
	}
	// Whatever a layer says, resolving it must not panic and must keep its values.
	p, _ := Resolve(Sourced{Source: SourceRouteMetadata, Layer: l})
	if l.RequiredACR.Set && p.RequiredACR != l.RequiredACR.Value {
		t.Fatalf("resolved required_acr %q, layer %q", p.RequiredACR, l.RequiredACR.Value)
	}
}

// FuzzParseMetadata feeds route metadata, as the JSON form of Envoy's Struct, to the
// parser of the namespace stepup-authz owns.
func FuzzParseMetadata(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"required_acr":"aal2","max_age":300}`,
		`{"required_acr":"aal2","max_age":"5m","machine_scopes":["payouts:write"],"mode":"dry_run","name":"payout"}`,
		`{"max_age":""}`,
		`{"max_age":0.5}`,
		`{"max_age":-1}`,
		`{"max_age":1e300}`,
		`{"max_age":"9223372036854775807"}`,
		`{"machine_scopes":"a b  c"}`,
		`{"machine_scopes":["a\"b"]}`,
		`{"required_acr":"aal9"}`,
		`{"requried_acr":"aal2"}`,
		`{"mode":"OFF"}`,
		`{"name":"a\nb"}`,
		`{"required_acr":null}`,
		`{"resource_path":"/mcp","required_scopes":["mcp:tools"]}`,
		`{"resource_path":"/a/../mcp","required_scopes":"a b"}`,
		`{"resource_path":"mcp"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			return
		}
		l, err := ParseMetadata(m, fuzzLevels)
		if err != nil {
			if !l.IsZero() {
				t.Fatalf("an error came with a non-empty layer: %+v", l)
			}
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error %T, want policy.Errors", err)
			}
			return
		}
		checkLayer(t, l)
		for k := range m {
			if !l.isSet(k) {
				t.Fatalf("key %q accepted but not set", k)
			}
		}
	})
}

// FuzzParseContextExtensions feeds context_extensions (string values, shared with
// other filters) and checks them against the metadata parser: for the policy keys,
// both sources must agree exactly.
func FuzzParseContextExtensions(f *testing.F) {
	f.Add("required_acr", "aal2", "max_age", "300")
	f.Add("max_age", "5m", "mode", "off")
	f.Add("machine_scopes", "payouts:write payouts:read", "name", "payout")
	f.Add("max_age", "-5", "other_filter", "x")
	f.Add("required_acr", "", "max_age", "")
	f.Add("max_age", "0x10", "mode", "dry_run")
	f.Add("max_age", "1.5s", "required_acr", "AAL2")
	f.Add("resource_path", "/mcp", "required_scopes", "mcp:tools mcp:read")
	f.Add("resource_path", "/m\"cp", "required_scopes", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		m := map[string]string{k1: v1, k2: v2}
		l, err := ParseContextExtensions(m, fuzzLevels)
		if err == nil {
			checkLayer(t, l)
		}
		known := map[string]any{}
		for k, v := range m {
			for _, f := range Fields {
				if k == f {
					known[k] = v
				}
			}
		}
		ml, merr := ParseMetadata(known, fuzzLevels)
		if (err == nil) != (merr == nil) || !reflect.DeepEqual(l, ml) {
			t.Fatalf("context extensions %q -> %+v, %v; as metadata -> %+v, %v", m, l, err, ml, merr)
		}
	})
}

// FuzzNormalizePath checks the path normalisation that decides which config route
// (and so which step-up policy) applies: no panic, the result is a normal form
// (idempotent, no dot segments, no repeated slashes, no encoded unreserved
// characters, nothing raw that Envoy would have encoded), and encoded slashes and
// backslashes are refused, never guessed.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "", "*", "/api/payout-destination", "/api//x/../payout-destination?from=app",
		"/api/%2e%2e/admin", "/api%2Fpayout", "/api%5cpayout", "/a\\b", "/%7Euser/%41", "/a/b/./c/../../d/",
		"//..//../x", "/a%2", "/%zz", "/a#frag", "api/x", "/%252F", "/.%2e/x", "/%2E/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := NormalizePath(p)
		raw := p
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		lower := strings.ToLower(raw)
		if strings.Contains(raw, "\\") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
			if err == nil {
				t.Fatalf("%q: a (possibly encoded) slash or backslash was normalised to %q instead of refused", p, got)
			}
			return
		}
		if err != nil {
			return
		}
		if got == "*" {
			if raw != "*" {
				t.Fatalf("%q -> *", p)
			}
			return
		}
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("%q -> %q does not start with /", p, got)
		}
		if strings.Contains(got, "//") {
			t.Fatalf("%q -> %q has repeated slashes", p, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q keeps a dot segment", p, got)
			}
		}
		for i := 0; i < len(got); i++ {
			if mustEscape(got[i]) {
				t.Fatalf("%q -> %q keeps a byte Envoy would have percent-encoded (%#x)", p, got, got[i])
			}
		}
		for i := 0; i+2 < len(got); i++ {
			if got[i] == '%' {
				if !isHex(got[i+1]) || !isHex(got[i+2]) {
					t.Fatalf("%q -> %q has a malformed escape", p, got)
				}
				if d := unhex(got[i+1])<<4 | unhex(got[i+2]); isUnreserved(d) {
					t.Fatalf("%q -> %q keeps an encoded unreserved character", p, got)
				}
				if got[i+1] != upperHex(got[i+1]) || got[i+2] != upperHex(got[i+2]) {
					t.Fatalf("%q -> %q keeps a lower-case escape", p, got)
				}
			}
		}
		again, err := NormalizePath(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", p, got, again, err)
		}
	})
}
