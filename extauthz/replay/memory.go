package replay

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the per-replica store: keys in two generations of maps, sharded
// by key to spread lock contention. A generation is retired whole once it is
// older than the window: a key put into the current generation stays until
// the generation after next begins, so it is remembered at least one window
// and at most two, without a timestamp per key or a sweeper goroutine.
//
// Memory is bounded by max keys (about 25 bytes each: TestMemoryBytesPerKey). When it is
// full, Use returns ErrFull: the store never evicts a key early, because that
// could re-accept a replay.
type Memory struct {
	window atomic.Int64 // a time.Duration; SetWindow changes it on reload
	now    func() time.Time
	max    atomic.Int64
	count  atomic.Int64
	shards [memoryShards]memoryShard
}

const memoryShards = 16

type memoryShard struct {
	mu sync.Mutex
	// since is when cur became the current generation.
	since     time.Time
	cur, prev map[[16]byte]struct{}
}

// NewMemory returns a store remembering each key for at least window (and at
// most twice that), holding at most max keys. now is the clock; nil means
// time.Now.
func NewMemory(window time.Duration, max int, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{now: now}
	m.window.Store(int64(window))
	m.max.Store(int64(max))
	t := now()
	for i := range m.shards {
		m.shards[i] = memoryShard{since: t, cur: map[[16]byte]struct{}{}, prev: map[[16]byte]struct{}{}}
	}
	return m
}

// SetMax changes the bound (a config reload); keys already held stay.
func (m *Memory) SetMax(max int) { m.max.Store(int64(max)) }

// Window is how long a key is remembered at least.
func (m *Memory) Window() time.Duration { return time.Duration(m.window.Load()) }

// SetWindow changes the window (a config reload changed proof_max_age or
// clock_skew). Keys already held stay at least the new window: the proofs the
// new config accepts are all younger than it.
func (m *Memory) SetWindow(window time.Duration) { m.window.Store(int64(window)) }

// Len is the number of keys held, for metrics.
func (m *Memory) Len() int { return int(m.count.Load()) }

// Use implements Store. The ttl is not needed: every key is remembered for the
// store's window, which is the longest ttl a caller asks for.
func (m *Memory) Use(_ context.Context, key [32]byte, _ time.Duration) (bool, error) {
	var k [16]byte
	copy(k[:], key[:16])
	s := &m.shards[binary.LittleEndian.Uint64(key[16:24])%memoryShards]
	now := m.now()
	window := m.Window()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch age := now.Sub(s.since); {
	case age >= 2*window:
		// Both generations are older than a window: drop both.
		m.count.Add(-int64(len(s.cur) + len(s.prev)))
		s.cur, s.prev, s.since = map[[16]byte]struct{}{}, map[[16]byte]struct{}{}, now
	case age >= window:
		m.count.Add(-int64(len(s.prev)))
		s.prev, s.cur, s.since = s.cur, make(map[[16]byte]struct{}, len(s.cur)), now
	}
	if _, ok := s.cur[k]; ok {
		return false, nil
	}
	if _, ok := s.prev[k]; ok {
		return false, nil
	}
	if m.count.Load() >= m.max.Load() {
		return false, ErrFull
	}
	s.cur[k] = struct{}{}
	m.count.Add(1)
	return true, nil
}
