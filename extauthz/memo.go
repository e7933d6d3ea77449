package extauthz

import (
	"sync"
	"sync/atomic"
)

// memoLimit bounds every memo: values come from config and route metadata, which
// hold few distinct ones; past the bound, values are computed anew each time
// rather than remembered.
const memoLimit = 1024

// memo is a bounded map for the request path, read without locking: a value is
// added by copying the map (under a lock) and publishing the copy, so lookups never
// wait. It suits values looked up on every request and added rarely: remembered
// route metadata layers and step-up denials (an Engine's), decision counters (the
// Metrics'). The zero memo is empty and ready.
type memo[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

// load returns the current map; nil when empty. It must not be modified. Indexing
// it directly (m[string(b)]) lets the compiler skip converting a []byte key.
func (c *memo[K, V]) load() map[K]V {
	if p := c.m.Load(); p != nil {
		return *p
	}
	return nil
}

// get returns the value for k.
func (c *memo[K, V]) get(k K) (V, bool) {
	v, ok := c.load()[k]
	return v, ok
}

// put remembers v for k unless k is already there or the memo is full.
func (c *memo[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.load()
	if _, dup := old[k]; dup || len(old) >= memoLimit {
		return
	}
	next := make(map[K]V, len(old)+1)
	for kk, vv := range old {
		next[kk] = vv
	}
	next[k] = v
	c.m.Store(&next)
}

// len is the number of remembered values.
func (c *memo[K, V]) len() int { return len(c.load()) }
