package token

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
)

// Certificate-bound tokens (RFC 8705 §3): a token whose cnf["x5t#S256"] names a
// certificate is accepted only from a client that presented that certificate.
// The thumbprint is base64url (no padding) of the SHA-256 of the certificate's
// DER. Envoy has already verified the TLS handshake; nothing here judges trust
// in the certificate, only which certificate it was.

// MaxCertificateBytes bounds the URL-encoded PEM read from a request: a leaf
// certificate is a few KiB, and Envoy's headers are 60 KiB in all by default.
const MaxCertificateBytes = 32 << 10

// ErrNoCertificate means the request carries no usable client certificate.
var ErrNoCertificate = errors.New("no client certificate")

// ClientCertificate is where a request's client certificate is: the peer
// certificate Envoy sent (attributes.source.certificate), or, with FromXFCC,
// the x-forwarded-client-cert header (mtls.certificate_from: xfcc).
type ClientCertificate struct {
	Peer     string
	XFCC     string
	FromXFCC bool
}

// Thumbprint is the certificate's x5t#S256, read from where the request says.
func (c ClientCertificate) Thumbprint() (string, error) {
	if c.FromXFCC {
		return XFCCCertificateThumbprint(c.XFCC)
	}
	return PeerCertificateThumbprint(c.Peer)
}

// PeerCertificateThumbprint returns the x5t#S256 of the leaf certificate in
// attributes.source.certificate: URL-encoded PEM, as Envoy's ext_authz filter
// sends it with include_peer_certificate: true. "" is ErrNoCertificate.
func PeerCertificateThumbprint(urlEncodedPEM string) (string, error) {
	if urlEncodedPEM == "" {
		return "", ErrNoCertificate
	}
	if len(urlEncodedPEM) > MaxCertificateBytes {
		return "", errors.New("client certificate is larger than 32 KiB")
	}
	// Percent-decoding, not form decoding: a '+' of base64 stays a '+'.
	p, err := url.PathUnescape(urlEncodedPEM)
	if err != nil {
		return "", errors.New("client certificate is not URL-encoded PEM: " + err.Error())
	}
	return pemThumbprint(p)
}

func pemThumbprint(p string) (string, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE" || len(block.Bytes) == 0 {
		return "", errors.New("client certificate is not a PEM CERTIFICATE")
	}
	return CertificateThumbprint(block.Bytes), nil
}

// CertificateThumbprint is RFC 8705 §3.1's x5t#S256 of a DER certificate.
func CertificateThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// XFCCCertificateThumbprint returns the x5t#S256 of the certificate in the Cert=
// key of an x-forwarded-client-cert header (Envoy's format: elements separated
// by ',', key=value pairs by ';', values optionally double-quoted with '\'
// escapes; Cert is the URL-encoded PEM of the client's leaf).
//
// Exactly one element is accepted. The deployments this serves (Envoy
// Gateway's ClientTrafficPolicy with SanitizeSet, Envoy's SANITIZE_SET) leave
// exactly one, written by the proxy that terminated TLS; several elements mean
// a chain of proxies whose every hop this server cannot tell apart, so the
// request is treated as carrying no usable certificate rather than trusting a
// guess. So are an element without Cert and repeated Cert keys.
func XFCCCertificateThumbprint(header string) (string, error) {
	if header == "" {
		return "", ErrNoCertificate
	}
	if len(header) > MaxCertificateBytes {
		return "", errors.New("x-forwarded-client-cert is larger than 32 KiB")
	}
	elems, err := parseXFCC(header)
	if err != nil {
		return "", err
	}
	if len(elems) != 1 {
		return "", errors.New("x-forwarded-client-cert has several elements; exactly one (SANITIZE_SET) is accepted")
	}
	var cert string
	n := 0
	for _, kv := range elems[0] {
		if strings.EqualFold(kv[0], "Cert") {
			cert = kv[1]
			n++
		}
	}
	switch n {
	case 0:
		return "", ErrNoCertificate
	case 1:
	default:
		return "", errors.New("x-forwarded-client-cert has more than one Cert")
	}
	p, err := url.PathUnescape(cert)
	if err != nil {
		return "", errors.New("x-forwarded-client-cert Cert is not URL-encoded PEM: " + err.Error())
	}
	return pemThumbprint(p)
}

// parseXFCC splits the header into elements of key/value pairs.
func parseXFCC(h string) ([][][2]string, error) {
	var (
		elems [][][2]string
		cur   [][2]string
		key   strings.Builder
		val   strings.Builder
		inVal bool
	)
	flushPair := func() error {
		k := strings.TrimSpace(key.String())
		if k == "" && !inVal && val.Len() == 0 {
			return nil // empty pair, as in a trailing ';'
		}
		if k == "" || !inVal {
			return errors.New("x-forwarded-client-cert has a pair without key=value")
		}
		cur = append(cur, [2]string{k, val.String()})
		key.Reset()
		val.Reset()
		inVal = false
		return nil
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case inVal && c == '"' && strings.TrimSpace(val.String()) == "":
			// A quoted value: read to the closing quote, honouring '\' escapes.
			val.Reset()
			i++
			closed := false
			for ; i < len(h); i++ {
				if h[i] == '\\' && i+1 < len(h) {
					i++
					val.WriteByte(h[i])
					continue
				}
				if h[i] == '"' {
					closed = true
					break
				}
				val.WriteByte(h[i])
			}
			if !closed {
				return nil, errors.New("x-forwarded-client-cert has an unterminated quoted value")
			}
		case !inVal && c == '=':
			inVal = true
		case c == ';':
			if err := flushPair(); err != nil {
				return nil, err
			}
		case c == ',':
			if err := flushPair(); err != nil {
				return nil, err
			}
			elems = append(elems, cur)
			cur = nil
		case inVal:
			val.WriteByte(c)
		default:
			key.WriteByte(c)
		}
	}
	if err := flushPair(); err != nil {
		return nil, err
	}
	return append(elems, cur), nil
}
