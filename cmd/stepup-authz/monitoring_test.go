package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// The shipped monitoring (k8s/monitoring) may only query series the server
// exports: a renamed metric must not leave a dashboard panel or an alert
// silently empty.
const monitoringDir = "../../k8s/monitoring"

// exportedSeries runs the real app (the registry serve uses) through a
// Check and its first key fetch, and returns every series name /metrics
// shows, histograms as their _bucket, _sum and _count series.
func exportedSeries(t *testing.T) map[string]bool {
	t.Helper()
	idp, err := devidp.New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	defer hs.Close()
	idp.Issuer = hs.URL
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := strings.NewReplacer("{{ACR}}", "aal2", "{{GRPC}}", "127.0.0.1:0", "{{ADMIN}}", "127.0.0.1:0", "{{ISSUER}}", hs.URL).Replace(serveConfig)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(path, nil, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.keys.Close()
	defer a.grpcLis.Close()
	defer a.adminLis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.srv.Engine().WaitFirstFetch(ctx)
	tok, err := idp.UserToken("user-1", "aal2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.srv.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/pay", Host: "app", Headers: map[string]string{"authorization": "Bearer " + tok}},
	}}}); err != nil {
		t.Fatal(err)
	}
	a.reload(ctx, []byte("not: [a config")) // a refused reload exports its series too

	families, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range families {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[f.GetName()+s] = true
			}
		case dto.MetricType_SUMMARY:
			out[f.GetName()+"_sum"], out[f.GetName()+"_count"] = true, true
			out[f.GetName()] = true
		default:
			out[f.GetName()] = true
		}
	}
	return out
}

// monitoringQueries returns every PromQL expression shipped: the dashboards'
// targets and the alerts' expressions, keyed by where they are.
func monitoringQueries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	dashboards, err := filepath.Glob(filepath.Join(monitoringDir, "dashboards", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards in %s/dashboards (%v)", monitoringDir, err)
	}
	for _, file := range dashboards {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range d.Panels {
			for i, tg := range p.Targets {
				out[fmt.Sprintf("%s: panel %q target %d", filepath.Base(file), p.Title, i)] = tg.Expr
			}
		}
		for _, v := range d.Templating.List {
			if q, ok := v.Query.(map[string]any); ok {
				out[fmt.Sprintf("%s: variable %s", filepath.Base(file), v.Name)] = fmt.Sprint(q["query"])
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(monitoringDir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				}
			}
		}
	}
	if err := yaml.Unmarshal(data, &pr); err != nil {
		t.Fatal(err)
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			out["prometheusrule.yaml: "+r.Alert+r.Record] = r.Expr
		}
	}
	return out
}

// seriesName finds the series names a query refers to: every identifier
// with one of the server's metric prefixes (Go runtime, process, ours).
var seriesName = regexp.MustCompile(`\b(?:stepup|process|go)_[a-zA-Z0-9_]+\b`)

func TestMonitoringQueriesUseExportedSeries(t *testing.T) {
	exported := exportedSeries(t)
	queries := monitoringQueries(t)
	if len(queries) < 10 {
		t.Fatalf("only %d queries found in %s", len(queries), monitoringDir)
	}
	used := map[string]bool{}
	for where, q := range queries {
		names := seriesName.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no series of the server", where, q)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s: %s is not exported by the server", where, n)
			}
		}
	}
	// What the issue asks the dashboard and alerts to show.
	for _, n := range []string{
		"stepup_decisions_total", "stepup_check_duration_seconds_bucket", "stepup_token_cache_requests_total",
		"stepup_jwks_keys_age_seconds", "stepup_jwks_last_success_timestamp_seconds", "stepup_step_up_loop_suspected_total",
		"stepup_config_last_reload_successful", "stepup_checks_in_flight", "stepup_config_generation",
	} {
		if !used[n] {
			t.Errorf("no dashboard panel or alert uses %s", n)
		}
	}
}

// TestDashboardQueriesParse hands every dashboard and alert query, with
// Grafana's variables filled in, to promtool as recording rules: a query
// Prometheus cannot parse fails here rather than as an empty panel. .ci/run
// installs promtool and sets STEPUP_REQUIRE_PROMTOOL=1.
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("STEPUP_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not found, and STEPUP_REQUIRE_PROMTOOL is set")
		}
		t.Skip("promtool not on PATH (Debian package prometheus); .ci/run installs it")
	}
	fill := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*")
	var rules []map[string]string
	keys := make([]string, 0)
	qs := monitoringQueries(t)
	for k := range qs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		q := qs[k]
		if strings.HasPrefix(q, "label_values(") {
			continue // a Grafana function, not PromQL; its series is checked above
		}
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": fill.Replace(q)})
	}
	body, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, body)
	}
}
