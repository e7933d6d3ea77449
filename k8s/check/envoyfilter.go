package check

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/types/known/anypb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"

	"github.com/stepup-authz/stepup-authz/policy"

	// Links in every Envoy extension the shipped bootstraps may use, so the
	// "@type" of a typed_config resolves.
	_ "github.com/stepup-authz/stepup-authz/envoy"
)

// istioExtAuthzFilter is the name Istio gives the ext_authz filter it
// generates for a CUSTOM policy (pilot/pkg/security/authz/builder). Per-route
// config is looked up by exactly this name (Envoy >= 1.29).
const istioExtAuthzFilter = "envoy.filters.http.ext_authz"

// patchTarget is the Envoy type an EnvoyFilter patch's value is, by applyTo.
func patchTarget(a networkingv1alpha3.EnvoyFilter_ApplyTo) proto.Message {
	switch a {
	case networkingv1alpha3.EnvoyFilter_HTTP_ROUTE:
		return &routev3.Route{}
	case networkingv1alpha3.EnvoyFilter_VIRTUAL_HOST:
		return &routev3.VirtualHost{}
	case networkingv1alpha3.EnvoyFilter_ROUTE_CONFIGURATION:
		return &routev3.RouteConfiguration{}
	case networkingv1alpha3.EnvoyFilter_HTTP_FILTER:
		return &hcmv3.HttpFilter{}
	case networkingv1alpha3.EnvoyFilter_NETWORK_FILTER:
		return &listenerv3.Filter{}
	case networkingv1alpha3.EnvoyFilter_FILTER_CHAIN:
		return &listenerv3.FilterChain{}
	case networkingv1alpha3.EnvoyFilter_LISTENER:
		return &listenerv3.Listener{}
	case networkingv1alpha3.EnvoyFilter_LISTENER_FILTER:
		return &listenerv3.ListenerFilter{}
	case networkingv1alpha3.EnvoyFilter_CLUSTER:
		return &clusterv3.Cluster{}
	case networkingv1alpha3.EnvoyFilter_EXTENSION_CONFIG:
		return &corev3.TypedExtensionConfig{}
	case networkingv1alpha3.EnvoyFilter_BOOTSTRAP:
		return &bootstrapv3.Bootstrap{}
	}
	return nil
}

// EnvoyPatch validates one EnvoyFilter patch value against the Envoy v3 API:
// strict decoding (unknown fields with their path, wrong types), then PGV on
// every message packed in an Any. A MERGE value is a fragment, so the
// constraints of the patched object itself (a Route's required match and
// action) are not checked, only those of the complete messages inside it; an
// ADD or INSERT value is a whole object and is checked in full.
func EnvoyPatch(applyTo networkingv1alpha3.EnvoyFilter_ApplyTo, op networkingv1alpha3.EnvoyFilter_Patch_Operation, value map[string]any, path string) (proto.Message, []Problem) {
	m := patchTarget(applyTo)
	if m == nil {
		return nil, []Problem{{Path: path, Message: fmt.Sprintf("applyTo %s: not checked against the Envoy API by these tests", applyTo)}}
	}
	if ps := ProtoJSON(m, value, path); len(ps) > 0 {
		return nil, ps
	}
	var problems []Problem
	whole := op != networkingv1alpha3.EnvoyFilter_Patch_MERGE && op != networkingv1alpha3.EnvoyFilter_Patch_REMOVE
	if v, ok := m.(interface{ ValidateAll() error }); ok && whole {
		if err := v.ValidateAll(); err != nil {
			problems = append(problems, Problem{Path: path, Message: err.Error()})
		}
	}
	// protorange expands resolvable Anys while walking, so nested ones are
	// reached once each (ENVOY.md §5, "deep step").
	_ = protorange.Options{Stable: true}.Range(m.ProtoReflect(), func(v protopath.Values) error {
		last := v.Index(-1)
		if last.Step.Kind() != protopath.AnyExpandStep {
			return nil
		}
		if val, ok := last.Value.Message().Interface().(interface{ ValidateAll() error }); ok {
			if err := val.ValidateAll(); err != nil {
				problems = append(problems, Problem{Path: path + protoStepPath(v.Path), Message: err.Error()})
			}
		}
		return nil
	}, nil)
	return m, problems
}

// protoStepPath formats a protorange path like the YAML it came from:
// .typed_per_filter_config[envoy.filters.http.ext_authz].check_settings.
func protoStepPath(p protopath.Path) string {
	var b strings.Builder
	for _, s := range p[1:] {
		switch s.Kind() {
		case protopath.FieldAccessStep:
			b.WriteString("." + string(s.FieldDescriptor().Name()))
		case protopath.ListIndexStep:
			fmt.Fprintf(&b, "[%d]", s.ListIndex())
		case protopath.MapIndexStep:
			fmt.Fprintf(&b, "[%v]", s.MapIndex().Interface())
		}
	}
	return b.String()
}

func (t *Tree) checkEnvoyFilter(r *Render, ef *typed[*istionetv1alpha3.EnvoyFilter]) {
	spec := &ef.V.Spec
	cfg := t.servers[istioFamily]
	ns := "stepup"
	var levels policy.Levels
	if cfg != nil {
		ns, levels = cfg.MetadataNamespace, cfg.ACRLevels
	}
	routes := virtualServiceRoutes(r)

	sel := spec.GetWorkloadSelector().GetLabels()
	selected := false
	for _, s := range customSelectors(r) {
		if len(s) > 0 && subset(s, sel) {
			selected = true
		}
	}
	if !selected {
		t.add(r, ef.Object, "spec.workloadSelector.labels", "%v: no CUSTOM AuthorizationPolicy here selects these workloads, so Istio generates no ext_authz filter for this EnvoyFilter to configure", sel)
	}

	forwarded := map[string]bool{} // metadata namespaces the ext_authz filter forwards
	var metadataRoutes []string    // paths of route patches that carry stepup metadata
	for i, cp := range spec.GetConfigPatches() {
		p := fmt.Sprintf("spec.configPatches[%d]", i)
		vp := p + ".patch.value"
		m, problems := EnvoyPatch(cp.GetApplyTo(), cp.GetPatch().GetOperation(), cp.GetPatch().GetValue().AsMap(), vp)
		for _, pr := range problems {
			t.add(r, ef.Object, pr.Path, "%s", pr.Message)
		}
		switch v := m.(type) {
		case *routev3.Route:
			name := cp.GetMatch().GetRouteConfiguration().GetVhost().GetRoute().GetName()
			switch {
			case name == "":
				t.add(r, ef.Object, p+".match.routeConfiguration.vhost.route.name", "unset: the patch would apply to every route")
			case !routes[name]:
				t.add(r, ef.Object, p+".match.routeConfiguration.vhost.route.name", "%q: no VirtualService here has an http route of that name (%s)", name, strings.Join(slices.Sorted(maps.Keys(routes)), ", "))
			}
			for key, a := range v.GetTypedPerFilterConfig() {
				kp := vp + ".typed_per_filter_config[" + key + "]"
				per, ok := unpackAny(a).(*extauthzv3.ExtAuthzPerRoute)
				if !ok {
					continue
				}
				if key != istioExtAuthzFilter {
					t.add(r, ef.Object, kp, "Istio names its ext_authz filter %q; Envoy ignores per-route config under any other key", istioExtAuthzFilter)
				}
				ce := per.GetCheckSettings().GetContextExtensions()
				for _, k := range sortedKeys(ce) {
					if !slices.Contains(policy.Fields, k) {
						t.add(r, ef.Object, kp+".check_settings.context_extensions."+k, "stepup-authz ignores this key (it reads %s)", strings.Join(policy.Fields, ", "))
					}
				}
				if cfg != nil {
					if _, err := policy.ParseContextExtensions(ce, levels); err != nil {
						t.add(r, ef.Object, kp+".check_settings.context_extensions", "%v", err)
					}
				}
			}
			if s, ok := v.GetMetadata().GetFilterMetadata()[ns]; ok {
				metadataRoutes = append(metadataRoutes, vp+".metadata.filter_metadata."+ns)
				if cfg != nil {
					if _, err := policy.ParseMetadata(s.AsMap(), levels); err != nil {
						t.add(r, ef.Object, vp+".metadata.filter_metadata."+ns, "%v", err)
					}
				}
			}
		case *hcmv3.HttpFilter:
			authz, ok := unpackAny(v.GetTypedConfig()).(*extauthzv3.ExtAuthz)
			if !ok {
				continue
			}
			if sub := cp.GetMatch().GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName(); sub != istioExtAuthzFilter {
				t.add(r, ef.Object, p+".match.listener.filterChain.filter.subFilter.name", "%q: Istio's generated ext_authz filter is %q", sub, istioExtAuthzFilter)
			}
			if authz.GetFailureModeAllow() {
				t.add(r, ef.Object, vp+".typed_config.failure_mode_allow", "true: requests pass without step-up when stepup-authz fails")
			}
			for _, n := range authz.GetRouteMetadataContextNamespaces() {
				forwarded[n] = true
			}
		}
	}
	if !forwarded[ns] {
		for _, mp := range metadataRoutes {
			t.add(r, ef.Object, mp, "Istio's ext_authz filter forwards no route metadata: add an HTTP_FILTER MERGE patch setting route_metadata_context_namespaces: [%s]", ns)
		}
	}
}

func unpackAny(a *anypb.Any) proto.Message {
	if a == nil {
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil
	}
	return m
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
