package policy

import (
	"testing"
	"time"
)

// Benchmarks of the pure decision code. Names are benchstat-friendly
// (Benchmark<What>/<key>=<value>); run them with
//
//	go test -run='^$' -bench=. -benchmem -count=10 ./policy | tee new.txt
//
// policy.Decide must not allocate: BenchmarkDecide reports allocs/op and
// TestDecideDoesNotAllocate (below) keeps it at zero.

// benchRoute is the route of BENCHMARKS.md: {required_acr: aal2, max_age: 300}.
func benchRoute() Policy {
	return Policy{RequiredACR: "aal2", MaxAge: 300 * time.Second, HasMaxAge: true, Name: "payout-destination"}
}

func decideCases() []struct {
	name   string
	claims *Claims
	policy Policy
	want   Reason
} {
	scoped := benchRoute()
	scoped.MachineScopes = []string{"payouts:write", "payouts:read"}
	return []struct {
		name   string
		claims *Claims
		policy Policy
		want   Reason
	}{
		{"outcome=allow", human("aal2", ago(time.Minute)), benchRoute(), ReasonAllowed},
		{"outcome=allow_alias", human("urn:okta:loa:2fa:any", ago(time.Minute)), benchRoute(), ReasonAllowed},
		{"outcome=allow_amr", func() *Claims { c := human("", ago(time.Minute)); c.AMR = []string{"pwd", "otp"}; return c }(), benchRoute(), ReasonAllowed},
		{"outcome=step_up_acr", human("aal1", ago(time.Minute)), benchRoute(), ReasonACRTooLow},
		{"outcome=step_up_age", human("aal2", ago(time.Hour)), benchRoute(), ReasonAuthTooOld},
		{"outcome=machine_scoped", machine("payouts:read", "payouts:write"), scoped, ReasonAllowed},
		{"outcome=machine_missing_scope", machine("payouts:read"), scoped, ReasonScopeMissing},
	}
}

func BenchmarkDecide(b *testing.B) {
	s, rules := testSettings(), testRules()
	for _, tc := range decideCases() {
		b.Run(tc.name, func(b *testing.B) {
			if d := Decide(tc.claims, &tc.policy, rules, s, testNow); d.Reason != tc.want {
				b.Fatalf("reason %s, want %s", d.Reason, tc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				d := Decide(tc.claims, &tc.policy, rules, s, testNow)
				if d.Reason != tc.want {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}

// TestDecideDoesNotAllocate pins the zero-allocation property of Decide on
// every outcome; it is about allocations, not time, so it is no timing test.
func TestDecideDoesNotAllocate(t *testing.T) {
	s, rules := testSettings(), testRules()
	for _, tc := range decideCases() {
		allocs := testing.AllocsPerRun(100, func() {
			_ = Decide(tc.claims, &tc.policy, rules, s, testNow)
		})
		if allocs != 0 {
			t.Errorf("%s: Decide allocates %v times per call, want 0", tc.name, allocs)
		}
	}
}

// BenchmarkParseMetadata is route metadata {required_acr: aal2, max_age: 300}
// as Envoy sends it (max_age a float64), parsed into a policy layer.
func BenchmarkParseMetadata(b *testing.B) {
	md := map[string]any{"required_acr": "aal2", "max_age": float64(300)}
	b.ReportAllocs()
	for b.Loop() {
		l, err := ParseMetadata(md, DefaultLevels)
		if err != nil || !l.MaxAge.Set {
			b.Fatal(err)
		}
	}
}

// BenchmarkResolve merges route metadata over a config route and the default.
func BenchmarkResolve(b *testing.B) {
	md, err := ParseMetadata(map[string]any{"required_acr": "aal2", "max_age": float64(300)}, DefaultLevels)
	if err != nil {
		b.Fatal(err)
	}
	layers := []Sourced{
		{Source: SourceRouteMetadata, Layer: md},
		{Source: SourceConfigRoute, Label: "payouts", Layer: Layer{Name: set("payouts"), MachineScopes: set([]string{"payouts:write"})}},
		{Source: SourceDefault, Layer: Layer{}},
	}
	b.Run("provenance=yes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, prov := Resolve(layers...)
			if !p.HasMaxAge || len(prov) != 4 {
				b.Fatal(p, prov)
			}
		}
	})
	// Merge, as Check resolves: the provenance is only for `check` and tests.
	b.Run("provenance=no", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if p := Merge(layers...); !p.HasMaxAge {
				b.Fatal(p)
			}
		}
	})
}

// BenchmarkMatchRoute finds the config route for a request among a few.
func BenchmarkMatchRoute(b *testing.B) {
	re, err := CompileRegex(`/api/users/[0-9]+/delete`)
	if err != nil {
		b.Fatal(err)
	}
	routes := []Route{
		{Name: "reports", Match: RouteMatch{PathPrefix: "/api/reports"}},
		{Name: "delete", Match: RouteMatch{PathRegex: re, Methods: []string{"POST"}}},
		{Name: "payouts", Match: RouteMatch{Hosts: []string{"app.example.com"}, PathPrefix: "/api/payout-destination", Methods: []string{"POST"}}},
	}
	r := Request{Host: "app.example.com", Method: "POST", Path: "/api/payout-destination?account=1"}
	b.ReportAllocs()
	for b.Loop() {
		rt, err := MatchRoute(routes, r)
		if err != nil || rt == nil || rt.Name != "payouts" {
			b.Fatal(rt, err)
		}
	}
}
