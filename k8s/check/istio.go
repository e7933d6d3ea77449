package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The Istio family's files that register stepup-authz as an extension
// provider. They are not kustomize resources: istioctl and Helm read them.
const (
	istioFamily        = "overlays/istio"
	istioOperatorFile  = "mesh-config.yaml"
	istiodValuesFile   = "istiod-values.yaml"
	maxProviderTimeout = time.Second
)

func (t *Tree) checkIstio() {
	renders := t.family(istioFamily)
	if len(renders) == 0 {
		return
	}
	server := t.server(istioFamily)
	providers := t.meshProviders(server)

	for _, r := range renders {
		t.checkIstioMutualGateways(r)
		for _, ap := range objects[*istiosecv1.AuthorizationPolicy](r) {
			spec := &ap.V.Spec
			if spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
				t.add(r, ap.Object, "spec.action", "%s: stepup-authz is called only by action CUSTOM", spec.GetAction())
				continue
			}
			name := spec.GetProvider().GetName()
			if _, ok := providers[name]; !ok {
				t.add(r, ap.Object, "spec.provider.name", "%q is not an extension provider in %s (%s)", name, path.Join(istioFamily, istioOperatorFile), strings.Join(sortedKeys(providers), ", "))
			}
			if len(spec.GetSelector().GetMatchLabels()) == 0 && len(spec.GetTargetRefs()) == 0 && spec.GetTargetRef() == nil {
				t.add(r, ap.Object, "spec.selector", "empty: applies to every workload in namespace %s", ap.Namespace)
			}
		}
		for _, ef := range objects[*istionetv1alpha3.EnvoyFilter](r) {
			t.checkEnvoyFilter(r, ef)
		}
	}
}

// meshProviders reads the IstioOperator and the istiod Helm values, checks
// that they register the same providers, and checks each ext_authz gRPC
// provider against the Service the Istio overlay deploys.
func (t *Tree) meshProviders(server *Render) map[string]*meshv1alpha1.MeshConfig_ExtensionProvider {
	var configs []*meshv1alpha1.MeshConfig
	var files []string
	for _, name := range []string{istioOperatorFile, istiodValuesFile} {
		file := path.Join(istioFamily, name)
		mc := t.readMeshConfig(file, name == istioOperatorFile)
		if mc != nil {
			configs = append(configs, mc)
			files = append(files, file)
		}
	}
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	if len(configs) == 0 {
		return providers
	}
	for i := 1; i < len(configs); i++ {
		if !proto.Equal(configs[0], configs[i]) {
			t.addFile(files[i], "meshConfig", "differs from %s: Helm and istioctl users would get different providers", files[0])
		}
	}
	for f, mc := range configs {
		prefix := "meshConfig"
		if strings.HasSuffix(files[f], istioOperatorFile) {
			prefix = "spec.meshConfig"
		}
		t.checkIstioGatewayXFCC(files[f], prefix, mc)
		for i, p := range mc.GetExtensionProviders() {
			providers[p.GetName()] = p
			if g := p.GetEnvoyExtAuthzGrpc(); g != nil {
				t.checkProvider(files[f], fmt.Sprintf("%s.extensionProviders[%d].envoyExtAuthzGrpc", prefix, i), g, server)
			}
		}
	}
	return providers
}

func (t *Tree) readMeshConfig(file string, operator bool) *meshv1alpha1.MeshConfig {
	src, err := t.fsys.ReadFile(path.Join(t.root, file))
	if err != nil {
		t.addFile(file, "", "missing: the extension provider must be registered in meshConfig (%v)", err)
		return nil
	}
	js, err := yaml.YAMLToJSONStrict(src)
	if err != nil {
		t.addFile(file, "", "%v", err)
		return nil
	}
	var raw json.RawMessage
	prefix := "meshConfig"
	if operator {
		// Only the fields this file uses; anything else is a typo here.
		var iop struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Spec       struct {
				MeshConfig json.RawMessage `json:"meshConfig"`
			} `json:"spec"`
		}
		if err := strictJSON(js, &iop); err != nil {
			t.addFile(file, "", "%v", err)
			return nil
		}
		if iop.APIVersion != "install.istio.io/v1alpha1" || iop.Kind != "IstioOperator" {
			t.addFile(file, "kind", "%s %s, want install.istio.io/v1alpha1 IstioOperator", iop.APIVersion, iop.Kind)
		}
		raw, prefix = iop.Spec.MeshConfig, "spec.meshConfig"
	} else {
		var values struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		}
		if err := strictJSON(js, &values); err != nil {
			t.addFile(file, "", "%v", err)
			return nil
		}
		raw = values.MeshConfig
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		t.addFile(file, prefix, "missing")
		return nil
	}
	mc := &meshv1alpha1.MeshConfig{}
	if ps := ProtoJSON(mc, v, prefix); len(ps) > 0 {
		for _, p := range ps {
			t.addFile(file, p.Path, "%s", p.Message)
		}
		return nil
	}
	return mc
}

func strictJSON(js []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func (t *Tree) checkProvider(file, pp string, g *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider, server *Render) {
	if g.GetFailOpen() {
		t.addFile(file, pp+".failOpen", "true: when stepup-authz cannot answer, every request passes without step-up")
	}
	switch d := g.GetTimeout(); {
	case d == nil:
		t.addFile(file, pp+".timeout", "unset: Istio's default is 600s, so a hung authorizer would hold every request for ten minutes")
	case d.AsDuration() > maxProviderTimeout:
		t.addFile(file, pp+".timeout", "%s: longer than %s holds requests behind a slow authorizer", d.AsDuration(), maxProviderTimeout)
	}
	if server == nil {
		return
	}
	// service is [<namespace>/]<hostname>; the hostname names a Service.
	host := g.GetService()
	if i := strings.Index(host, "/"); i >= 0 {
		host = host[i+1:]
	}
	var svcs []string
	for _, s := range objects[*corev1.Service](server) {
		fqdn := s.Name + "." + s.Namespace + ".svc.cluster.local"
		svcs = append(svcs, fqdn)
		if host != fqdn && host != s.Name+"."+s.Namespace {
			continue
		}
		for _, p := range s.V.Spec.Ports {
			if p.Name == grpcPortName {
				if uint32(p.Port) != g.GetPort() {
					t.addFile(file, pp+".port", "%d, but Service %s serves ext_authz on %d", g.GetPort(), fqdn, p.Port)
				}
				return
			}
		}
		t.addFile(file, pp+".service", "Service %s has no %q port", fqdn, grpcPortName)
		return
	}
	t.addFile(file, pp+".service", "%q is no Service deployed by %s (%s)", g.GetService(), server.Dir, strings.Join(svcs, ", "))
}

// virtualServiceRoutes returns the Envoy route names Istio generates from
// the VirtualServices in r: http[].name (ENVOY.md §6).
func virtualServiceRoutes(r *Render) map[string]bool {
	names := map[string]bool{}
	for _, vs := range objects[*istionetv1.VirtualService](r) {
		for _, h := range vs.V.Spec.GetHttp() {
			if h.GetName() != "" {
				names[h.GetName()] = true
			}
		}
	}
	return names
}

// customSelectors returns the workload selectors of r's CUSTOM policies.
func customSelectors(r *Render) []map[string]string {
	var out []map[string]string
	for _, ap := range objects[*istiosecv1.AuthorizationPolicy](r) {
		if ap.V.Spec.GetAction() == securityv1beta1.AuthorizationPolicy_CUSTOM {
			out = append(out, maps.Clone(ap.V.Spec.GetSelector().GetMatchLabels()))
		}
	}
	return out
}
