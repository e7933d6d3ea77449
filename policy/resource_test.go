package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseResourcePath(t *testing.T) {
	tests := []struct {
		name    string
		v       any
		want    string
		wantErr string
	}{
		{name: "a normalised path is taken as it is", v: "/mcp", want: "/mcp"},
		{name: "a nested path with a trailing slash is fine", v: "/tenants/a/mcp/", want: "/tenants/a/mcp/"},
		{name: "the empty string clears the field", v: "", want: ""},
		{name: "a path without a leading slash is refused, naming the fix", v: "mcp", wantErr: `"mcp" must start with / (write it like "/mcp")`},
		{name: "a full URL is refused", v: "https://api.example.com/mcp", wantErr: "must start with /"},
		{name: "a query is refused", v: "/mcp?x=1", wantErr: `write it as "/mcp"`},
		{name: "a fragment is refused", v: "/mcp#x", wantErr: `write it as "/mcp"`},
		{name: "dot segments are refused", v: "/a/../mcp", wantErr: `write it as "/mcp"`},
		{name: "repeated slashes are refused", v: "//mcp", wantErr: `write it as "/mcp"`},
		{name: "a quote, which would break the header parameter, is refused", v: `/m"cp`, wantErr: `write it as "/m%22cp"`},
		{name: "an encoded slash is refused", v: "/a%2Fb", wantErr: "encoded slash"},
		{name: "a backslash is refused", v: `/a\b`, wantErr: "backslash"},
		{name: "a number is refused", v: float64(1), wantErr: `must be a path such as "/mcp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseResourcePath(tt.v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// The new fields are read from every source field by field, like the others.
func TestResourceFieldsFromEverySource(t *testing.T) {
	meta, err := ParseMetadata(map[string]any{"resource_path": "/mcp", "required_scopes": []any{"mcp:tools", "mcp:read"}}, DefaultLevels)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := ParseContextExtensions(map[string]string{"resource_path": "/other", "required_scopes": "a b"}, DefaultLevels)
	if err != nil {
		t.Fatal(err)
	}
	p, prov := Resolve(Sourced{Source: SourceRouteMetadata, Layer: meta}, Sourced{Source: SourceContextExtensions, Layer: ext})
	if p.ResourcePath != "/mcp" || !reflect.DeepEqual(p.RequiredScopes, []string{"mcp:tools", "mcp:read"}) {
		t.Errorf("route metadata should win: %+v", p)
	}
	if prov[FieldResourcePath] != "route_metadata" || prov[FieldRequiredScopes] != "route_metadata" {
		t.Errorf("provenance %v", prov)
	}
	// A more specific source clears what the default requires.
	clear, err := ParseContextExtensions(map[string]string{"required_scopes": "", "resource_path": ""}, DefaultLevels)
	if err != nil {
		t.Fatal(err)
	}
	p = Merge(Sourced{Source: SourceContextExtensions, Layer: clear}, Sourced{Source: SourceDefault, Layer: meta})
	if p.ResourcePath != "" || p.RequiredScopes != nil {
		t.Errorf("cleared fields came back: %+v", p)
	}
	if _, err := ParseContextExtensions(map[string]string{"required_scopes": `a"b`}, DefaultLevels); err == nil ||
		!strings.Contains(err.Error(), "required_scopes: scope") {
		t.Errorf("a scope with a quote: %v", err)
	}
	if _, err := ParseMetadata(map[string]any{"required_scopes": float64(3)}, DefaultLevels); err == nil {
		t.Error("required_scopes: 3 was accepted")
	}
	if got := (Policy{ResourcePath: "/mcp", RequiredScopes: []string{"a", "b"}}).String(); got != "{mode=enforce resource_path=/mcp required_scopes=a b}" {
		t.Errorf("String() = %q", got)
	}
}

func TestChallengeScopes(t *testing.T) {
	p := Policy{RequiredScopes: []string{"mcp:tools", "payouts:write"}, MachineScopes: []string{"payouts:write", "payouts:read"}}
	human := Decision{Policy: p}
	if got := human.ChallengeScopes(); !reflect.DeepEqual(got, []string{"mcp:tools", "payouts:write"}) {
		t.Errorf("human: %v", got)
	}
	machine := Decision{Policy: p, Machine: true}
	if got := machine.ChallengeScopes(); !reflect.DeepEqual(got, []string{"mcp:tools", "payouts:write", "payouts:read"}) {
		t.Errorf("machine: required_scopes then the machine_scopes not listed, got %v", got)
	}
	onlyMachine := Decision{Policy: Policy{MachineScopes: []string{"x"}}, Machine: true}
	if got := onlyMachine.ChallengeScopes(); !reflect.DeepEqual(got, []string{"x"}) {
		t.Errorf("machine_scopes only: %v", got)
	}
	if got := (&Decision{Policy: Policy{MachineScopes: []string{"x"}}}).ChallengeScopes(); got != nil {
		t.Errorf("a human is never told machine_scopes: %v", got)
	}
}
