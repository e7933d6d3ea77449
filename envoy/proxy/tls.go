package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// A TLS listener: envoy.transport_sockets.tls with a DownstreamTlsContext on
// the filter chain. The proxy implements the subset a step-up deployment with
// certificate-bound tokens (RFC 8705) needs: one server certificate, an
// optional client CA (the client certificate is requested, and required with
// require_client_certificate), ALPN and protocol versions. Anything else in
// the context is refused by name.

const tlsSocketType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"

// listenerTLS is the downstream TLS configuration.
type listenerTLS struct {
	config *tls.Config
	local  *x509.Certificate // the proxy's own leaf, for destination.principal and XFCC By=
}

func buildListenerTLS(path string, ts *corev3.TransportSocket) (*listenerTLS, error) {
	if err := only(path, ts, "name", "typed_config"); err != nil {
		return nil, err
	}
	tp := join(path, "typed_config")
	if ts.GetTypedConfig().GetTypeUrl() != tlsSocketType {
		return nil, unsupported(tp, fmt.Sprintf("transport socket %q; only a DownstreamTlsContext (envoy.transport_sockets.tls)", ts.GetTypedConfig().GetTypeUrl()))
	}
	m, err := unpack(tp, ts.GetTypedConfig())
	if err != nil {
		return nil, err
	}
	dc := m.(*tlsv3.DownstreamTlsContext)
	if err := only(tp, dc, "common_tls_context", "require_client_certificate"); err != nil {
		return nil, err
	}
	cp := join(tp, "common_tls_context")
	cc := dc.GetCommonTlsContext()
	if err := only(cp, cc, "tls_certificates", "validation_context", "alpn_protocols", "tls_params"); err != nil {
		return nil, err
	}
	out := &listenerTLS{config: &tls.Config{MinVersion: tls.VersionTLS12}}

	certs := cc.GetTlsCertificates()
	if len(certs) != 1 {
		return nil, unsupported(join(cp, "tls_certificates"), fmt.Sprintf("exactly one certificate is supported, found %d", len(certs)))
	}
	tcp := indexed(join(cp, "tls_certificates"), 0)
	if err := only(tcp, certs[0], "certificate_chain", "private_key"); err != nil {
		return nil, err
	}
	chain, err := tlsData(join(tcp, "certificate_chain"), certs[0].GetCertificateChain())
	if err != nil {
		return nil, err
	}
	key, err := tlsData(join(tcp, "private_key"), certs[0].GetPrivateKey())
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", tcp, err)
	}
	out.config.Certificates = []tls.Certificate{pair}
	out.local = pair.Leaf

	if tp := cc.GetTlsParams(); tp != nil {
		pp := join(cp, "tls_params")
		if err := only(pp, tp, "tls_minimum_protocol_version", "tls_maximum_protocol_version"); err != nil {
			return nil, err
		}
		if out.config.MinVersion, err = tlsVersion(join(pp, "tls_minimum_protocol_version"), tp.GetTlsMinimumProtocolVersion(), tls.VersionTLS12); err != nil {
			return nil, err
		}
		if out.config.MaxVersion, err = tlsVersion(join(pp, "tls_maximum_protocol_version"), tp.GetTlsMaximumProtocolVersion(), tls.VersionTLS13); err != nil {
			return nil, err
		}
	}
	for i, a := range cc.GetAlpnProtocols() {
		if a != "h2" && a != "http/1.1" {
			return nil, unsupported(indexed(join(cp, "alpn_protocols"), i), fmt.Sprintf("%q; only h2 and http/1.1", a))
		}
	}
	out.config.NextProtos = cc.GetAlpnProtocols()

	// Client certificates. With a validation context Envoy asks the client for
	// a certificate and verifies one that is presented; without
	// require_client_certificate a client may still send none
	// (DownstreamTlsContext.require_client_certificate).
	require := dc.GetRequireClientCertificate().GetValue()
	vc := cc.GetValidationContext()
	vp := join(cp, "validation_context")
	switch {
	case vc == nil && require:
		return nil, fmt.Errorf("%s: require_client_certificate needs a validation_context with trusted_ca to verify the certificate against", tp)
	case vc == nil:
		out.config.ClientAuth = tls.NoClientCert
	default:
		if err := only(vp, vc, "trusted_ca", "trust_chain_verification"); err != nil {
			return nil, err
		}
		if vc.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED {
			// RFC 8705 §2.2 self-signed client certificates: the token's
			// thumbprint, not a CA, says which certificate is the right one.
			out.config.ClientAuth = tls.RequestClientCert
			if require {
				out.config.ClientAuth = tls.RequireAnyClientCert
			}
			break
		}
		if vc.GetTrustedCa() == nil {
			return nil, unsupported(join(vp, "trusted_ca"), "a validation_context without trusted_ca (Envoy would not verify the client certificate)")
		}
		ca, err := tlsData(join(vp, "trusted_ca"), vc.GetTrustedCa())
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("%s: no PEM certificate found", join(vp, "trusted_ca"))
		}
		out.config.ClientCAs = pool
		out.config.ClientAuth = tls.VerifyClientCertIfGiven
		if require {
			out.config.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return out, nil
}

func tlsVersion(path string, v tlsv3.TlsParameters_TlsProtocol, def uint16) (uint16, error) {
	switch v {
	case tlsv3.TlsParameters_TLS_AUTO:
		return def, nil
	case tlsv3.TlsParameters_TLSv1_2:
		return tls.VersionTLS12, nil
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13, nil
	}
	return 0, unsupported(path, v.String()+"; only TLS_AUTO, TLSv1_2 and TLSv1_3")
}

// tlsData reads one of the context's DataSources (a file is read once,
// when the proxy is built).
func tlsData(path string, ds *corev3.DataSource) ([]byte, error) {
	if ds == nil {
		return nil, fmt.Errorf("%s: required", path)
	}
	if err := only(path, ds, "filename", "inline_string", "inline_bytes"); err != nil {
		return nil, err
	}
	b, err := dataSource(ds)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return b, nil
}

// xfccConfig is the HCM's forward_client_cert_details and
// set_current_client_cert_details.
type xfccConfig struct {
	mode hcmv3.HttpConnectionManager_ForwardClientCertDetails
	// The details written for this hop, in Envoy's order
	// (convertSetCurrentClientCertDetails: Cert, Chain, Subject, URI, DNS).
	cert, chain, subject, uri, dns bool
}

func buildXFCC(path string, h *hcmv3.HttpConnectionManager) (xfccConfig, error) {
	c := xfccConfig{mode: h.GetForwardClientCertDetails()}
	if d := h.GetSetCurrentClientCertDetails(); d != nil {
		if err := only(join(path, "set_current_client_cert_details"), d, "cert", "chain", "subject", "uri", "dns"); err != nil {
			return c, err
		}
		c.cert, c.chain, c.subject, c.uri, c.dns = d.GetCert(), d.GetChain(), d.GetSubject().GetValue(), d.GetUri(), d.GetDns()
	}
	return c, nil
}

// mutate follows ConnectionManagerUtility::mutateXfccRequestHeader
// (source/common/http/conn_manager_utility.cc): ALWAYS_FORWARD_ONLY keeps a
// client's header; SANITIZE (the default), or a connection without a client
// certificate, removes it; FORWARD_ONLY keeps it; APPEND_FORWARD and
// SANITIZE_SET write this hop's element "By=<our URI SAN>;Hash=<hex SHA-256 of
// the DER>" and the configured details, appended to or replacing the header.
func (c xfccConfig) mutate(hm *headerMap, st *tls.ConnectionState, local *x509.Certificate) {
	const name = "x-forwarded-client-cert"
	if c.mode == hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY {
		return
	}
	if c.mode == hcmv3.HttpConnectionManager_SANITIZE || st == nil || len(st.PeerCertificates) == 0 {
		hm.remove(name)
		return
	}
	if c.mode == hcmv3.HttpConnectionManager_FORWARD_ONLY {
		return
	}
	leaf := st.PeerCertificates[0]
	var details []string
	if local != nil && len(local.URIs) > 0 {
		details = append(details, "By="+local.URIs[0].String())
	}
	sum := sha256.Sum256(leaf.Raw)
	details = append(details, "Hash="+hex.EncodeToString(sum[:]))
	if c.cert {
		details = append(details, `Cert="`+urlEncodedPEM(leaf)+`"`)
	}
	if c.chain {
		var chain strings.Builder
		for _, pc := range st.PeerCertificates {
			chain.WriteString(urlEncodedPEM(pc))
		}
		details = append(details, `Chain="`+chain.String()+`"`)
	}
	if c.subject {
		// "The Subject key still exists even if the subject is empty."
		// Envoy prints it RFC 2253 style (BoringSSL); Go's pkix.Name.String
		// is the same form for ordinary names.
		details = append(details, `Subject="`+leaf.Subject.String()+`"`)
	}
	if c.uri {
		// Newer Envoy writes one URI= per URI SAN, and "URI=" without any.
		if len(leaf.URIs) == 0 {
			details = append(details, "URI=")
		}
		for _, u := range leaf.URIs {
			details = append(details, "URI="+u.String())
		}
	}
	if c.dns {
		for _, d := range leaf.DNSNames {
			details = append(details, "DNS="+d)
		}
	}
	v := strings.Join(details, ";")
	if c.mode == hcmv3.HttpConnectionManager_APPEND_FORWARD {
		hm.appendValue(name, v)
		return
	}
	hm.set(name, v)
}

// urlEncodedPEM is Ssl::ConnectionInfo::urlEncodedPemEncodedPeerCertificate:
// the leaf's PEM with "\n", " ", "+", "/" and "=" percent-encoded (the
// replacement set of connection_info_impl_base.cc; newer Envoy encodes more
// with PercentEncoding::urlEncode, and both decode the same).
func urlEncodedPEM(c *x509.Certificate) string {
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
}

// principal is what CheckRequestUtils::setAttrContextPeer puts in
// Peer.principal for a TLS connection: the first URI SAN, else the first DNS
// SAN, else the subject. (Envoy prints the subject RFC 2253 style with
// BoringSSL; Go's pkix.Name.String is the same form for common names.)
func principal(c *x509.Certificate) string {
	switch {
	case c == nil:
		return ""
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.String()
}
