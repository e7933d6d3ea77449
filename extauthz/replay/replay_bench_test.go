package replay

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/internal/redistest"
)

// BenchmarkUse is one replay insert of a fresh proof key: the memory store,
// and Redis on loopback (one SET NX PX round trip).
//
//	go test -run='^$' -bench=Use -benchmem ./extauthz/replay
func BenchmarkUse(b *testing.B) {
	ctx := context.Background()
	var k [32]byte
	run := func(b *testing.B, s Store) {
		b.ReportAllocs()
		var i uint64
		for b.Loop() {
			i++
			binary.LittleEndian.PutUint64(k[:8], i)
			binary.LittleEndian.PutUint64(k[16:24], i)
			if first, err := s.Use(ctx, k, 2*time.Minute); !first || err != nil {
				b.Fatal(first, err)
			}
		}
	}
	b.Run("store=memory", func(b *testing.B) { run(b, NewMemory(2*time.Minute, 1<<30, nil)) })
	b.Run("store=redis", func(b *testing.B) {
		srv := redistest.Start(b, "")
		r := NewRedis(RedisOptions{Address: srv.Addr})
		defer r.Close()
		run(b, r)
	})
}

// TestMemoryBytesPerKey measures what the memory store holds per key, the
// figure README and BENCHMARKS.md give for max_entries.
func TestMemoryBytesPerKey(t *testing.T) {
	const n = 200000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := NewMemory(time.Hour, n, nil)
	var k [32]byte
	for i := range uint64(n) {
		binary.LittleEndian.PutUint64(k[:8], i)
		binary.LittleEndian.PutUint64(k[16:24], i)
		if first, err := m.Use(context.Background(), k, time.Hour); !first || err != nil {
			t.Fatal(first, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("memory replay store: %.0f bytes per remembered proof (%d proofs)", per, n)
	if per > 100 {
		t.Errorf("%.0f bytes per key; README says about 25", per)
	}
	runtime.KeepAlive(m)
}
