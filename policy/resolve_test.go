package policy

import (
	"reflect"
	"testing"
	"time"
)

func metaLayer(t *testing.T, m map[string]any) Layer {
	t.Helper()
	l, err := ParseMetadata(m, DefaultLevels)
	if err != nil {
		t.Fatalf("ParseMetadata(%v): %v", m, err)
	}
	return l
}

func extLayer(t *testing.T, m map[string]string) Layer {
	t.Helper()
	l, err := ParseContextExtensions(m, DefaultLevels)
	if err != nil {
		t.Fatalf("ParseContextExtensions(%v): %v", m, err)
	}
	return l
}

func TestResolve(t *testing.T) {
	// The config file's default for every case: a strict baseline that routes loosen.
	strictDefault := map[string]any{
		"required_acr":   "aal2",
		"max_age":        "10m",
		"machine_scopes": "api:admin",
		"mode":           "dry_run",
		"name":           "default",
	}
	tests := []struct {
		name     string
		metadata map[string]any    // nil: no route metadata
		ext      map[string]string // nil: no context extensions
		route    map[string]any    // nil: no matching config route
		def      map[string]any    // nil: no policy.default
		want     Policy
		wantProv Provenance
	}{
		{
			name:     "nothing anywhere resolves to an empty enforcing policy",
			want:     Policy{},
			wantProv: Provenance{},
		},
		{
			name: "the default alone supplies every field",
			def:  strictDefault,
			want: Policy{RequiredACR: "aal2", MaxAge: 10 * time.Minute, HasMaxAge: true, MachineScopes: []string{"api:admin"}, Mode: ModeDryRun, Name: "default"},
			wantProv: Provenance{
				"required_acr": "policy.default", "max_age": "policy.default", "machine_scopes": "policy.default",
				"mode": "policy.default", "name": "policy.default",
			},
		},
		{
			name:     "route metadata beats context extensions, config routes and the default",
			metadata: map[string]any{"required_acr": "aal3"},
			ext:      map[string]string{"required_acr": "aal1"},
			route:    map[string]any{"required_acr": "aal1"},
			def:      map[string]any{"required_acr": "aal1"},
			want:     Policy{RequiredACR: "aal3"},
			wantProv: Provenance{"required_acr": "route_metadata"},
		},
		{
			name:     "context extensions beat config routes and the default",
			ext:      map[string]string{"max_age": "60"},
			route:    map[string]any{"max_age": "5m"},
			def:      map[string]any{"max_age": "10m"},
			want:     Policy{MaxAge: time.Minute, HasMaxAge: true},
			wantProv: Provenance{"max_age": "context_extensions"},
		},
		{
			name:     "a config route beats the default and is labelled with its name",
			route:    map[string]any{"machine_scopes": []any{"payouts:write"}},
			def:      map[string]any{"machine_scopes": "api:admin"},
			want:     Policy{MachineScopes: []string{"payouts:write"}},
			wantProv: Provenance{"machine_scopes": "policy.routes[payout]"},
		},
		{
			name:     "fields merge one by one from four sources",
			metadata: map[string]any{"required_acr": "aal3"},
			ext:      map[string]string{"max_age": "300", "unrelated": "x"},
			route:    map[string]any{"machine_scopes": "payouts:write", "name": "payout"},
			def:      strictDefault,
			want:     Policy{RequiredACR: "aal3", MaxAge: 5 * time.Minute, HasMaxAge: true, MachineScopes: []string{"payouts:write"}, Mode: ModeDryRun, Name: "payout"},
			wantProv: Provenance{
				"required_acr": "route_metadata", "max_age": "context_extensions",
				"machine_scopes": "policy.routes[payout]", "name": "policy.routes[payout]", "mode": "policy.default",
			},
		},
		{
			name:     "a matching config route's name wins over route metadata's, the requirements still merge most specific first",
			metadata: map[string]any{"name": "default", "required_acr": "aal3"},
			route:    map[string]any{"mode": "off", "name": "demo-page", "required_acr": "aal1"},
			want:     Policy{RequiredACR: "aal3", Mode: ModeOff, Name: "demo-page"},
			wantProv: Provenance{"required_acr": "route_metadata", "mode": "policy.routes[payout]", "name": "policy.routes[payout]"},
		},
		{
			name:     "without a config route, route metadata's name beats the default's",
			metadata: map[string]any{"name": "marketing"},
			def:      strictDefault,
			want:     Policy{RequiredACR: "aal2", MaxAge: 10 * time.Minute, HasMaxAge: true, MachineScopes: []string{"api:admin"}, Mode: ModeDryRun, Name: "marketing"},
			wantProv: Provenance{
				"required_acr": "policy.default", "max_age": "policy.default", "machine_scopes": "policy.default",
				"mode": "policy.default", "name": "route_metadata",
			},
		},
		{
			name:  "an empty required_acr in a route clears the default's",
			route: map[string]any{"required_acr": ""},
			def:   map[string]any{"required_acr": "aal2"},
			want:  Policy{},
			wantProv: Provenance{
				"required_acr": "policy.routes[payout]",
			},
		},
		{
			name:     "an empty max_age in context extensions clears the default's",
			ext:      map[string]string{"max_age": ""},
			def:      map[string]any{"max_age": "10m"},
			want:     Policy{},
			wantProv: Provenance{"max_age": "context_extensions"},
		},
		{
			name:     "an empty machine_scopes in route metadata clears the default's",
			metadata: map[string]any{"machine_scopes": ""},
			def:      map[string]any{"machine_scopes": []any{"api:admin"}},
			want:     Policy{},
			wantProv: Provenance{"machine_scopes": "route_metadata"},
		},
		{
			name:     "an empty mode in route metadata clears the default's dry_run back to enforce",
			metadata: map[string]any{"mode": ""},
			def:      map[string]any{"mode": "dry_run"},
			want:     Policy{},
			wantProv: Provenance{"mode": "route_metadata"},
		},
		{
			name:     "a clearing in a more specific source also hides a less specific value",
			metadata: map[string]any{"required_acr": ""},
			ext:      map[string]string{"required_acr": "aal3"},
			want:     Policy{},
			wantProv: Provenance{"required_acr": "route_metadata"},
		},
		{
			name:     "a value in a more specific source restores what a less specific one cleared",
			ext:      map[string]string{"required_acr": "aal1"},
			route:    map[string]any{"required_acr": ""},
			def:      map[string]any{"required_acr": "aal3"},
			want:     Policy{RequiredACR: "aal1"},
			wantProv: Provenance{"required_acr": "context_extensions"},
		},
		{
			name:     "max_age 0 in a route overrides the default's 10m and is still a rule",
			route:    map[string]any{"max_age": 0},
			def:      map[string]any{"max_age": "10m"},
			want:     Policy{MaxAge: 0, HasMaxAge: true},
			wantProv: Provenance{"max_age": "policy.routes[payout]"},
		},
		{
			name:     "a route can loosen everything the default requires",
			route:    map[string]any{"required_acr": "", "max_age": "", "machine_scopes": "", "mode": "", "name": ""},
			def:      strictDefault,
			want:     Policy{},
			wantProv: Provenance{"required_acr": "policy.routes[payout]", "max_age": "policy.routes[payout]", "machine_scopes": "policy.routes[payout]", "mode": "policy.routes[payout]", "name": "policy.routes[payout]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers []Sourced
			if tt.metadata != nil {
				layers = append(layers, Sourced{Source: SourceRouteMetadata, Layer: metaLayer(t, tt.metadata)})
			}
			if tt.ext != nil {
				layers = append(layers, Sourced{Source: SourceContextExtensions, Layer: extLayer(t, tt.ext)})
			}
			if tt.route != nil {
				layers = append(layers, Sourced{Source: SourceConfigRoute, Label: "payout", Layer: metaLayer(t, tt.route)})
			}
			if tt.def != nil {
				layers = append(layers, Sourced{Source: SourceDefault, Layer: metaLayer(t, tt.def)})
			}
			p, prov := Resolve(layers...)
			if !reflect.DeepEqual(p, tt.want) {
				t.Errorf("policy = %#v, want %#v", p, tt.want)
			}
			if !reflect.DeepEqual(prov, tt.wantProv) {
				t.Errorf("provenance = %v, want %v", prov, tt.wantProv)
			}
		})
	}
}

func TestSourcedString(t *testing.T) {
	tests := []struct {
		name string
		s    Sourced
		want string
	}{
		{"route metadata has no label", Sourced{Source: SourceRouteMetadata}, "route_metadata"},
		{"context extensions have no label", Sourced{Source: SourceContextExtensions}, "context_extensions"},
		{"a config route is labelled with its name", Sourced{Source: SourceConfigRoute, Label: "payout"}, "policy.routes[payout]"},
		{"a config route without a name can be labelled by index", Sourced{Source: SourceConfigRoute, Label: "2"}, "policy.routes[2]"},
		{"the default has no label", Sourced{Source: SourceDefault}, "policy.default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPolicyMethods(t *testing.T) {
	tests := []struct {
		name       string
		p          Policy
		wantStepUp bool
		wantMode   Mode
		wantString string
	}{
		{name: "an empty policy enforces and needs no step-up", p: Policy{}, wantMode: ModeEnforce, wantString: "{mode=enforce}"},
		{name: "required_acr needs step-up", p: Policy{RequiredACR: "aal2"}, wantStepUp: true, wantMode: ModeEnforce, wantString: "{mode=enforce required_acr=aal2}"},
		{name: "max_age 0 needs step-up", p: Policy{HasMaxAge: true}, wantStepUp: true, wantMode: ModeEnforce, wantString: "{mode=enforce max_age=0s}"},
		{name: "machine_scopes alone need no step-up", p: Policy{MachineScopes: []string{"a", "b"}}, wantMode: ModeEnforce, wantString: "{mode=enforce machine_scopes=a b}"},
		{name: "dry_run is reported as set", p: Policy{Mode: ModeDryRun}, wantMode: ModeDryRun, wantString: "{mode=dry_run}"},
		{
			name:       "every field is rendered, name first",
			p:          Policy{Name: "payout", Mode: ModeOff, RequiredACR: "aal3", MaxAge: 5 * time.Minute, HasMaxAge: true, MachineScopes: []string{"payouts:write"}},
			wantStepUp: true, wantMode: ModeOff,
			wantString: "{name=payout mode=off required_acr=aal3 max_age=5m0s machine_scopes=payouts:write}",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.NeedsStepUp(); got != tt.wantStepUp {
				t.Errorf("NeedsStepUp() = %v, want %v", got, tt.wantStepUp)
			}
			if got := tt.p.EffectiveMode(); got != tt.wantMode {
				t.Errorf("EffectiveMode() = %q, want %q", got, tt.wantMode)
			}
			if got := tt.p.String(); got != tt.wantString {
				t.Errorf("String() = %q, want %q", got, tt.wantString)
			}
		})
	}
}
