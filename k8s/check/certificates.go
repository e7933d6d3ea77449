package check

import (
	"fmt"
	"slices"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
)

// Certificate-bound tokens (RFC 8705) under a mesh or a gateway controller.
// Neither Istio nor Envoy Gateway sets the ext_authz filter's
// include_peer_certificate, so the only way the client's certificate reaches
// stepup-authz is the Cert= of x-forwarded-client-cert, written by the proxy
// that terminated the client's TLS (mutateXfccRequestHeader in Envoy's
// conn_manager_utility.cc). That header is safe to read only when the proxy
// replaces a client's copy (SANITIZE_SET) and carries the certificate (Cert).

// readsXFCC reports whether the family's stepup-authz config reads the client
// certificate from x-forwarded-client-cert.
func (t *Tree) readsXFCC(family string) (cfg *config.Config, xfcc bool) {
	cfg = t.servers[family]
	return cfg, cfg != nil && cfg.MTLS.CertificateFrom == config.CertificateFromXFCC
}

// checkIstioGatewayXFCC checks one meshConfig's gateway XFCC handling
// (ProxyConfig.gatewayTopology.forwardClientCertDetails; unset is Istio's
// gateway default, SANITIZE_SET with Cert, in buildGatewayConnectionManager).
func (t *Tree) checkIstioGatewayXFCC(file, prefix string, mc *meshv1alpha1.MeshConfig) {
	if _, xfcc := t.readsXFCC(istioFamily); !xfcc {
		return
	}
	p := prefix + ".defaultConfig.gatewayTopology.forwardClientCertDetails"
	switch mode := mc.GetDefaultConfig().GetGatewayTopology().GetForwardClientCertDetails(); mode {
	case meshv1alpha1.ForwardClientCertDetails_FORWARD_ONLY, meshv1alpha1.ForwardClientCertDetails_ALWAYS_FORWARD_ONLY:
		t.addFile(file, p, "%s passes on an x-forwarded-client-cert the client wrote itself, and stepup-authz (mtls.certificate_from: xfcc) takes its Cert= as the client certificate: a client could name any certificate; use SANITIZE_SET", mode)
	case meshv1alpha1.ForwardClientCertDetails_SANITIZE:
		t.addFile(file, p, "SANITIZE removes x-forwarded-client-cert at the gateway, so stepup-authz (mtls.certificate_from: xfcc) never sees a client certificate and every certificate-bound token is refused; use SANITIZE_SET")
	}
}

// checkIstioMutualGateways: an Istio Gateway server that asks clients for
// certificates is there for certificate-bound tokens, which stepup-authz can
// check under Istio only with mtls.certificate_from: xfcc.
func (t *Tree) checkIstioMutualGateways(r *Render) {
	cfg, xfcc := t.readsXFCC(istioFamily)
	if cfg == nil || xfcc {
		return
	}
	for _, gw := range objects[*istionetv1.Gateway](r) {
		for i, s := range gw.V.Spec.GetServers() {
			switch s.GetTls().GetMode() {
			case networkingv1alpha3.ServerTLSSettings_MUTUAL, networkingv1alpha3.ServerTLSSettings_OPTIONAL_MUTUAL:
				t.add(r, gw.Object, fmt.Sprintf("spec.servers[%d].tls.mode", i), "%s asks clients for certificates, but stepup-authz's config (%s) reads them from %q: Istio never sets include_peer_certificate, so set mtls.certificate_from: xfcc", s.GetTls().GetMode(), istioFamily+"/config.yaml", cfg.MTLS.CertificateFrom)
			}
		}
	}
}

// checkClientTrafficPolicies: Envoy Gateway's ClientTrafficPolicy decides what
// x-forwarded-client-cert holds when it reaches stepup-authz.
func (t *Tree) checkClientTrafficPolicies(r *Render) {
	cfg, xfcc := t.readsXFCC(envoyGatewayFamily)
	for _, ctp := range objects[*egv1a1.ClientTrafficPolicy](r) {
		spec := &ctp.V.Spec
		if cfg != nil && !xfcc && spec.TLS != nil && spec.TLS.ClientValidation != nil {
			t.add(r, ctp.Object, "spec.tls.clientValidation", "asks clients for certificates, but stepup-authz's config reads them from %q: Envoy Gateway never sets include_peer_certificate, so set mtls.certificate_from: xfcc (and headers.xForwardedClientCert: {mode: SanitizeSet, certDetailsToAdd: [Cert]})", cfg.MTLS.CertificateFrom)
		}
		if !xfcc || spec.Headers == nil || spec.Headers.XForwardedClientCert == nil {
			continue
		}
		x := spec.Headers.XForwardedClientCert
		mode := egv1a1.XFCCForwardModeSanitize
		if x.Mode != nil {
			mode = *x.Mode
		}
		const p = "spec.headers.xForwardedClientCert"
		switch mode {
		case egv1a1.XFCCForwardModeForwardOnly, egv1a1.XFCCForwardModeAlwaysForwardOnly:
			t.add(r, ctp.Object, p+".mode", "%s passes on an x-forwarded-client-cert the client wrote itself, and stepup-authz (mtls.certificate_from: xfcc) takes its Cert= as the client certificate: a client could name any certificate; use SanitizeSet", mode)
		case egv1a1.XFCCForwardModeSanitizeSet, egv1a1.XFCCForwardModeAppendForward:
			if !slices.Contains(x.CertDetailsToAdd, egv1a1.XFCCCertDataCert) {
				t.add(r, ctp.Object, p+".certDetailsToAdd", "has no Cert: stepup-authz (mtls.certificate_from: xfcc) reads the client certificate from Cert=, so every certificate-bound token would be refused")
			}
		}
	}
}
