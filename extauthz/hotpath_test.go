package extauthz

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/policy"
)

// Tests of the request path's shortcuts: each must give exactly what the
// plain computation gives.

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMetadataLayerRemembered: remembered layers equal a fresh parse, errors
// are never remembered, and metadata that differs only in a value's kind
// ("300" and 300) is told apart.
func TestMetadataLayerRemembered(t *testing.T) {
	e := &Engine{settings: policy.Settings{Levels: policy.DefaultLevels}}
	for _, md := range []map[string]any{
		{"required_acr": "aal2", "max_age": 300},
		{"required_acr": "aal2", "max_age": "300"},
		{"required_acr": "aal2", "max_age": "5m", "name": "payouts", "mode": "dry_run"},
		{"machine_scopes": []any{"a:b", "c"}, "required_acr": ""},
		{"machine_scopes": "a:b c"},
		{"required_acr": "aal9"},
		{"requried_acr": "aal2"},
		{"max_age": true},
		{"max_age": nil},
		{"name": map[string]any{"nested": 1}},
		{"machine_scopes": []any{"a", 1}},
	} {
		s := mustStruct(t, md)
		want, wantErr := policy.ParseMetadata(s.AsMap(), policy.DefaultLevels)
		for i := range 3 {
			got, err := e.metadataLayer(s)
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%v, call %d: %v, %v; want %v, %v", md, i, got, err, want, wantErr)
			}
		}
	}
	if n := e.layers.len(); n != 5 {
		t.Fatalf("remembered %d layers, want the 5 valid ones", n)
	}
}

func TestMetadataKeyInjective(t *testing.T) {
	seen := map[string]string{}
	for _, md := range []map[string]any{
		{"a": "1"}, {"a": 1}, {"a": true}, {"a": nil}, {"a": []any{"1"}}, {"a": []any{}},
		{"a": "", "b": ""}, {"ab": ""}, {"a": "b"}, {"a\x01": ""}, {"b": "1"}, {"a": false},
		{"a": []any{"x", "y"}}, {"a": []any{"xy"}}, {"a": "1", "b": "2"}, {"a": "2", "b": "1"},
	} {
		var buf [256]byte
		k, ok := metadataKey(buf[:0], mustStruct(t, md))
		if !ok {
			t.Fatalf("%v: not encoded", md)
		}
		if prev, dup := seen[string(k)]; dup {
			t.Fatalf("%v and %s have the same key", md, prev)
		}
		seen[string(k)] = fmt.Sprint(md)
	}
	long := map[string]any{}
	for i := range 9 {
		long[fmt.Sprint(i)] = "x"
	}
	var buf [256]byte
	for _, md := range []map[string]any{long, {"a": string(make([]byte, 300))}, {"a": map[string]any{}}, {"a": []any{1.0}}} {
		if _, ok := metadataKey(buf[:0], mustStruct(t, md)); ok {
			t.Errorf("%v: encoded, want it left to the parser", md)
		}
	}
}

func TestMergeIsResolveWithoutProvenance(t *testing.T) {
	layers := []policy.Sourced{
		{Source: policy.SourceRouteMetadata, Layer: policy.Layer{RequiredACR: policy.Field[string]{Set: true, Value: "aal2"}}},
		{Source: policy.SourceConfigRoute, Label: "r", Layer: policy.Layer{
			MaxAge: policy.Field[time.Duration]{Set: true, Value: time.Minute},
			Name:   policy.Field[string]{Set: true, Value: "r"}}},
	}
	p, _ := policy.Resolve(layers...)
	if m := policy.Merge(layers...); fmt.Sprint(m) != fmt.Sprint(p) {
		t.Fatalf("Merge %v, Resolve %v", m, p)
	}
}

// TestStepUpRemembered: a remembered step-up denial is the one built afresh,
// for every combination of what it depends on.
func TestStepUpRemembered(t *testing.T) {
	rules := &policy.IssuerRules{ChallengeACRValues: map[string]string{"aal3": "urn:x:3"}}
	var remembered stepUpMemo
	for _, r := range []policy.Reason{policy.ReasonACRTooLow, policy.ReasonACRMissing, policy.ReasonAuthTooOld, policy.ReasonAuthTimeMissing} {
		for _, p := range []policy.Policy{
			{RequiredACR: "aal2"}, {RequiredACR: "aal3"}, {MaxAge: 0, HasMaxAge: true},
			{RequiredACR: "aal2", MaxAge: 300 * time.Second, HasMaxAge: true}, {},
		} {
			for _, rl := range []*policy.IssuerRules{noRules, rules} {
				d := &policy.Decision{Reason: r, Policy: p}
				want := buildStepUp(d, rl)
				for range 2 {
					if got := stepUpResponse(d, rl, &remembered); !proto.Equal(got, want) {
						t.Fatalf("%s %v: %v, want %v", r, p, got, want)
					}
				}
			}
		}
	}
}

// TestResponsesMatchPlainBuild compares the responses built from shared and
// pooled-in-one-block parts with the same messages built plainly.
func TestResponsesMatchPlainBuild(t *testing.T) {
	claims := &policy.Claims{Subject: "user-1", AuthTime: time.Unix(1_700_000_000, 0)}
	for _, tc := range []struct {
		o    outcome
		a    attributes
		want *authv3.CheckResponse
	}{
		{
			o: outcome{decision: policy.Decision{Reason: policy.ReasonAllowed, Level: "aal2"}, claims: claims, rules: noRules},
			a: attributes{stepupHeaders: []string{"x-stepup-sub", "x-stepup-evil", "x-stepup-evil"}},
			want: &authv3.CheckResponse{
				Status: statusOK,
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
					Headers:         hdrs(HeaderSub, "user-1", HeaderACR, "aal2", HeaderAuthTime, "1700000000"),
					HeadersToRemove: []string{"x-stepup-evil"},
				}},
				DynamicMetadata: meta("allow", "allowed", ""),
			},
		},
		{
			o: outcome{decision: policy.Decision{Reason: policy.ReasonACRTooLow, Policy: policy.Policy{Name: "p", RequiredACR: "aal2"}},
				claims: claims, rules: noRules, dryRun: true},
			want: &authv3.CheckResponse{
				Status: statusOK,
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
					Headers: hdrs(HeaderSub, "user-1", HeaderAuthTime, "1700000000", HeaderDryRun, "acr_too_low"),
				}},
				DynamicMetadata: meta("allow", "acr_too_low", "p"),
			},
		},
		{
			o: outcome{decision: policy.Decision{Reason: policy.ReasonModeOff}, rules: noRules},
			want: &authv3.CheckResponse{
				Status:          statusOK,
				HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
				DynamicMetadata: meta("allow", "mode_off", ""),
			},
		},
		{
			o: outcome{decision: policy.Decision{Reason: policy.ReasonTokenInvalid}, rules: noRules},
			want: &authv3.CheckResponse{
				Status:          statusDenied,
				HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: deniedInvalid},
				DynamicMetadata: meta("deny", "token_invalid", ""),
			},
		},
		{
			o: outcome{decision: policy.Decision{Reason: policy.ReasonTokenMissing, Policy: policy.Policy{Name: "n"}}, rules: noRules},
			want: &authv3.CheckResponse{
				Status:          statusDenied,
				HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: deniedNoToken},
				DynamicMetadata: meta("deny", "token_missing", "n"),
			},
		},
	} {
		if got := buildResponse(&tc.o, &tc.a); !proto.Equal(got, tc.want) {
			t.Errorf("%s: got\n%v\nwant\n%v", tc.o.decision.Reason, got, tc.want)
		}
	}
}

func hdrs(kv ...string) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	for i := 0; i < len(kv); i += 2 {
		out = append(out, header(kv[i], kv[i+1]))
	}
	return out
}

func meta(decision, reason, name string) *structpb.Struct {
	f := map[string]*structpb.Value{"decision": structpb.NewStringValue(decision), "reason": structpb.NewStringValue(reason)}
	if name != "" {
		f["name"] = structpb.NewStringValue(name)
	}
	return &structpb.Struct{Fields: f}
}

// TestDecisionCounters: counting through the lock-free map lands in the same
// series as the CounterVec, and beyond the map's bound still counts.
func TestDecisionCounters(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for range 3 {
		m.decided("deny", "acr_too_low", "payouts")
	}
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("deny", "acr_too_low", "payouts")); got != 3 {
		t.Fatalf("counted %v, want 3", got)
	}
	names := make([]string, memoLimit+10)
	for i := range names {
		names[i] = fmt.Sprint("p", i)
	}
	m.KnownPolicies(names, nil) // else most would count as OtherPolicy
	for _, n := range names {
		m.decided("allow", "allowed", n)
	}
	m.decided("allow", "allowed", fmt.Sprint("p", memoLimit+5))
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("allow", "allowed", fmt.Sprint("p", memoLimit+5))); got != 2 {
		t.Fatalf("beyond the bound: counted %v, want 2", got)
	}
}

// TestJWTAuthnPayloadMatch: comparing a jwt_authn payload in place gives what
// converting it (Struct.AsMap) and reflect.DeepEqual give.
func TestJWTAuthnPayloadMatch(t *testing.T) {
	own := map[string]any{"sub": "u", "n": 1.5, "ok": true, "none": nil,
		"aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}}
	variants := []map[string]any{
		own,
		{"sub": "u"},
		{"sub": "v", "n": 1.5, "ok": true, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": 2.0, "ok": true, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": 1.5, "ok": false, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": 1.5, "ok": true, "none": "x", "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": 1.5, "ok": true, "none": nil, "aud": []any{"b", "a"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": 1.5, "ok": true, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "y"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": 1.5, "ok": true, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{"z"}, "obj": map[string]any{}},
		{"sub": "u", "n": 1.5, "ok": true, "none": nil, "aud": "a", "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": 1.0, "n": 1.5, "ok": true, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": "1.5", "ok": true, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}},
		{"sub": "u", "n": 1.5, "ok": true, "none": nil, "aud": []any{"a", "b"}, "cnf": map[string]any{"jkt": "x"}, "empty": []any{}, "obj": map[string]any{}, "extra": 1.0},
	}
	for i, stored := range variants {
		md := mustStruct(t, map[string]any{"jwt_payload": stored, "flat": "not a payload"})
		p := jwtAuthnPayloads{md}
		present, equal := p.Match("jwt_payload", own)
		want := reflect.DeepEqual(md.AsMap()["jwt_payload"], own)
		if !present || equal != want {
			t.Errorf("variant %d: present %v equal %v, want equal %v", i, present, equal, want)
		}
		if present, _ := p.Match("flat", own); present {
			t.Errorf("variant %d: a string under the name counts as a payload", i)
		}
		if present, _ := p.Match("absent", own); present {
			t.Errorf("variant %d: a missing name counts as a payload", i)
		}
	}
	// Non-finite numbers come out of AsMap as strings.
	nan := &structpb.Struct{Fields: map[string]*structpb.Value{"p": structpb.NewStructValue(&structpb.Struct{
		Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.NaN())}})}}
	if _, equal := (jwtAuthnPayloads{nan}).Match("p", map[string]any{"x": "NaN"}); equal != reflect.DeepEqual(nan.AsMap()["p"], map[string]any{"x": "NaN"}) {
		t.Error("NaN compares unlike AsMap")
	}
}
