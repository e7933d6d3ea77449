package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// IdP is the development identity provider the load is minted by, serving its
// JWKS on loopback so that the server under test can trust it.
type IdP struct {
	*devidp.IdP
	Key  *devidp.Key
	Addr string
	srv  *http.Server
}

// StartIdP serves a development IdP on listen (a loopback address; port 0
// picks one). Its RS256 key has a random kid, so a long-running server that
// fetched another run's keys refetches (an unknown kid) instead of failing
// the signatures.
func StartIdP(listen string) (*IdP, error) {
	idp, err := devidp.New(Audience)
	if err != nil {
		return nil, err
	}
	var kid [6]byte
	_, _ = rand.Read(kid[:])
	key, err := devidp.NewKey("bench-"+hex.EncodeToString(kid[:]), "RS256")
	if err != nil {
		return nil, err
	}
	idp.SetKeys(key)
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	addr := lis.Addr().String()
	idp.Issuer = "http://" + addr
	srv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return &IdP{IdP: idp, Key: key, Addr: addr, srv: srv}, nil
}

// Close stops serving.
func (p *IdP) Close() error { return p.srv.Close() }

// JWKSURL is where the keys are.
func (p *IdP) JWKSURL() string { return p.Issuer + "/jwks.json" }

// Mint signs n distinct tokens at acr, authenticated at authTime, on all CPUs
// the process may use. jti values start at first.
func (p *IdP) Mint(n int, acr string, authTime time.Time, first int) ([]string, error) {
	out := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				tok, err := p.MintWith(p.Key, Claims(acr, authTime, first+i))
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				out[i] = tok
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	return out, nil
}

// Forge returns a well-formed RS256 token whose signature does not verify: the
// payload of one token under the signature of another. A verifier has to do
// the full RSA verification to refuse it, and never caches it.
func (p *IdP) Forge(acr string, authTime time.Time) (string, error) {
	toks, err := p.Mint(2, acr, authTime, 1<<40)
	if err != nil {
		return "", err
	}
	a, b := strings.Split(toks[0], "."), strings.Split(toks[1], ".")
	return a[0] + "." + b[1] + "." + a[2], nil
}

// Encode returns the framed CheckRequest for a token.
func Encode(raw string) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(Request(raw))
	if err != nil {
		panic(err)
	}
	return Frame(b)
}

// Mix weighs the kinds of token a run sends.
type Mix struct {
	// Cached tokens come from a small pool and are answered from the server's
	// verified-token cache after their first use.
	Cached int
	// Unique tokens are each sent once: every one costs a signature verification.
	Unique int
	// Invalid tokens are well formed but their signature does not verify.
	Invalid int
}

// ParseMix reads "cached=90,unique=10,invalid=0" (weights, any scale).
func ParseMix(s string) (Mix, error) {
	var m Mix
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return Mix{}, fmt.Errorf("mix %q: want kind=weight, e.g. cached=90,unique=10", part)
		}
		switch k {
		case "cached":
			m.Cached = n
		case "unique":
			m.Unique = n
		case "invalid":
			m.Invalid = n
		default:
			return Mix{}, fmt.Errorf("mix %q: kind is one of cached, unique, invalid", part)
		}
	}
	if m.Cached+m.Unique+m.Invalid == 0 {
		return Mix{}, errors.New("mix: every weight is 0")
	}
	return m, nil
}

func (m Mix) String() string {
	var parts []string
	for _, kv := range []struct {
		k string
		v int
	}{{"cached", m.Cached}, {"unique", m.Unique}, {"invalid", m.Invalid}} {
		if kv.v > 0 {
			parts = append(parts, kv.k+"="+strconv.Itoa(kv.v))
		}
	}
	return strings.Join(parts, ",")
}

// pattern spreads the kinds evenly (smooth weighted round robin) over one cycle.
func (m Mix) pattern() []byte {
	kinds := []struct {
		k byte
		w int
	}{{'c', m.Cached}, {'u', m.Unique}, {'i', m.Invalid}}
	g := 0
	for _, k := range kinds {
		g = gcd(g, k.w)
	}
	total := 0
	for i := range kinds {
		kinds[i].w /= g
		total += kinds[i].w
	}
	credit := make([]int, len(kinds))
	out := make([]byte, 0, total)
	for range total {
		best := -1
		for i, k := range kinds {
			if k.w == 0 {
				continue
			}
			credit[i] += k.w
			if best < 0 || credit[i] > credit[best] {
				best = i
			}
		}
		credit[best] -= total
		out = append(out, kinds[best].k)
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pools are the requests a run draws from.
type Pools struct {
	Cached, Unique, Invalid []*Item
}

// MixSource draws requests from pools in the proportions of a mix. Cached and
// invalid requests cycle; unique ones are used once, and the run ends when
// they run out.
type MixSource struct {
	pools   *Pools
	pattern []byte
	seq     atomic.Uint64
	c, i    atomic.Uint64
	u       atomic.Uint64
}

// NewMixSource returns a Source; every kind with a weight must have a pool.
func NewMixSource(m Mix, p *Pools) (*MixSource, error) {
	if (m.Cached > 0 && len(p.Cached) == 0) || (m.Unique > 0 && len(p.Unique) == 0) || (m.Invalid > 0 && len(p.Invalid) == 0) {
		return nil, errors.New("mix names a kind of token without a pool")
	}
	return &MixSource{pools: p, pattern: m.pattern()}, nil
}

// UniqueUsed is how many unique requests were handed out.
func (s *MixSource) UniqueUsed() int { return int(min(s.u.Load(), uint64(len(s.pools.Unique)))) }

func (s *MixSource) Next() (*Item, bool) {
	switch s.pattern[(s.seq.Add(1)-1)%uint64(len(s.pattern))] {
	case 'c':
		return s.pools.Cached[(s.c.Add(1)-1)%uint64(len(s.pools.Cached))], true
	case 'i':
		return s.pools.Invalid[(s.i.Add(1)-1)%uint64(len(s.pools.Invalid))], true
	default:
		n := s.u.Add(1) - 1
		if n >= uint64(len(s.pools.Unique)) {
			return nil, false
		}
		return s.pools.Unique[n], true
	}
}
