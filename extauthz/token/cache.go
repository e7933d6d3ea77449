package token

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// maxCacheShards is the number of independently locked parts of the cache, so that
// concurrent hits on different tokens rarely touch the same lock.
const maxCacheShards = 64

// evictProbe is how many entries an insert into a full shard looks at for an expired or
// revoked one before evicting an arbitrary one.
const evictProbe = 8

// DefaultCacheSize is the verified-principal cache's size when none is configured
// (config's token_cache_size 0).
const DefaultCacheSize = 100000

// principalCache is the verified-principal cache: principals by the SHA-256 of their
// token's raw text, and remembered refusals (inactive introspection answers). An
// entry is served only before its principal's Until and only while its Hold holds
// for the request's credential. The pipeline consults it once per request; the
// introspection verifier also looks inside its coalesced call, so that callers
// arriving just after an answer find it.
type principalCache struct {
	shards []cacheShard
}

type cacheShard struct {
	mu           sync.RWMutex
	m            map[[sha256.Size]byte]cacheEntry
	max          int
	hits, misses atomic.Uint64
	_            [64]byte // keeps neighbouring shards' locks off one cache line
}

// cacheEntry is a principal, or a refusal: refused is then the error to answer
// with, and p carries only its Until.
type cacheEntry struct {
	p       *Principal
	refused error
}

// servable reports whether e may be served at now for cred (the zero Credential:
// without anything from a request).
func (e cacheEntry) servable(now time.Time, cred *Credential) bool {
	p := e.p
	return now.Before(p.Until) && (p.Hold == nil || p.Hold.Holds(*cred))
}

// newPrincipalCache returns a cache holding at most size (> 0) entries, spread over
// the shards.
func newPrincipalCache(size int) *principalCache {
	n := min(size, maxCacheShards)
	c := &principalCache{shards: make([]cacheShard, n)}
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

func (c *principalCache) shard(sum *[sha256.Size]byte) *cacheShard {
	// SHA-256 output is uniform, so its first bytes spread tokens evenly.
	return &c.shards[(uint(sum[0])<<8|uint(sum[1]))%uint(len(c.shards))]
}

// get returns the principal cached for sum if it may be served at now for cred, or
// the remembered refusal, counting a hit; else nil and nil, counting a miss. An
// entry that may not be served is dropped: the verifiers rebuild it when it still
// holds.
func (c *principalCache) get(sum *[sha256.Size]byte, now time.Time, cred *Credential) (*Principal, error) {
	s := c.shard(sum)
	s.mu.RLock()
	e, ok := s.m[*sum]
	s.mu.RUnlock()
	if ok && e.servable(now, cred) {
		s.hits.Add(1)
		if e.refused != nil {
			return nil, e.refused
		}
		return e.p, nil
	}
	s.misses.Add(1)
	if ok {
		s.mu.Lock()
		if cur, still := s.m[*sum]; still && cur.p == e.p {
			delete(s.m, *sum)
		}
		s.mu.Unlock()
	}
	return nil, nil
}

// peek is get for any request (the zero Credential) without counting or dropping.
func (c *principalCache) peek(sum *[sha256.Size]byte, now time.Time) (*Principal, error) {
	s := c.shard(sum)
	s.mu.RLock()
	e, ok := s.m[*sum]
	s.mu.RUnlock()
	if !ok || !e.servable(now, &Credential{}) {
		return nil, nil
	}
	if e.refused != nil {
		return nil, e.refused
	}
	return e.p, nil
}

// put remembers p for sum. A principal already past its Until at now is not stored.
func (c *principalCache) put(sum *[sha256.Size]byte, p *Principal, now time.Time) {
	c.putEntry(sum, cacheEntry{p: p}, now)
}

// putRefusal remembers that the token of sum is refused with err until until.
func (c *principalCache) putRefusal(sum *[sha256.Size]byte, err error, until, now time.Time) {
	c.putEntry(sum, cacheEntry{p: &Principal{Until: until}, refused: err}, now)
}

// putEntry stores e unless it is already past its Until. A full shard first drops
// an entry that cannot be served, else an arbitrary one.
func (c *principalCache) putEntry(sum *[sha256.Size]byte, e cacheEntry, now time.Time) {
	if !now.Before(e.p.Until) {
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
		if !e.servable(now, &Credential{}) {
			victim = h
			break
		}
		if probed++; probed >= evictProbe {
			break
		}
	}
	delete(s.m, victim)
}

func (c *principalCache) stats() (hits, misses uint64) {
	for i := range c.shards {
		hits += c.shards[i].hits.Load()
		misses += c.shards[i].misses.Load()
	}
	return hits, misses
}

func (c *principalCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
