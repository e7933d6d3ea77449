package token

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// ClientFor returns the HTTP client that fetches discovery documents and JWKS over TLS
// trusting the system roots plus the PEM bundle in caFile ("" for the system roots
// only). There is one client per distinct bundle content for the life of the
// KeySets, reused across reloads: key sets are identified partly by their client, so
// an issuer whose bundle did not change keeps its cached keys and connections.
func (k *KeySets) ClientFor(caFile string) (*http.Client, error) {
	var pem []byte
	if caFile != "" {
		var err error
		if pem, err = os.ReadFile(caFile); err != nil {
			return nil, err
		}
	}
	return k.clients.get(caFile, pem)
}

// caClients holds the clients of ClientFor by the SHA-256 of their bundle.
type caClients struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*http.Client
}

func (c *caClients) get(caFile string, pem []byte) (*http.Client, error) {
	sum := sha256.Sum256(pem)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.m[sum]; ok {
		return cl, nil
	}
	var roots *x509.CertPool
	if len(pem) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate found", caFile)
		}
		roots = pool
	}
	cl := newFetchClient(roots)
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]*http.Client)
	}
	c.m[sum] = cl
	return cl, nil
}

// newFetchClient bounds every phase of a fetch, so a stalled identity provider
// cannot hold a key refetch (and the Checks waiting on it) for long.
func newFetchClient(roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}
