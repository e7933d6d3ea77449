package token

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/stepup-authz/stepup-authz/policy"
)

// maxCacheShards is the number of independently locked parts of the cache, so that
// concurrent hits on different tokens rarely touch the same lock.
const maxCacheShards = 64

// evictProbe is how many entries an insert into a full shard looks at for an expired or
// revoked one before evicting an arbitrary one.
const evictProbe = 8

// tokenCache remembers verified tokens by the SHA-256 of their raw text. An entry is
// served only before the token's exp (without skew) and only while the key that
// verified it is still in its issuer's key set.
type tokenCache struct {
	shards []cacheShard
}

type cacheShard struct {
	mu           sync.RWMutex
	m            map[[sha256.Size]byte]cacheEntry
	max          int
	hits, misses atomic.Uint64
	_            [64]byte // keeps neighbouring shards' locks off one cache line
}

type cacheEntry struct {
	claims *policy.Claims
	exp    time.Time
	// key verified the token's signature; nil for an opaque token, which only
	// its introspection answer vouches for.
	key *key
	// denial, when set, is a remembered inactive introspection answer: claims
	// is nil and the entry answers with this error until exp.
	denial error
}

// usable reports whether e may be served at now.
func (e *cacheEntry) usable(now time.Time) bool {
	return now.Before(e.exp) && (e.key == nil || !e.key.revoked.Load())
}

// newTokenCache returns a cache holding at most size (> 0) entries, spread over the
// shards.
func newTokenCache(size int) *tokenCache {
	n := min(size, maxCacheShards)
	c := &tokenCache{shards: make([]cacheShard, n)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]cacheEntry)
		c.shards[i].max = size / n
		if i < size%n {
			c.shards[i].max++
		}
	}
	return c
}

// hashToken is the cache key of raw. It hashes the string's bytes in place:
// sha256.Sum256 only reads its input, and copying a token of up to 16 KiB into a new
// []byte would be the cache hit's largest allocation.
func hashToken(raw string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

func (c *tokenCache) shard(sum *[sha256.Size]byte) *cacheShard {
	// SHA-256 output is uniform, so its first bytes spread tokens evenly.
	return &c.shards[(uint(sum[0])<<8|uint(sum[1]))%uint(len(c.shards))]
}

// get returns the cached claims for sum, or nil.
func (c *tokenCache) get(sum *[sha256.Size]byte, now time.Time) *policy.Claims {
	claims, _ := c.lookup(sum, now)
	return claims
}

// lookup returns the cached claims for sum, or nil; or, for a remembered
// inactive token, nil and its denial.
func (c *tokenCache) lookup(sum *[sha256.Size]byte, now time.Time) (*policy.Claims, error) {
	s := c.shard(sum)
	s.mu.RLock()
	e, ok := s.m[*sum]
	s.mu.RUnlock()
	if ok && e.usable(now) {
		s.hits.Add(1)
		return e.claims, e.denial
	}
	s.misses.Add(1)
	if ok {
		s.mu.Lock()
		if cur, still := s.m[*sum]; still && cur.claims == e.claims && cur.denial == e.denial {
			delete(s.m, *sum)
		}
		s.mu.Unlock()
	}
	return nil, nil
}

// Cached returns the claims of raw when the verified-token cache holds it and
// may serve it, exactly as Verify would return them (a copy), without doing
// anything else; ok is false otherwise, and Verify then verifies raw (counting
// the cache miss). It needs no context: it never waits.
func (v *Verifier) Cached(raw string) (*policy.Claims, bool) {
	if v.cache == nil || len(raw) > MaxTokenBytes {
		return nil, false
	}
	sum := hashToken(raw)
	c := v.cache.peek(&sum, v.now())
	if c == nil {
		return nil, false
	}
	cp := *c
	return &cp, true
}

// peek is get without the miss: it counts a hit and changes nothing else.
func (c *tokenCache) peek(sum *[sha256.Size]byte, now time.Time) *policy.Claims {
	s := c.shard(sum)
	s.mu.RLock()
	e, ok := s.m[*sum]
	s.mu.RUnlock()
	if ok && e.usable(now) {
		s.hits.Add(1)
		return e.claims
	}
	return nil
}

// put remembers claims for sum, verified with k. Tokens already expired at now are not
// stored. A full shard first drops an expired or revoked entry, else an arbitrary one.
func (c *tokenCache) put(sum *[sha256.Size]byte, claims *policy.Claims, k *key, now time.Time) {
	c.putEntry(sum, cacheEntry{claims: claims, exp: claims.Expiry, key: k}, now)
}

// putEntry remembers e for sum unless it is already unusable at now.
func (c *tokenCache) putEntry(sum *[sha256.Size]byte, e cacheEntry, now time.Time) {
	if !e.usable(now) {
		return
	}
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*sum]; !ok && len(s.m) >= s.max {
		s.evictOne(now)
	}
	s.m[*sum] = e
}

// evictOne removes one entry; the caller holds s.mu. Map iteration order is random, so
// the fallback victim is arbitrary.
func (s *cacheShard) evictOne(now time.Time) {
	var victim [sha256.Size]byte
	probed := 0
	for h, e := range s.m {
		if probed == 0 {
			victim = h
		}
		if !e.usable(now) {
			victim = h
			break
		}
		if probed++; probed >= evictProbe {
			break
		}
	}
	delete(s.m, victim)
}

func (c *tokenCache) stats() (hits, misses uint64) {
	for i := range c.shards {
		hits += c.shards[i].hits.Load()
		misses += c.shards[i].misses.Load()
	}
	return hits, misses
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
