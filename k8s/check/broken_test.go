package check

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current findings")

// mutation is one broken copy of the shipped tree: every occurrence of old in
// file (relative to k8s/) becomes new.
type mutation struct {
	name, file, old, new string
}

var mutations = []mutation{
	// Strict decoding into the real API types.
	{"deployment-unknown-field", "base/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
	{"deployment-wrong-type", "base/deployment.yaml", "containerPort: 9191", "containerPort: nine-one-nine-one"},
	{"replicas-pinned-under-autoscaler", "base/deployment.yaml", "  revisionHistoryLimit: 5\n", "  revisionHistoryLimit: 5\n  replicas: 3\n"},
	{"autoscaler-minimum-one", "base/horizontalpodautoscaler.yaml", "minReplicas: 2", "minReplicas: 1"},
	{"authorizationpolicy-unknown-field", "overlays/istio/app/authorizationpolicy.yaml", "  selector:\n    matchLabels:\n      app: payments-api", "  selectr:\n    matchLabels:\n      app: payments-api"},
	{"securitypolicy-unknown-field", "overlays/envoy-gateway/app/securitypolicy.yaml", "    failOpen: false\n    statusOnError: 503 # Envoy", "    failopen: false\n    statusOnError: 503 # Envoy"},
	{"kustomize-patch-matches-nothing", "overlays/istio/networkpolicy.yaml", "  name: stepup-authz\nspec:", "  name: stepup-authz-ingress\nspec:"},

	// Security context, resources, probes, spreading, scraping.
	{"privilege-escalation-allowed", "base/deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"},
	{"capabilities-not-dropped", "base/deployment.yaml", `drop: ["ALL"]`, `drop: ["NET_RAW"]`},
	{"runs-as-root", "base/deployment.yaml", "        runAsNonRoot: true\n        runAsUser: 65532", "        runAsNonRoot: false\n        runAsUser: 0"},
	{"seccomp-unconfined", "base/deployment.yaml", "type: RuntimeDefault", "type: Unconfined"},
	{"readiness-probe-wrong-path", "base/deployment.yaml", "path: /readyz", "path: /ready"},
	{"liveness-probe-on-grpc-port", "base/deployment.yaml", "path: /healthz\n            port: admin", "path: /healthz\n            port: grpc"},
	{"no-cpu-request", "base/deployment.yaml", "            cpu: 250m\n", ""},
	{"no-zone-spread", "base/deployment.yaml", "topologyKey: topology.kubernetes.io/zone", "topologyKey: example.com/rack"},
	{"prometheus-port-wrong", "base/deployment.yaml", `prometheus.io/port: "9192"`, `prometheus.io/port: "9191"`},
	{"config-mounted-with-subpath", "base/deployment.yaml", "          readOnly: true\n", "          readOnly: true\n          subPath: config.yaml\n"},
	{"image-latest", "base/kustomization.yaml", "newTag: 0.1.0", "newTag: latest"},

	// Ports, listen addresses, selectors.
	{"service-target-port-wrong", "base/service.yaml", "targetPort: grpc", "targetPort: 9999"},
	{"config-listen-port-mismatch", "base/config.yaml", `grpc: ":9191"`, `grpc: ":9000"`},
	{"config-listen-loopback", "overlays/istio/config.yaml", `admin: ":9192"`, `admin: "127.0.0.1:9192"`},
	{"config-invalid", "overlays/istio/config.yaml", "      required_acr: aal2\n      max_age: 5m\n      machine_scopes", "      required_acr: aal9\n      max_age: 5m\n      machine_scopes"},
	{"pdb-selects-nothing", "base/poddisruptionbudget.yaml", "      app.kubernetes.io/name: stepup-authz", "      app.kubernetes.io/name: stepup"},
	{"hpa-targets-another-deployment", "base/horizontalpodautoscaler.yaml", "    name: stepup-authz\n  minReplicas", "    name: stepup\n  minReplicas"},
	{"networkpolicy-open-to-all", "base/networkpolicy.yaml", "    from:\n    - namespaceSelector:\n        matchLabels:\n          stepup-authz.io/client: \"true\"\n", ""},

	// Istio: provider, CUSTOM policies, EnvoyFilter patches.
	{"authorizationpolicy-not-custom", "overlays/istio/app/authorizationpolicy.yaml", "action: CUSTOM", "action: ALLOW"},
	{"authorizationpolicy-unknown-provider", "overlays/istio/app/authorizationpolicy.yaml", "    name: stepup-authz\n  rules", "    name: stepup-authx\n  rules"},
	{"mesh-provider-fail-open", "overlays/istio/mesh-config.yaml", "failOpen: false", "failOpen: true"},
	{"mesh-provider-wrong-port", "overlays/istio/istiod-values.yaml", "port: 9191", "port: 9192"},
	{"mesh-provider-unknown-field", "overlays/istio/istiod-values.yaml", "failOpen: false", "failopen: false"},
	{"mesh-provider-no-timeout", "overlays/istio/mesh-config.yaml", "        timeout: 0.5s\n", ""},
	{"envoyfilter-unknown-envoy-field", "overlays/istio/gateway/envoyfilter.yaml", "typed_per_filter_config:", "typed_per_filter_configs:"},
	{"envoyfilter-wrong-filter-key", "overlays/istio/gateway/envoyfilter.yaml", "          envoy.filters.http.ext_authz:\n", "          envoy.filters.http.extauthz:\n"},
	{"envoyfilter-empty-per-route", "overlays/istio/gateway/envoyfilter.yaml", "            check_settings:\n              context_extensions:\n                required_acr: aal2\n                max_age: \"300\"\n", ""},
	{"envoyfilter-context-extension-unknown-acr", "overlays/istio/gateway/envoyfilter.yaml", "required_acr: aal2", "required_acr: aal9"},
	{"envoyfilter-context-extension-misspelled", "overlays/istio/gateway/envoyfilter.yaml", "required_acr: aal2", "requried_acr: aal2"},
	{"envoyfilter-unknown-route", "overlays/istio/gateway/virtualservice.yaml", "- name: payout-destination", "- name: payout"},
	{"envoyfilter-gateway-not-custom", "overlays/istio/gateway/authorizationpolicy.yaml", "action: CUSTOM", "action: DENY"},
	{"route-metadata-not-forwarded", "overlays/istio/gateway-route-metadata/envoyfilter.yaml", "route_metadata_context_namespaces: [stepup]", "route_metadata_context_namespaces: [other]"},
	{"route-metadata-misspelled-key", "overlays/istio/gateway-route-metadata/envoyfilter.yaml", "              required_acr: aal2", "              requried_acr: aal2"},
	{"route-metadata-ext-authz-unknown-field", "overlays/istio/gateway-route-metadata/envoyfilter.yaml", "route_metadata_context_namespaces:", "route_metadata_context_namespace:"},

	// Envoy Gateway: backendRef, targetRefs, context extensions, grants.
	{"securitypolicy-wrong-port", "overlays/envoy-gateway/app/securitypolicy.yaml", "        port: 9191\n    # Envoy", "        port: 9192\n    # Envoy"},
	{"securitypolicy-wrong-service", "overlays/envoy-gateway/app/securitypolicy.yaml", "      - name: stepup-authz\n        namespace: stepup\n        port: 9191\n    timeout: 500ms\n    failOpen: false\n    statusOnError: 503\n", "      - name: stepup\n        namespace: stepup\n        port: 9191\n    timeout: 500ms\n    failOpen: false\n    statusOnError: 503\n"},
	{"securitypolicy-unknown-section", "overlays/envoy-gateway/app/securitypolicy.yaml", "sectionName: payout-destination", "sectionName: payout"},
	{"securitypolicy-fail-open", "overlays/envoy-gateway/app/securitypolicy.yaml", "    failOpen: false\n    statusOnError: 503 # Envoy", "    failOpen: true\n    statusOnError: 503 # Envoy"},
	{"securitypolicy-context-extension-unknown-acr", "overlays/envoy-gateway/app/securitypolicy.yaml", "value: aal2", "value: aal9"},
	{"securitypolicy-context-extension-misspelled", "overlays/envoy-gateway/app/securitypolicy.yaml", "- name: max_age", "- name: maxage"},
	// Certificate-bound tokens: the client certificate in x-forwarded-client-cert.
	{"istio-gateway-xfcc-forward-only", "overlays/istio/mesh-config.yaml", "forwardClientCertDetails: SANITIZE_SET", "forwardClientCertDetails: ALWAYS_FORWARD_ONLY"},
	{"istio-gateway-xfcc-sanitize", "overlays/istio/istiod-values.yaml", "forwardClientCertDetails: SANITIZE_SET", "forwardClientCertDetails: SANITIZE"},
	{"istio-mutual-gateway-config-reads-peer", "overlays/istio/config.yaml", "certificate_from: xfcc", "certificate_from: peer"},
	{"clienttrafficpolicy-xfcc-forward-only", "overlays/envoy-gateway/app/clienttrafficpolicy.yaml", "mode: SanitizeSet", "mode: ForwardOnly"},
	{"clienttrafficpolicy-xfcc-without-cert", "overlays/envoy-gateway/app/clienttrafficpolicy.yaml", "certDetailsToAdd: [Cert]", "certDetailsToAdd: [Subject, URI]"},
	{"clienttrafficpolicy-client-certificates-config-reads-peer", "overlays/envoy-gateway/config.yaml", "certificate_from: xfcc", "certificate_from: peer"},
	{"clienttrafficpolicy-unknown-field", "overlays/envoy-gateway/app/clienttrafficpolicy.yaml", "certDetailsToAdd:", "certDetailToAdd:"},
	{"referencegrant-wrong-namespace", "overlays/envoy-gateway/referencegrant.yaml", "namespace: payments", "namespace: shop"},

	// Monitoring: ServiceMonitor and PrometheusRule decoded into the Prometheus Operator's types.
	{"servicemonitor-wrong-port", "monitoring/servicemonitor.yaml", "  - port: admin", "  - port: grpc"},
	{"servicemonitor-unknown-field", "monitoring/servicemonitor.yaml", "honorLabels: false", "honourLabels: false"},
	{"servicemonitor-selects-nothing", "monitoring/servicemonitor.yaml", "    matchLabels:\n      app.kubernetes.io/name: stepup-authz", "    matchLabels:\n      app.kubernetes.io/name: stepup"},
	{"prometheusrule-unknown-field", "monitoring/prometheusrule.yaml", "      for: 10m", "      fro: 10m"},
	{"prometheusrule-alert-without-severity", "monitoring/prometheusrule.yaml", "        severity: critical", "        priority: critical"},

	// Plain Envoy's cluster.
	{"envoy-cluster-not-headless", "envoy/stepup-authz-cluster.yaml", "stepup-authz-headless.stepup", "stepup-authz.stepup"},
	{"envoy-cluster-without-http2", "envoy/stepup-authz-cluster.yaml", "http2_protocol_options: {}", "http_protocol_options: {}"},
}

// TestBrokenCopies breaks one thing at a time in a copy of the shipped tree
// and compares the findings with testdata/<case>.golden (go test -update
// rewrites them). Every case must produce at least one finding, and each
// finding names the field.
func TestBrokenCopies(t *testing.T) {
	t.Parallel()
	shipped := readTree(t, "..")
	seen := map[string]bool{}
	for _, m := range mutations {
		if seen[m.name] {
			t.Fatalf("duplicate case name %q", m.name)
		}
		seen[m.name] = true
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			src, ok := shipped[m.file]
			if !ok {
				t.Fatalf("no file %s in k8s/", m.file)
			}
			if !strings.Contains(src, m.old) {
				t.Fatalf("%s no longer contains %q: update the case", m.file, m.old)
			}
			fsys := filesys.MakeFsInMemory()
			for name, data := range shipped {
				if name == m.file {
					data = strings.ReplaceAll(data, m.old, m.new)
				}
				if err := fsys.WriteFile("/k8s/"+name, []byte(data)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Check(fsys, "/k8s")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				t.Fatal("no finding: the broken copy passes")
			}
			text := strings.Join(got, "\n") + "\n"
			golden := filepath.Join("testdata", m.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if text != string(want) {
				t.Errorf("findings differ from %s:\n--- got\n%s--- want\n%s", golden, text, want)
			}
		})
	}
}

// readTree reads every file under root except the check module.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel == "check" {
				return fs.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
