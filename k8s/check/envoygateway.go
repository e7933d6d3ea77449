package check

import (
	"fmt"
	"slices"
	"strings"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/stepup-authz/stepup-authz/policy"
)

const envoyGatewayFamily = "overlays/envoy-gateway"

func (t *Tree) checkEnvoyGateway() {
	server := t.server(envoyGatewayFamily)
	cfg := t.servers[envoyGatewayFamily]
	for _, r := range t.family(envoyGatewayFamily) {
		t.checkClientTrafficPolicies(r)
		for _, sp := range objects[*egv1a1.SecurityPolicy](r) {
			t.checkSecurityPolicy(r, sp, server)
			if ea := sp.V.Spec.ExtAuth; ea != nil && cfg != nil {
				ext := map[string]string{}
				for i, ce := range ea.ContextExtensions {
					cp := fmt.Sprintf("spec.extAuth.contextExtensions[%d]", i)
					if !slices.Contains(policy.Fields, ce.Name) {
						t.add(r, sp.Object, cp+".name", "%q: stepup-authz ignores this key (it reads %s)", ce.Name, strings.Join(policy.Fields, ", "))
					}
					if ce.Type == egv1a1.ContextExtensionValueTypeValue && ce.Value != nil {
						ext[ce.Name] = *ce.Value
					}
				}
				if _, err := policy.ParseContextExtensions(ext, cfg.ACRLevels); err != nil {
					t.add(r, sp.Object, "spec.extAuth.contextExtensions", "%v", err)
				}
			}
		}
		for _, hr := range objects[*gwv1.HTTPRoute](r) {
			for i, pr := range hr.V.Spec.ParentRefs {
				if (pr.Kind == nil || *pr.Kind == "Gateway") && (pr.Namespace == nil || string(*pr.Namespace) == hr.Namespace) {
					if !has[*gwv1.Gateway](r, hr.Namespace, string(pr.Name)) {
						t.add(r, hr.Object, fmt.Sprintf("spec.parentRefs[%d].name", i), "no Gateway %q here", pr.Name)
					}
				}
			}
		}
	}
}

func (t *Tree) checkSecurityPolicy(r *Render, sp *typed[*egv1a1.SecurityPolicy], server *Render) {
	ea := sp.V.Spec.ExtAuth
	if ea == nil {
		t.add(r, sp.Object, "spec.extAuth", "missing: this SecurityPolicy does not call stepup-authz")
		return
	}
	if ea.FailOpen != nil && *ea.FailOpen {
		t.add(r, sp.Object, "spec.extAuth.failOpen", "true: when stepup-authz cannot answer, every request passes without step-up")
	}
	if ea.Timeout == nil {
		t.add(r, sp.Object, "spec.extAuth.timeout", "unset: Envoy Gateway's default is 10s")
	} else if d, err := time.ParseDuration(string(*ea.Timeout)); err != nil {
		t.add(r, sp.Object, "spec.extAuth.timeout", "%v", err)
	} else if d > maxProviderTimeout {
		t.add(r, sp.Object, "spec.extAuth.timeout", "%s: longer than %s holds requests behind a slow authorizer", d, maxProviderTimeout)
	}
	if ea.GRPC == nil {
		t.add(r, sp.Object, "spec.extAuth.grpc", "missing: stepup-authz is a gRPC ext_authz server (context extensions are gRPC only)")
	} else {
		refs := ea.GRPC.BackendRefs
		//lint:ignore SA1019 Envoy Gateway still honours the deprecated single backendRef, so a policy using it is checked too.
		if ref := ea.GRPC.BackendRef; ref != nil {
			refs = append(refs, egv1a1.BackendRef{BackendObjectReference: *ref})
		}
		if len(refs) == 0 {
			t.add(r, sp.Object, "spec.extAuth.grpc.backendRefs", "empty")
		}
		for i, ref := range refs {
			t.checkBackendRef(r, sp, fmt.Sprintf("spec.extAuth.grpc.backendRefs[%d]", i), ref.BackendObjectReference, server)
		}
	}

	for i, tr := range sp.V.Spec.GetTargetRefs() {
		tp := fmt.Sprintf("spec.targetRefs[%d]", i)
		if tr.Group != gwv1.GroupName || tr.Kind != "HTTPRoute" {
			continue
		}
		var route *gwv1.HTTPRoute
		for _, hr := range objects[*gwv1.HTTPRoute](r) {
			if hr.Namespace == sp.Namespace && hr.Name == string(tr.Name) {
				route = hr.V
			}
		}
		if route == nil {
			t.add(r, sp.Object, tp+".name", "no HTTPRoute %q in namespace %s here (targetRefs are local to the policy's namespace)", tr.Name, sp.Namespace)
			continue
		}
		if tr.SectionName == nil {
			continue
		}
		var rules []string
		for _, rule := range route.Spec.Rules {
			if rule.Name != nil {
				rules = append(rules, string(*rule.Name))
			}
		}
		if !slices.Contains(rules, string(*tr.SectionName)) {
			t.add(r, sp.Object, tp+".sectionName", "%q is no rule of HTTPRoute %s (its named rules: %s)", *tr.SectionName, tr.Name, strings.Join(rules, ", "))
		}
	}
}

// checkBackendRef resolves an extAuth backendRef to the stepup-authz Service
// the Envoy Gateway overlay deploys, its gRPC port, and the ReferenceGrant a
// cross-namespace reference needs.
func (t *Tree) checkBackendRef(r *Render, sp *typed[*egv1a1.SecurityPolicy], bp string, ref gwv1.BackendObjectReference, server *Render) {
	if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") {
		t.add(r, sp.Object, bp, "not a Service: stepup-authz is deployed as one")
		return
	}
	ns := sp.Namespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	if server == nil {
		return
	}
	var svc *corev1.Service
	var names []string
	for _, s := range objects[*corev1.Service](server) {
		names = append(names, s.Namespace+"/"+s.Name)
		if s.Namespace == ns && s.Name == string(ref.Name) {
			svc = s.V
		}
	}
	if svc == nil {
		t.add(r, sp.Object, bp, "Service %s/%s is not deployed by %s (%s)", ns, ref.Name, server.Dir, strings.Join(names, ", "))
		return
	}
	grpcPort := int32(0)
	for _, p := range svc.Spec.Ports {
		if p.Name == grpcPortName {
			grpcPort = p.Port
		}
	}
	if ref.Port == nil || *ref.Port != grpcPort {
		got := "unset"
		if ref.Port != nil {
			got = fmt.Sprint(*ref.Port)
		}
		t.add(r, sp.Object, bp+".port", "%s, but Service %s/%s serves ext_authz on %d", got, ns, ref.Name, grpcPort)
	}
	if ns == sp.Namespace {
		return
	}
	for _, g := range objects[*gwv1beta1.ReferenceGrant](server) {
		if g.Namespace != ns {
			continue
		}
		from := slices.ContainsFunc(g.V.Spec.From, func(f gwv1beta1.ReferenceGrantFrom) bool {
			return f.Group == egv1a1.GroupName && f.Kind == egv1a1.KindSecurityPolicy && string(f.Namespace) == sp.Namespace
		})
		to := slices.ContainsFunc(g.V.Spec.To, func(to gwv1beta1.ReferenceGrantTo) bool {
			return to.Group == "" && to.Kind == "Service" && (to.Name == nil || string(*to.Name) == string(ref.Name))
		})
		if from && to {
			return
		}
	}
	t.add(r, sp.Object, bp+".namespace", "%s: no ReferenceGrant in %s lets SecurityPolicies from %s reference Service %s, so Envoy Gateway refuses the reference", ns, ns, sp.Namespace, ref.Name)
}
