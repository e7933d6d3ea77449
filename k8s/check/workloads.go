package check

import (
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
)

// The ports stepup-authz's Deployment names, and the paths its admin server
// answers (CONTRACT.md, "Command line").
const (
	grpcPortName  = "grpc"
	adminPortName = "admin"
	readyPath     = "/readyz"
	livePath      = "/healthz"
)

type deployment struct {
	*typed[*appsv1.Deployment]
	hpaMin int32 // minReplicas of the autoscaler that targets it, or 0
}

func (t *Tree) checkWorkloads(r *Render) {
	var deps []*deployment
	for _, d := range objects[*appsv1.Deployment](r) {
		dep := &deployment{typed: d}
		for _, h := range objects[*autoscalingv2.HorizontalPodAutoscaler](r) {
			ref := h.V.Spec.ScaleTargetRef
			if h.Namespace == d.Namespace && ref.Kind == "Deployment" && ref.Name == d.Name && h.V.Spec.MinReplicas != nil {
				dep.hpaMin = *h.V.Spec.MinReplicas
			}
		}
		deps = append(deps, dep)
	}
	for _, d := range deps {
		t.checkDeployment(r, d)
	}
	for _, s := range objects[*corev1.Service](r) {
		t.checkService(r, s, deps)
	}
	for _, p := range objects[*policyv1.PodDisruptionBudget](r) {
		d := t.selected(r, p.Object, "spec.selector", p.V.Spec.Selector, deps)
		if d == nil {
			continue
		}
		replicas := replicasOf(d)
		if m := p.V.Spec.MinAvailable; m != nil {
			if v, err := intstr.GetScaledValueFromIntOrPercent(m, int(replicas), true); err == nil && v >= int(replicas) {
				t.add(r, p.Object, "spec.minAvailable", "%s of %d replicas: no pod may ever be evicted, so node drains block", m.String(), replicas)
			}
		}
		if m := p.V.Spec.MaxUnavailable; m != nil {
			if v, err := intstr.GetScaledValueFromIntOrPercent(m, int(replicas), false); err == nil && v < 1 {
				t.add(r, p.Object, "spec.maxUnavailable", "%s of %d replicas rounds to 0: node drains block", m.String(), replicas)
			}
		}
	}
	for _, h := range objects[*autoscalingv2.HorizontalPodAutoscaler](r) {
		t.checkHPA(r, h, deps)
	}
	for _, n := range objects[*networkingv1.NetworkPolicy](r) {
		t.checkNetworkPolicy(r, n, deps)
	}
}

// replicasOf is the Deployment's replica count, or its autoscaler's minimum
// when the autoscaler owns the count.
func replicasOf(d *deployment) int32 {
	if d.V.Spec.Replicas == nil {
		if d.hpaMin > 0 {
			return d.hpaMin
		}
		return 1
	}
	return *d.V.Spec.Replicas
}

// selected returns the Deployment (same namespace) whose pods sel selects,
// and reports a selector that selects none.
func (t *Tree) selected(r *Render, o *Object, field string, sel *metav1.LabelSelector, deps []*deployment) *deployment {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		t.add(r, o, field, "empty: selects every pod in the namespace")
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.add(r, o, field, "%v", err)
		return nil
	}
	for _, d := range deps {
		if d.Namespace == o.Namespace && s.Matches(labels.Set(d.V.Spec.Template.Labels)) {
			return d
		}
	}
	if !undecoded(r, "Deployment") {
		t.add(r, o, field, "%s selects no pod of any Deployment here", s)
	}
	return nil
}

func (t *Tree) checkDeployment(r *Render, d *deployment) {
	spec := d.V.Spec
	pod := spec.Template.Spec
	scaled := false
	for _, h := range objects[*autoscalingv2.HorizontalPodAutoscaler](r) {
		ref := h.V.Spec.ScaleTargetRef
		if h.Namespace == d.Namespace && ref.Kind == "Deployment" && ref.Name == d.Name {
			scaled = true
		}
	}
	switch {
	case scaled && spec.Replicas != nil:
		t.add(r, d.Object, "spec.replicas", "%d, but a HorizontalPodAutoscaler owns the count: every `kubectl apply` (each policy change) would reset it", *spec.Replicas)
	case !scaled && replicasOf(d) < 2:
		t.add(r, d.Object, "spec.replicas", "%d: at least 2, or a rollout or node drain leaves Envoy without an authorizer (ext_authz fails closed)", replicasOf(d))
	}
	if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); err != nil || !sel.Matches(labels.Set(spec.Template.Labels)) {
		t.add(r, d.Object, "spec.selector", "does not select the pod template's labels %v", spec.Template.Labels)
	}

	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if pod.ServiceAccountName != "" && !has[*corev1.ServiceAccount](r, d.Namespace, pod.ServiceAccountName) {
		t.add(r, d.Object, "spec.template.spec.serviceAccountName", "no ServiceAccount %q here", pod.ServiceAccountName)
	}
	for i, v := range pod.Volumes {
		if v.HostPath != nil {
			t.add(r, d.Object, fmt.Sprintf("spec.template.spec.volumes[%d].hostPath", i), "a hostPath volume gives the pod the node's files")
		}
	}
	if pod.HostNetwork {
		t.add(r, d.Object, "spec.template.spec.hostNetwork", "must be false")
	}
	zones := false
	for i, c := range pod.TopologySpreadConstraints {
		if c.TopologyKey == "topology.kubernetes.io/zone" {
			zones = true
		}
		if s, err := metav1.LabelSelectorAsSelector(c.LabelSelector); err != nil || s.Empty() || !s.Matches(labels.Set(spec.Template.Labels)) {
			t.add(r, d.Object, fmt.Sprintf("spec.template.spec.topologySpreadConstraints[%d].labelSelector", i), "does not select this Deployment's pods, so it spreads nothing")
		}
	}
	if !zones {
		t.add(r, d.Object, "spec.template.spec.topologySpreadConstraints", "no constraint on topology.kubernetes.io/zone: all replicas may land in one zone")
	}
	ann := spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" {
		t.add(r, d.Object, "spec.template.metadata.annotations[prometheus.io/scrape]", "must be \"true\" so /metrics is scraped")
	}

	for i, c := range pod.Containers {
		cp := fmt.Sprintf("spec.template.spec.containers[%d]", i)
		t.checkContainerSecurity(r, d.Object, cp, psc, c.SecurityContext)
		t.checkResources(r, d.Object, cp+".resources", c.Resources)
		if ref := c.Image; !strings.Contains(ref, "@") {
			tag := ""
			if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
				tag = ref[i+1:]
			}
			if tag == "" || tag == "latest" {
				t.add(r, d.Object, cp+".image", "%q: pin a tag or a digest (kustomize images:), not latest", ref)
			}
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		for _, name := range []string{grpcPortName, adminPortName} {
			if _, ok := ports[name]; !ok {
				t.add(r, d.Object, cp+".ports", "no port named %q", name)
			}
		}
		t.checkProbe(r, d.Object, cp+".readinessProbe", c.ReadinessProbe, readyPath, c)
		t.checkProbe(r, d.Object, cp+".livenessProbe", c.LivenessProbe, livePath, c)
		if p, ok := ports[adminPortName]; ok && ann["prometheus.io/port"] != strconv.Itoa(int(p)) {
			t.add(r, d.Object, "spec.template.metadata.annotations[prometheus.io/port]", "%q, but the admin port (/metrics) is %d", ann["prometheus.io/port"], p)
		}
		t.checkConfig(r, d, cp, c, ports)
	}
}

func has[T interface{ GetName() string }](r *Render, ns, name string) bool {
	for _, o := range objects[T](r) {
		if o.Namespace == ns && o.Name == name {
			return true
		}
	}
	return false
}

func (t *Tree) checkContainerSecurity(r *Render, o *Object, cp string, psc *corev1.PodSecurityContext, sc *corev1.SecurityContext) {
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	p := cp + ".securityContext"
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.add(r, o, p+".runAsNonRoot", "must be true (here or in the pod's securityContext)")
	}
	uid := sc.RunAsUser
	if uid == nil {
		uid = psc.RunAsUser
	}
	if uid != nil && *uid == 0 {
		t.add(r, o, p+".runAsUser", "0 is root")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.add(r, o, p+".readOnlyRootFilesystem", "must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.add(r, o, p+".allowPrivilegeEscalation", "must be false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.add(r, o, p+".privileged", "must not be true")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.add(r, o, p+".capabilities.drop", "must contain ALL")
	} else if len(sc.Capabilities.Add) > 0 {
		t.add(r, o, p+".capabilities.add", "%v: stepup-authz needs no capability (its ports are above 1024)", sc.Capabilities.Add)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.add(r, o, p+".seccompProfile.type", "must be RuntimeDefault (here or in the pod's securityContext)")
	}
}

func (t *Tree) checkResources(r *Render, o *Object, p string, res corev1.ResourceRequirements) {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := res.Requests[name]; !ok || q.IsZero() {
			t.add(r, o, p+".requests."+string(name), "must be set: the scheduler and the HorizontalPodAutoscaler work from requests")
		}
	}
	mem, ok := res.Limits[corev1.ResourceMemory]
	if !ok || mem.IsZero() {
		t.add(r, o, p+".limits.memory", "must be set")
		return
	}
	if req, ok := res.Requests[corev1.ResourceMemory]; ok && mem.Cmp(req) < 0 {
		t.add(r, o, p+".limits.memory", "%s is below the request %s", mem.String(), req.String())
	}
}

// containerPort resolves a probe's or Service's port (a number or a name)
// against the container's ports.
func containerPort(c corev1.Container, port intstr.IntOrString) (int32, bool) {
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func portNamed(c corev1.Container, name string) int32 {
	p, _ := containerPort(c, intstr.FromString(name))
	return p
}

// checkProbe accepts an HTTP GET of path on the admin port, or a gRPC health
// probe on the gRPC port (grpc.health.v1 follows readiness).
func (t *Tree) checkProbe(r *Render, o *Object, p string, pr *corev1.Probe, path string, c corev1.Container) {
	if pr == nil {
		t.add(r, o, p, "missing: want GET %s on the %s port (or a grpc probe on %s)", path, adminPortName, grpcPortName)
		return
	}
	switch {
	case pr.HTTPGet != nil:
		if pr.HTTPGet.Path != path {
			t.add(r, o, p+".httpGet.path", "%q, want %q", pr.HTTPGet.Path, path)
		}
		if n, ok := containerPort(c, pr.HTTPGet.Port); !ok || n != portNamed(c, adminPortName) {
			t.add(r, o, p+".httpGet.port", "%s is not the %s port, where %s is served", pr.HTTPGet.Port.String(), adminPortName, path)
		}
	case pr.GRPC != nil:
		if pr.GRPC.Port != portNamed(c, grpcPortName) {
			t.add(r, o, p+".grpc.port", "%d is not the %s port", pr.GRPC.Port, grpcPortName)
		}
	default:
		t.add(r, o, p, "want httpGet %s or grpc", path)
	}
}

// checkConfig follows --config to the ConfigMap key behind it, parses that
// config like `stepup-authz validate`, and checks its listen addresses
// against the container's ports.
func (t *Tree) checkConfig(r *Render, d *deployment, cp string, c corev1.Container, ports map[string]int32) {
	args := append(slices.Clone(c.Command), c.Args...)
	file := ""
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			file = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			file = v
		}
	}
	if file == "" {
		t.add(r, d.Object, cp+".args", "no --config FILE")
		return
	}
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.add(r, d.Object, cp+".volumeMounts", "nothing is mounted where --config %s points", file)
		return
	}
	mi := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == mount.Name })
	mp := fmt.Sprintf("%s.volumeMounts[%d]", cp, mi)
	if mount.SubPath != "" || mount.SubPathExpr != "" {
		t.add(r, d.Object, mp+".subPath", "kubelet never updates a subPath mount, so config changes would not reach the server: mount the whole ConfigMap")
	}
	var vol *corev1.Volume
	for i, v := range d.V.Spec.Template.Spec.Volumes {
		if v.Name == mount.Name {
			vol = &d.V.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.ConfigMap == nil {
		t.add(r, d.Object, mp, "volume %q is not a ConfigMap", mount.Name)
		return
	}
	key := path.Clean(strings.TrimPrefix(file, strings.TrimSuffix(mount.MountPath, "/")+"/"))
	for _, it := range vol.ConfigMap.Items {
		if it.Path == key {
			key = it.Key
		}
	}
	var cm *typed[*corev1.ConfigMap]
	for _, o := range objects[*corev1.ConfigMap](r) {
		if o.Namespace == d.Namespace && o.Name == vol.ConfigMap.Name {
			cm = o
		}
	}
	if cm == nil {
		t.add(r, d.Object, mp, "ConfigMap %q is not here", vol.ConfigMap.Name)
		return
	}
	data, ok := cm.V.Data[key]
	if !ok {
		t.add(r, cm.Object, "data", "no key %q, which --config %s reads", key, file)
		return
	}
	cfg, err := config.Parse([]byte(data), nil)
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			for _, p := range problems {
				t.add(r, cm.Object, "data["+key+"]", "%s", p)
			}
		} else {
			t.add(r, cm.Object, "data["+key+"]", "%v", err)
		}
		return
	}
	if _, seen := t.servers[r.Family()]; !seen || r.Dir == r.Family() {
		t.servers[r.Family()] = cfg
	}
	for _, l := range []struct{ key, addr, port string }{
		{"listen.grpc", cfg.Listen.GRPC, grpcPortName},
		{"listen.admin", cfg.Listen.Admin, adminPortName},
	} {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.add(r, cm.Object, "data["+key+"]."+l.key, "%q: %v", l.addr, err)
			continue
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.add(r, cm.Object, "data["+key+"]."+l.key, "%q listens on %s only: other pods cannot reach it; use \":%s\"", l.addr, host, port)
		}
		if want := ports[l.port]; strconv.Itoa(int(want)) != port {
			t.add(r, cm.Object, "data["+key+"]."+l.key, "port %s, but the container's %q port is %d", port, l.port, want)
		}
	}
}

func (t *Tree) checkService(r *Render, s *typed[*corev1.Service], deps []*deployment) {
	d := t.selected(r, s.Object, "spec.selector", &metav1.LabelSelector{MatchLabels: s.V.Spec.Selector}, deps)
	if d == nil {
		return
	}
	c := d.V.Spec.Template.Spec.Containers[0]
	for i, p := range s.V.Spec.Ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		n, ok := containerPort(c, target)
		if !ok {
			t.add(r, s.Object, pp+".targetPort", "%s is no port of %s's container", target.String(), d.ID())
			continue
		}
		if p.Name == grpcPortName {
			if n != portNamed(c, grpcPortName) {
				t.add(r, s.Object, pp+".targetPort", "the %q Service port leads to container port %d, not the %q port %d", p.Name, n, grpcPortName, portNamed(c, grpcPortName))
			}
			if p.AppProtocol == nil || *p.AppProtocol != "grpc" {
				t.add(r, s.Object, pp+".appProtocol", "must be grpc: meshes and gateways then speak HTTP/2 and balance per request")
			}
		}
		if p.Name == adminPortName && n != portNamed(c, adminPortName) {
			t.add(r, s.Object, pp+".targetPort", "the %q Service port leads to container port %d, not the %q port %d", p.Name, n, adminPortName, portNamed(c, adminPortName))
		}
	}
}

func (t *Tree) checkHPA(r *Render, h *typed[*autoscalingv2.HorizontalPodAutoscaler], deps []*deployment) {
	ref := h.V.Spec.ScaleTargetRef
	found := false
	for _, d := range deps {
		if d.Namespace == h.Namespace && d.Name == ref.Name && ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" {
			found = true
		}
	}
	if !found && !undecoded(r, "Deployment") {
		t.add(r, h.Object, "spec.scaleTargetRef", "%s %s/%s is not here", ref.APIVersion, ref.Kind, ref.Name)
	}
	if m := h.V.Spec.MinReplicas; m == nil || *m < 2 {
		t.add(r, h.Object, "spec.minReplicas", "must be at least 2")
	}
	if len(h.V.Spec.Metrics) == 0 {
		t.add(r, h.Object, "spec.metrics", "no metric: the autoscaler would never scale")
	}
}

func (t *Tree) checkNetworkPolicy(r *Render, n *typed[*networkingv1.NetworkPolicy], deps []*deployment) {
	d := t.selected(r, n.Object, "spec.podSelector", &n.V.Spec.PodSelector, deps)
	if d == nil {
		return
	}
	if !slices.Contains(n.V.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.add(r, n.Object, "spec.policyTypes", "must include Ingress")
	}
	c := d.V.Spec.Template.Spec.Containers[0]
	admits := func(rule networkingv1.NetworkPolicyIngressRule, port string) bool {
		if len(rule.Ports) == 0 {
			return true
		}
		want := portNamed(c, port)
		for _, p := range rule.Ports {
			if p.Port == nil {
				return true
			}
			if got, ok := containerPort(c, *p.Port); ok && got == want {
				return true
			}
		}
		return false
	}
	grpcAdmitted, adminAdmitted := false, false
	for i, rule := range n.V.Spec.Ingress {
		if admits(rule, grpcPortName) {
			grpcAdmitted = true
			if len(rule.From) == 0 {
				t.add(r, n.Object, fmt.Sprintf("spec.ingress[%d].from", i), "empty: admits every pod to the ext_authz port; only the mesh or gateway may call it")
			}
		}
		if admits(rule, adminPortName) {
			adminAdmitted = true
		}
	}
	if !grpcAdmitted {
		t.add(r, n.Object, "spec.ingress", "no rule admits the %s port: no proxy can call stepup-authz", grpcPortName)
	}
	if !adminAdmitted {
		t.add(r, n.Object, "spec.ingress", "no rule admits the %s port: Prometheus cannot scrape /metrics", adminPortName)
	}
}
