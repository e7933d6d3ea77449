package token

import (
	"crypto/sha256"
	"sync"
)

// proofHeaderCacheSize bounds the accepted proof headers a ProofVerifier
// remembers: one per client key in use (a browser session, an agent), each a
// few hundred bytes. Past it an arbitrary header is forgotten, which costs its
// client one more jwk parse, never a wrong answer.
const proofHeaderCacheSize = 10000

// proofHeaderShards spreads the headers over independently locked maps.
const proofHeaderShards = 16

// proofHeaders remembers accepted proof headers by the SHA-256 of their exact
// base64url text. Only headers that passed every header rule are stored, so a
// hit gives the same answer parseHeader would; refused headers are parsed (and
// refused) every time.
type proofHeaders struct {
	shards [proofHeaderShards]proofHeaderShard
}

type proofHeaderShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*proofHeader
	_  [64]byte // keeps neighbouring shards' locks off one cache line
}

func (c *proofHeaders) shard(sum *[sha256.Size]byte) *proofHeaderShard {
	return &c.shards[uint(sum[0])%proofHeaderShards]
}

func (c *proofHeaders) get(sum *[sha256.Size]byte) (*proofHeader, bool) {
	s := c.shard(sum)
	s.mu.RLock()
	h, ok := s.m[*sum]
	s.mu.RUnlock()
	return h, ok
}

// put remembers h, forgetting an arbitrary header (map order is random) when
// the shard is full.
func (c *proofHeaders) put(sum *[sha256.Size]byte, h *proofHeader) {
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[[sha256.Size]byte]*proofHeader)
	}
	if _, ok := s.m[*sum]; !ok && len(s.m) >= proofHeaderCacheSize/proofHeaderShards {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[*sum] = h
}

func (c *proofHeaders) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
