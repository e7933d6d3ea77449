package policy

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// wantErr checks err against the fragments its text must contain; no
// fragments means no error.
func wantErr(t *testing.T, err error, fragments ...string) {
	t.Helper()
	if len(fragments) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
}

func TestParseMetadataMaxAge(t *testing.T) {
	tests := []struct {
		name    string
		value   any
		want    Field[time.Duration]
		wantErr []string // fragments; nil means success
	}{
		{name: "a number of seconds from a Struct is accepted", value: float64(300), want: set(300 * time.Second)},
		{name: "an int from YAML is accepted", value: 300, want: set(300 * time.Second)},
		{name: "an int64 is accepted", value: int64(90), want: set(90 * time.Second)},
		{name: "a string of digits is seconds", value: "300", want: set(300 * time.Second)},
		{name: "a Go duration in minutes is accepted", value: "5m", want: set(5 * time.Minute)},
		{name: "a Go duration in seconds is accepted", value: "90s", want: set(90 * time.Second)},
		{name: "a compound Go duration is accepted", value: "1h30m", want: set(90 * time.Minute)},
		{name: "1000ms is a whole second and accepted", value: "1000ms", want: set(time.Second)},
		{name: "number 0 is a rule, not a clearing", value: float64(0), want: set(time.Duration(0))},
		{name: "string 0 is a rule, not a clearing", value: "0", want: set(time.Duration(0))},
		{name: "0s is a rule, not a clearing", value: "0s", want: set(time.Duration(0))},
		{name: "the empty string clears the field", value: "", want: set(noMaxAge)},
		{name: "the largest representable number of seconds is accepted", value: float64(maxAgeLimit), want: set(time.Duration(maxAgeLimit) * time.Second)},
		{name: "a negative number is refused", value: float64(-5), wantErr: []string{"max_age: ", "-5 is negative"}},
		{name: "a negative int is refused", value: -1, wantErr: []string{"max_age: ", "-1 is negative"}},
		{name: "a negative duration is refused", value: "-5m", wantErr: []string{"max_age: ", `"-5m" is negative`}},
		{name: "a negative string of seconds is refused", value: "-300", wantErr: []string{"max_age: ", `"-300"`}},
		{name: "1500ms is refused as not whole seconds", value: "1500ms", wantErr: []string{"max_age: ", `"1500ms" is not a whole number of seconds`}},
		{name: "1.5 seconds is refused as not whole seconds", value: 1.5, wantErr: []string{"max_age: ", "1.5 is not a whole number of seconds"}},
		{name: "a decimal string is refused", value: "1.5", wantErr: []string{"max_age: ", `"1.5" is neither seconds nor a duration`}},
		{name: "NaN is refused", value: math.NaN(), wantErr: []string{"max_age: ", "NaN is not a number of seconds"}},
		{name: "+Inf is refused", value: math.Inf(1), wantErr: []string{"max_age: ", "+Inf is not a number of seconds"}},
		{name: "-Inf is refused", value: math.Inf(-1), wantErr: []string{"max_age: ", "-Inf is not a number of seconds"}},
		{name: "a number beyond time.Duration is refused", value: 1e19, wantErr: []string{"max_age: ", "is too large"}},
		{name: "one second beyond time.Duration is refused", value: float64(maxAgeLimit + 1), wantErr: []string{"max_age: ", "is too large"}},
		{name: "a string of 19 digits is refused", value: "9999999999999999999", wantErr: []string{"max_age: ", `"9999999999999999999" is too large`}},
		{name: "a string of 18 digits beyond time.Duration is refused", value: "999999999999999999", wantErr: []string{"max_age: ", "is too large"}},
		{name: "a duration beyond time.Duration is refused", value: "3000000h", wantErr: []string{"max_age: ", `"3000000h" is neither seconds nor a duration`}},
		{name: "a word is refused", value: "five minutes", wantErr: []string{"max_age: ", `"five minutes" is neither seconds nor a duration like "5m" or "90s"`}},
		{name: "digits with spaces are refused", value: " 300", wantErr: []string{"max_age: ", `" 300"`}},
		{name: "a boolean is refused", value: true, wantErr: []string{"max_age: ", "got boolean true"}},
		{name: "a list is refused", value: []any{float64(300)}, wantErr: []string{"max_age: ", "got a list"}},
		{name: "an object is refused", value: map[string]any{"seconds": float64(300)}, wantErr: []string{"max_age: ", "got an object"}},
		{name: "null is refused and points to the empty string for clearing", value: nil, wantErr: []string{"max_age: ", `null (use "" to clear a field)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseMetadata(map[string]any{"max_age": tt.value}, DefaultLevels)
			wantErr(t, err, tt.wantErr...)
			if tt.wantErr != nil {
				if !l.IsZero() {
					t.Errorf("a failed parse returned a non-empty layer %+v", l)
				}
				return
			}
			if l.MaxAge != tt.want {
				t.Errorf("MaxAge = %+v, want %+v", l.MaxAge, tt.want)
			}
		})
	}
}

func TestParseContextExtensionsMaxAge(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    Field[time.Duration]
		wantErr []string
	}{
		{name: "digits are seconds", value: "300", want: set(300 * time.Second)},
		{name: "a duration is accepted", value: "5m", want: set(5 * time.Minute)},
		{name: "90s is accepted", value: "90s", want: set(90 * time.Second)},
		{name: "0 is a rule", value: "0", want: set(time.Duration(0))},
		{name: "the empty string clears", value: "", want: set(noMaxAge)},
		{name: "a negative duration is refused", value: "-5m", wantErr: []string{"max_age: ", `"-5m" is negative`}},
		{name: "1500ms is refused", value: "1500ms", wantErr: []string{"max_age: ", "not a whole number of seconds"}},
		{name: "NaN as text is refused", value: "NaN", wantErr: []string{"max_age: ", `"NaN" is neither seconds nor a duration`}},
		{name: "a huge number is refused", value: "99999999999999999999999", wantErr: []string{"max_age: ", "is too large"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseContextExtensions(map[string]string{"max_age": tt.value}, DefaultLevels)
			wantErr(t, err, tt.wantErr...)
			if tt.wantErr == nil && l.MaxAge != tt.want {
				t.Errorf("MaxAge = %+v, want %+v", l.MaxAge, tt.want)
			}
		})
	}
}

// TestMaxAgeZeroAndClearedThroughResolve pins the difference the contract
// draws between max_age 0 ("authenticated just now") and max_age "" (no rule).
func TestMaxAgeZeroAndClearedThroughResolve(t *testing.T) {
	def, err := ParseMetadata(map[string]any{"max_age": "5m"}, DefaultLevels)
	wantErr(t, err)
	tests := []struct {
		name       string
		value      any
		wantHas    bool
		wantMaxAge time.Duration
	}{
		{"max_age 0 over a 5m default is a rule of zero seconds", float64(0), true, 0},
		{"max_age \"0\" over a 5m default is a rule of zero seconds", "0", true, 0},
		{"max_age \"\" over a 5m default removes the rule", "", false, 0},
		{"max_age 60 over a 5m default is 60 seconds", float64(60), true, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseMetadata(map[string]any{"max_age": tt.value}, DefaultLevels)
			wantErr(t, err)
			p, prov := Resolve(Sourced{Source: SourceRouteMetadata, Layer: l}, Sourced{Source: SourceDefault, Layer: def})
			if p.HasMaxAge != tt.wantHas || p.MaxAge != tt.wantMaxAge {
				t.Errorf("HasMaxAge, MaxAge = %v, %v; want %v, %v", p.HasMaxAge, p.MaxAge, tt.wantHas, tt.wantMaxAge)
			}
			if p.NeedsStepUp() != tt.wantHas {
				t.Errorf("NeedsStepUp() = %v, want %v", p.NeedsStepUp(), tt.wantHas)
			}
			if got := prov[FieldMaxAge]; got != "route_metadata" {
				t.Errorf("provenance of max_age = %q, want route_metadata", got)
			}
		})
	}
}

func TestParseMetadataRequiredACR(t *testing.T) {
	tests := []struct {
		name    string
		levels  Levels
		value   any
		want    Field[string]
		wantErr string // the whole error text; "" means success
	}{
		{name: "a level on the ladder is accepted", levels: DefaultLevels, value: "aal2", want: set("aal2")},
		{name: "the lowest level is accepted", levels: DefaultLevels, value: "aal1", want: set("aal1")},
		{name: "the empty string clears", levels: DefaultLevels, value: "", want: set("")},
		{name: "a level of a custom ladder is accepted", levels: Levels{"1", "2"}, value: "2", want: set("2")},
		{name: "a level not on the ladder names the field, the value and the ladder", levels: DefaultLevels, value: "aal9", wantErr: `required_acr: "aal9" is not one of acr_levels [aal1 aal2 aal3]`},
		{name: "levels compare case-sensitively", levels: DefaultLevels, value: "AAL2", wantErr: `required_acr: "AAL2" is not one of acr_levels [aal1 aal2 aal3]`},
		{name: "an IdP alias is not a level", levels: DefaultLevels, value: "urn:okta:loa:2fa:any", wantErr: `required_acr: "urn:okta:loa:2fa:any" is not one of acr_levels [aal1 aal2 aal3]`},
		{name: "a value with a quote is not a level", levels: DefaultLevels, value: `aal2"`, wantErr: `required_acr: "aal2\"" is not one of acr_levels [aal1 aal2 aal3]`},
		{name: "a number is refused", levels: DefaultLevels, value: float64(2), wantErr: "required_acr: must be a string from acr_levels [aal1 aal2 aal3], got number 2"},
		{name: "null is refused", levels: DefaultLevels, value: nil, wantErr: `required_acr: must be a string from acr_levels [aal1 aal2 aal3], got null (use "" to clear a field)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseMetadata(map[string]any{"required_acr": tt.value}, tt.levels)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want exactly %q", err, tt.wantErr)
				}
				return
			}
			wantErr(t, err)
			if l.RequiredACR != tt.want {
				t.Errorf("RequiredACR = %+v, want %+v", l.RequiredACR, tt.want)
			}
		})
	}
}

func TestParseMetadataMachineScopes(t *testing.T) {
	tests := []struct {
		name    string
		value   any
		want    Field[[]string]
		wantErr []string
	}{
		{name: "a list from a Struct is accepted", value: []any{"payouts:write", "payouts:read"}, want: set([]string{"payouts:write", "payouts:read"})},
		{name: "a list of strings from config is accepted", value: []string{"payouts:write"}, want: set([]string{"payouts:write"})},
		{name: "a space-separated string is split", value: "payouts:write  payouts:read", want: set([]string{"payouts:write", "payouts:read"})},
		{name: "a URL-shaped scope is accepted", value: "https://api.example.com/payouts.write", want: set([]string{"https://api.example.com/payouts.write"})},
		{name: "the empty string clears", value: "", want: set([]string(nil))},
		{name: "a blank string clears", value: "   ", want: set([]string(nil))},
		{name: "an empty list clears", value: []any{}, want: set([]string(nil))},
		{name: "a scope with a double quote is refused", value: []any{`pay"outs`}, wantErr: []string{"machine_scopes: ", `scope "pay\"outs" has a character RFC 6749 does not allow ('"')`}},
		{name: "a scope with a double quote in a string is refused", value: `payouts:write x"y`, wantErr: []string{"machine_scopes: ", `scope "x\"y"`}},
		{name: "a scope with a backslash is refused", value: []any{`pay\outs`}, wantErr: []string{"machine_scopes: ", `scope "pay\\outs" has a character RFC 6749 does not allow ('\\')`}},
		{name: "a scope with a control character is refused", value: []any{"pay\x01outs"}, wantErr: []string{"machine_scopes: ", `scope "pay\x01outs" has a character RFC 6749 does not allow`}},
		{name: "a scope with DEL is refused", value: "pay\x7fouts", wantErr: []string{"machine_scopes: ", "RFC 6749 does not allow ('\\x7f')"}},
		{name: "a list element with a space is refused", value: []any{"payouts write"}, wantErr: []string{"machine_scopes: ", `scope "payouts write"`}},
		{name: "a list element with a newline is refused", value: []any{"payouts:write\r\nx: y"}, wantErr: []string{"machine_scopes: ", "RFC 6749 does not allow ('\\r')"}},
		{name: "a non-ASCII scope is refused", value: []any{"paiements:écrire"}, wantErr: []string{"machine_scopes: ", "RFC 6749 does not allow"}},
		{name: "an empty list element is refused", value: []any{"payouts:write", ""}, wantErr: []string{"machine_scopes: a scope is empty"}},
		{name: "a non-string list element is refused by index", value: []any{"payouts:write", float64(3)}, wantErr: []string{"machine_scopes: [1] must be a string, got number 3"}},
		{name: "a number is refused", value: float64(3), wantErr: []string{"machine_scopes: must be a list of scopes or a space-separated string, got number 3"}},
		{name: "an object is refused", value: map[string]any{}, wantErr: []string{"machine_scopes: ", "got an object"}},
		{name: "null is refused", value: nil, wantErr: []string{"machine_scopes: ", `use "" to clear`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseMetadata(map[string]any{"machine_scopes": tt.value}, DefaultLevels)
			wantErr(t, err, tt.wantErr...)
			if tt.wantErr == nil && !reflect.DeepEqual(l.MachineScopes, tt.want) {
				t.Errorf("MachineScopes = %#v, want %#v", l.MachineScopes, tt.want)
			}
		})
	}
}

func TestParseContextExtensionsMachineScopes(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    Field[[]string]
		wantErr []string
	}{
		{name: "a space-separated string is split", value: "payouts:write payouts:read", want: set([]string{"payouts:write", "payouts:read"})},
		{name: "the empty string clears", value: "", want: set([]string(nil))},
		{name: "a quote is refused", value: `a"b`, wantErr: []string{"machine_scopes: ", `scope "a\"b"`}},
		{name: "a backslash is refused", value: `a\b`, wantErr: []string{"machine_scopes: ", `scope "a\\b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseContextExtensions(map[string]string{"machine_scopes": tt.value}, DefaultLevels)
			wantErr(t, err, tt.wantErr...)
			if tt.wantErr == nil && !reflect.DeepEqual(l.MachineScopes, tt.want) {
				t.Errorf("MachineScopes = %#v, want %#v", l.MachineScopes, tt.want)
			}
		})
	}
}

func TestParseMetadataModeAndName(t *testing.T) {
	tests := []struct {
		name    string
		meta    map[string]any
		want    Layer
		wantErr string
	}{
		{name: "mode enforce is accepted", meta: map[string]any{"mode": "enforce"}, want: Layer{Mode: set(ModeEnforce)}},
		{name: "mode dry_run is accepted", meta: map[string]any{"mode": "dry_run"}, want: Layer{Mode: set(ModeDryRun)}},
		{name: "mode off is accepted", meta: map[string]any{"mode": "off"}, want: Layer{Mode: set(ModeOff)}},
		{name: "mode empty clears", meta: map[string]any{"mode": ""}, want: Layer{Mode: set(Mode(""))}},
		{name: "mode dry-run with a hyphen is refused", meta: map[string]any{"mode": "dry-run"}, wantErr: `mode: "dry-run" is not one of enforce, dry_run, off`},
		{name: "mode is case-sensitive", meta: map[string]any{"mode": "OFF"}, wantErr: `mode: "OFF" is not one of enforce, dry_run, off`},
		{name: "mode as a boolean is refused", meta: map[string]any{"mode": false}, wantErr: "mode: must be one of enforce, dry_run, off, got boolean false"},
		{name: "a name is accepted", meta: map[string]any{"name": "payout-destination"}, want: Layer{Name: set("payout-destination")}},
		{name: "an empty name clears", meta: map[string]any{"name": ""}, want: Layer{Name: set("")}},
		{name: "a name with a newline is refused", meta: map[string]any{"name": "a\nb"}, wantErr: `name: "a\nb" contains a control character`},
		{name: "a name as a list is refused", meta: map[string]any{"name": []any{"a"}}, wantErr: "name: must be a string, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseMetadata(tt.meta, DefaultLevels)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want exactly %q", err, tt.wantErr)
				}
				return
			}
			wantErr(t, err)
			if !reflect.DeepEqual(l, tt.want) {
				t.Errorf("layer = %+v, want %+v", l, tt.want)
			}
		})
	}
}

func TestParseMetadataWholePolicy(t *testing.T) {
	tests := []struct {
		name string
		meta map[string]any
		want Layer
	}{
		{name: "nil metadata says nothing", meta: nil, want: Layer{}},
		{name: "empty metadata says nothing", meta: map[string]any{}, want: Layer{}},
		{
			name: "every field is read",
			meta: map[string]any{
				"required_acr":   "aal2",
				"max_age":        "5m",
				"machine_scopes": []any{"payouts:write"},
				"mode":           "dry_run",
				"name":           "payout-destination",
			},
			want: Layer{
				RequiredACR:   set("aal2"),
				MaxAge:        set(5 * time.Minute),
				MachineScopes: set([]string{"payouts:write"}),
				Mode:          set(ModeDryRun),
				Name:          set("payout-destination"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseMetadata(tt.meta, DefaultLevels)
			wantErr(t, err)
			if !reflect.DeepEqual(l, tt.want) {
				t.Errorf("layer = %+v, want %+v", l, tt.want)
			}
		})
	}
}

func TestParseMetadataUnknownKey(t *testing.T) {
	tests := []struct {
		name    string
		meta    map[string]any
		wantErr []string
	}{
		{name: "a misspelt requried_acr is an error naming it", meta: map[string]any{"requried_acr": "aal2"}, wantErr: []string{"requried_acr: unknown policy field (known: required_acr, max_age, machine_scopes, mode, name, sender_constraint, resource_path, required_scopes)"}},
		{name: "a misspelt key is an error even next to valid ones", meta: map[string]any{"required_acr": "aal2", "maxage": "5m"}, wantErr: []string{"maxage: unknown policy field"}},
		{name: "keys are case-sensitive", meta: map[string]any{"Required_ACR": "aal2"}, wantErr: []string{"Required_ACR: unknown policy field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseMetadata(tt.meta, DefaultLevels)
			wantErr(t, err, tt.wantErr...)
			if !l.IsZero() {
				t.Errorf("a failed parse returned a non-empty layer %+v", l)
			}
		})
	}
}

func TestParseContextExtensionsIgnoresOtherKeys(t *testing.T) {
	tests := []struct {
		name string
		ext  map[string]string
		want Layer
	}{
		{name: "keys of other filters are ignored", ext: map[string]string{"virtual_host": "api", "requried_acr": "aal9"}, want: Layer{}},
		{name: "policy fields next to other keys are read", ext: map[string]string{"team": "payments", "required_acr": "aal3", "max_age": "300"}, want: Layer{RequiredACR: set("aal3"), MaxAge: set(300 * time.Second)}},
		{
			name: "every field is read from strings",
			ext:  map[string]string{"required_acr": "", "max_age": "", "machine_scopes": "a b", "mode": "off", "name": "n"},
			want: Layer{RequiredACR: set(""), MaxAge: set(noMaxAge), MachineScopes: set([]string{"a", "b"}), Mode: set(ModeOff), Name: set("n")},
		},
		{name: "nil extensions say nothing", ext: nil, want: Layer{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseContextExtensions(tt.ext, DefaultLevels)
			wantErr(t, err)
			if !reflect.DeepEqual(l, tt.want) {
				t.Errorf("layer = %+v, want %+v", l, tt.want)
			}
		})
	}
}

func TestParseErrorsAreReportedTogether(t *testing.T) {
	tests := []struct {
		name       string
		parse      func() (Layer, error)
		wantFields []string
		wantText   string
	}{
		{
			name: "route metadata reports every bad field, in key order",
			parse: func() (Layer, error) {
				return ParseMetadata(map[string]any{
					"required_acr": "aal9",
					"max_age":      "-5m",
					"mode":         "audit",
					"requried_acr": "aal2",
					"name":         "ok",
				}, DefaultLevels)
			},
			wantFields: []string{"max_age", "mode", "required_acr", "requried_acr"},
			wantText: `max_age: "-5m" is negative; ` +
				`mode: "audit" is not one of enforce, dry_run, off; ` +
				`required_acr: "aal9" is not one of acr_levels [aal1 aal2 aal3]; ` +
				`requried_acr: unknown policy field (known: required_acr, max_age, machine_scopes, mode, name, sender_constraint, resource_path, required_scopes)`,
		},
		{
			name: "context extensions report every bad field, in field order",
			parse: func() (Layer, error) {
				return ParseContextExtensions(map[string]string{
					"mode":           "audit",
					"machine_scopes": `a"b`,
					"max_age":        "soon",
					"required_acr":   "aal9",
				}, DefaultLevels)
			},
			wantFields: []string{"required_acr", "max_age", "machine_scopes", "mode"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := tt.parse()
			if !l.IsZero() {
				t.Errorf("a failed parse returned a non-empty layer %+v", l)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v (%T) is not policy.Errors", err, err)
			}
			var fields []string
			for _, fe := range errs {
				fields = append(fields, fe.Field)
			}
			if !reflect.DeepEqual(fields, tt.wantFields) {
				t.Errorf("fields = %v, want %v", fields, tt.wantFields)
			}
			if tt.wantText != "" && err.Error() != tt.wantText {
				t.Errorf("error =\n%s\nwant\n%s", err, tt.wantText)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantFields[0] {
				t.Errorf("errors.As(*FieldError) = %v, want the first problem, on %s", fe, tt.wantFields[0])
			}
		})
	}
}

func TestLayerSetFields(t *testing.T) {
	tests := []struct {
		name     string
		layer    Layer
		want     []string
		wantZero bool
	}{
		{name: "an empty layer sets nothing", layer: Layer{}, want: nil, wantZero: true},
		{name: "a cleared field counts as set", layer: Layer{RequiredACR: set("")}, want: []string{"required_acr"}},
		{name: "fields are listed in contract order", layer: Layer{Name: set("n"), MaxAge: set(time.Minute), Mode: set(ModeOff), MachineScopes: set([]string{"a"}), RequiredACR: set("aal1")}, want: []string{"required_acr", "max_age", "machine_scopes", "mode", "name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.layer.SetFields(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SetFields() = %v, want %v", got, tt.want)
			}
			if got := tt.layer.IsZero(); got != tt.wantZero {
				t.Errorf("IsZero() = %v, want %v", got, tt.wantZero)
			}
		})
	}
}

func TestCheckHeaderSafe(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		wantErr string
	}{
		{name: "an Okta URN is safe", value: "urn:okta:loa:2fa:any"},
		{name: "a refeds URL is safe", value: "https://refeds.org/profile/mfa"},
		{name: "a space is safe inside a quoted parameter", value: "a b"},
		{name: "a double quote is refused", value: `a"b`, wantErr: `contains '"', which cannot appear in a WWW-Authenticate parameter`},
		{name: "a backslash is refused", value: `a\b`, wantErr: `contains '\\'`},
		{name: "a carriage return is refused", value: "a\rb", wantErr: `contains '\r'`},
		{name: "a line feed is refused", value: "a\nb", wantErr: `contains '\n'`},
		{name: "DEL is refused", value: "a\x7fb", wantErr: `contains '\x7f'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHeaderSafe(tt.value)
			if tt.wantErr == "" {
				wantErr(t, err)
				return
			}
			wantErr(t, err, tt.wantErr)
		})
	}
}
