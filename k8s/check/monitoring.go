package check

import (
	"fmt"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// metricsPath is where the admin server exports Prometheus metrics.
const metricsPath = "/metrics"

// severities are the alert severities Alertmanager routes on.
var severities = []string{"critical", "warning", "info"}

// checkMonitoring checks the Prometheus Operator objects (k8s/monitoring)
// against the base they monitor: the ServiceMonitor must select a Service of
// stepup-authz by its admin port and scrape /metrics; every alert must carry
// a severity and the annotations the README's "Operating it" is linked from.
func (t *Tree) checkMonitoring() {
	base := t.server("base")
	for _, r := range t.Renders {
		for _, sm := range objects[*monitoringv1.ServiceMonitor](r) {
			t.checkServiceMonitor(r, sm, base)
		}
		for _, pr := range objects[*monitoringv1.PrometheusRule](r) {
			t.checkPrometheusRule(r, pr)
		}
	}
}

func (t *Tree) checkServiceMonitor(r *Render, sm *typed[*monitoringv1.ServiceMonitor], base *Render) {
	sel, err := metav1.LabelSelectorAsSelector(&sm.V.Spec.Selector)
	if err != nil {
		t.add(r, sm.Object, "spec.selector", "%v", err)
		return
	}
	if sel.Empty() {
		t.add(r, sm.Object, "spec.selector", "selects every Service in the namespace; select stepup-authz's (app.kubernetes.io/name: stepup-authz)")
	}
	if len(sm.V.Spec.Endpoints) == 0 {
		t.add(r, sm.Object, "spec.endpoints", "no endpoint: nothing is scraped")
	}
	var services []*corev1.Service
	if base != nil {
		for _, s := range objects[*corev1.Service](base) {
			if sel.Matches(labels.Set(s.V.Labels)) {
				services = append(services, s.V)
			}
		}
		if len(services) == 0 && !sel.Empty() {
			t.add(r, sm.Object, "spec.selector", "selects no Service of k8s/base (labels %v)", sm.V.Spec.Selector.MatchLabels)
		}
	}
	for i, ep := range sm.V.Spec.Endpoints {
		p := fmt.Sprintf("spec.endpoints[%d]", i)
		if ep.Port != adminPortName {
			t.add(r, sm.Object, p+".port", "%q, but metrics are on the Service port named %q", ep.Port, adminPortName)
		}
		if ep.Path != "" && ep.Path != metricsPath {
			t.add(r, sm.Object, p+".path", "%q, but the admin server exports metrics at %s", ep.Path, metricsPath)
		}
		scraped := 0
		for _, s := range services {
			if slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == ep.Port }) {
				scraped++
			}
		}
		if scraped > 1 {
			t.add(r, sm.Object, p+".port", "%d selected Services have this port: every pod would be scraped %d times", scraped, scraped)
		}
	}
}

func (t *Tree) checkPrometheusRule(r *Render, pr *typed[*monitoringv1.PrometheusRule]) {
	for gi, g := range pr.V.Spec.Groups {
		for ri, rule := range g.Rules {
			p := fmt.Sprintf("spec.groups[%d].rules[%d]", gi, ri)
			if rule.Alert == "" {
				continue
			}
			if s := rule.Labels["severity"]; !slices.Contains(severities, s) {
				t.add(r, pr.Object, p+".labels.severity", "%q is not one of %v (alert %s)", s, severities, rule.Alert)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if rule.Annotations[a] == "" {
					t.add(r, pr.Object, p+".annotations."+a, "missing (alert %s): operators reach README's \"Operating it\" from it", rule.Alert)
				}
			}
		}
	}
}
