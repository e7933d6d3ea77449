package check

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

const rulesFileHeader = `# Generated from ../prometheusrule.yaml (its spec) by ` + "`go test ./k8s/check -run TestRulesFile -update`" + `;
# do not edit. A plain Prometheus rule file: promtool tests it (tests/alerts_test.yaml), and
# Prometheus without the Operator can load it as it is.
`

// TestRulesFile keeps k8s/monitoring/tests/stepup-authz.rules.yaml, the file
// promtool checks and unit-tests, equal to the shipped PrometheusRule's spec,
// decoded strictly into the Operator's type (go test -update rewrites it).
func TestRulesFile(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "monitoring", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(src)
	if err != nil {
		t.Fatal(err)
	}
	o := &Object{Kind: "PrometheusRule", JSON: js}
	for _, p := range Decode(o) {
		t.Errorf("prometheusrule.yaml: %s", p)
	}
	pr, ok := o.Typed.(*monitoringv1.PrometheusRule)
	if !ok {
		t.Fatalf("prometheusrule.yaml decoded as %T", o.Typed)
	}
	if len(pr.Spec.Groups) == 0 {
		t.Fatal("prometheusrule.yaml has no rule groups")
	}
	body, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(rulesFileHeader), body...)
	file := filepath.Join("..", "monitoring", "tests", "stepup-authz.rules.yaml")
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRulesFile -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from prometheusrule.yaml's spec; run go test -run TestRulesFile -update\n--- got\n%s--- want\n%s", file, got, want)
	}
}
