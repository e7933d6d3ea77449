package check

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/stepup-authz/stepup-authz/envoy"
)

// EnvoyClusterFile is the cluster a plain Envoy in the cluster uses to reach
// stepup-authz (the README's Deploy section quotes it).
const EnvoyClusterFile = "envoy/stepup-authz-cluster.yaml"

// checkEnvoyCluster puts the cluster into the shipped bootstrap in place of
// its STATIC stepup_authz cluster, validates the result like `stepup-authz
// validate --envoy`, and checks that the address is the headless Service the
// base deploys, in the namespace the overlays use.
func (t *Tree) checkEnvoyCluster() {
	src, err := t.fsys.ReadFile(path.Join(t.root, EnvoyClusterFile))
	if err != nil {
		t.addFile(EnvoyClusterFile, "", "%v", err)
		return
	}
	bootstrap, err := SpliceCluster(envoy.Bootstrap, src)
	if err != nil {
		t.addFile(EnvoyClusterFile, "", "%v", err)
		return
	}
	b, problems := envoy.ValidateBootstrap(bootstrap, envoy.Options{})
	for _, p := range problems {
		t.addFile(EnvoyClusterFile, "(in envoy/envoy.yaml) "+p.Path, "%s", p.Message)
	}
	if b == nil {
		return
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != "stepup_authz" {
			continue
		}
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		t.checkClusterAddress(sa.GetAddress(), sa.GetPortValue())
	}
}

func (t *Tree) checkClusterAddress(host string, port uint32) {
	const field = "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address"
	name, rest, _ := strings.Cut(host, ".")
	ns, _, _ := strings.Cut(rest, ".")
	if !strings.HasSuffix(host, "."+ns+".svc.cluster.local") {
		t.addFile(EnvoyClusterFile, field+".address", "%q is not a Service name (<service>.<namespace>.svc.cluster.local)", host)
		return
	}
	base := t.server("base")
	if base == nil {
		return
	}
	var svc *corev1.Service
	for _, s := range objects[*corev1.Service](base) {
		if s.Name == name {
			svc = s.V
		}
	}
	if svc == nil {
		t.addFile(EnvoyClusterFile, field+".address", "%q: k8s/base deploys no Service %q", host, name)
		return
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.addFile(EnvoyClusterFile, field+".address", "Service %q is not headless: STRICT_DNS would see one ClusterIP and pin each connection to one replica", name)
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == grpcPortName && uint32(p.Port) != port {
			t.addFile(EnvoyClusterFile, field+".port_value", "%d, but Service %s serves ext_authz on %d", port, name, p.Port)
		}
	}
	for _, fam := range []string{istioFamily, envoyGatewayFamily} {
		if r := t.server(fam); r != nil {
			for _, s := range objects[*corev1.Service](r) {
				if s.Name == name && s.Namespace != ns {
					t.addFile(EnvoyClusterFile, field+".address", "namespace %q, but %s deploys stepup-authz in %q", ns, fam, s.Namespace)
				}
			}
		}
	}
}

// SpliceCluster returns bootstrap (YAML) with its cluster of the same name as
// the one in clusterYAML (a one-element list) replaced by it, as JSON.
func SpliceCluster(bootstrap, clusterYAML []byte) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(bootstrap, &doc); err != nil {
		return nil, err
	}
	var list []map[string]any
	if err := yaml.UnmarshalStrict(clusterYAML, &list); err != nil {
		return nil, err
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("want a list of one cluster, got %d", len(list))
	}
	sr, _ := doc["static_resources"].(map[string]any)
	clusters, _ := sr["clusters"].([]any)
	for i, c := range clusters {
		if m, _ := c.(map[string]any); m["name"] == list[0]["name"] {
			clusters[i] = list[0]
			return json.Marshal(doc)
		}
	}
	return nil, fmt.Errorf("the bootstrap has no cluster %v to replace", list[0]["name"])
}
