package replay

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stepup-authz/stepup-authz/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func key(s string) [32]byte { return sha256.Sum256([]byte(s)) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemoryRefusesReplayWithinWindow(t *testing.T) {
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewMemory(2*time.Minute, 100, c.now)
	ctx := context.Background()
	if first, err := m.Use(ctx, key("a"), time.Minute); !first || err != nil {
		t.Fatalf("first use = %v, %v", first, err)
	}
	// Through every generation change inside the window, the key stays.
	for elapsed := time.Duration(0); elapsed < 2*time.Minute; elapsed += 10 * time.Second {
		if first, err := m.Use(ctx, key("a"), time.Minute); first || err != nil {
			t.Fatalf("replay %s after first use accepted (%v, %v)", elapsed, first, err)
		}
		// Other traffic rotates the generations.
		if _, err := m.Use(ctx, key(fmt.Sprint("other", elapsed)), time.Minute); err != nil {
			t.Fatal(err)
		}
		c.add(10 * time.Second)
	}
	c.add(2 * time.Minute)
	if first, err := m.Use(ctx, key("a"), time.Minute); !first || err != nil {
		t.Errorf("a key older than two windows is still held (%v, %v): memory would grow without bound", first, err)
	}
}

func TestMemoryFullFailsClosed(t *testing.T) {
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewMemory(time.Minute, 64, c.now)
	ctx := context.Background()
	for i := range 64 {
		if first, err := m.Use(ctx, key(fmt.Sprint(i)), time.Minute); !first || err != nil {
			t.Fatalf("use %d = %v, %v", i, first, err)
		}
	}
	if first, err := m.Use(ctx, key("one more"), time.Minute); first || !errors.Is(err, ErrFull) {
		t.Fatalf("use when full = %v, %v; want ErrFull", first, err)
	}
	// Full never means forgetting: every key held is still refused.
	for i := range 64 {
		if first, err := m.Use(ctx, key(fmt.Sprint(i)), time.Minute); first || err != nil {
			t.Fatalf("replay of %d when full = %v, %v", i, first, err)
		}
	}
	// Once the keys age out, new proofs are accepted again.
	c.add(2 * time.Minute)
	if first, err := m.Use(ctx, key("one more"), time.Minute); !first || err != nil {
		t.Errorf("after the window: %v, %v", first, err)
	}
	if m.Len() > 64 {
		t.Errorf("Len = %d over the bound", m.Len())
	}
}

func TestMemoryConcurrentUseAcceptsOnce(t *testing.T) {
	m := NewMemory(time.Minute, 1000, nil)
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if first, err := m.Use(context.Background(), key("same"), time.Minute); first && err == nil {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Errorf("accepted %d times, want once", accepted.Load())
	}
}

func TestRedisSharedBetweenClients(t *testing.T) {
	srv := redistest.Start(t, "pw-for-tests")
	a := NewRedis(RedisOptions{Address: srv.Addr, Password: srv.Password})
	b := NewRedis(RedisOptions{Address: srv.Addr, Password: srv.Password})
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if first, err := a.Use(ctx, key("p1"), time.Minute); !first || err != nil {
		t.Fatalf("replica a, first use = %v, %v", first, err)
	}
	if first, err := b.Use(ctx, key("p1"), time.Minute); first || err != nil {
		t.Fatalf("replica b, replay = %v, %v; want refused", first, err)
	}
	if first, err := a.Use(ctx, key("p1"), time.Minute); first || err != nil {
		t.Fatalf("replica a, replay = %v, %v; want refused", first, err)
	}
	if first, err := b.Use(ctx, key("p2"), time.Minute); !first || err != nil {
		t.Fatalf("replica b, another proof = %v, %v", first, err)
	}
}

func TestRedisExpiresKeys(t *testing.T) {
	srv := redistest.Start(t, "")
	r := NewRedis(RedisOptions{Address: srv.Addr})
	defer r.Close()
	ctx := context.Background()
	if first, err := r.Use(ctx, key("short"), 50*time.Millisecond); !first || err != nil {
		t.Fatal(first, err)
	}
	ttl, err := r.client.PTTL(ctx, KeyPrefix+b64(key("short"))).Result()
	if err != nil || ttl <= 0 || ttl > 51*time.Millisecond {
		t.Fatalf("PTTL = %v, %v; want a positive expiry of at most the ttl asked for (rounded up)", ttl, err)
	}
}

func TestRedisUnavailableFailsClosed(t *testing.T) {
	srv := redistest.Start(t, "")
	r := NewRedis(RedisOptions{Address: srv.Addr, Timeout: 200 * time.Millisecond})
	defer r.Close()
	ctx := context.Background()
	if first, err := r.Use(ctx, key("x"), time.Minute); !first || err != nil {
		t.Fatal(first, err)
	}
	srv.Stop()
	first, err := r.Use(ctx, key("y"), time.Minute)
	if first || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with Redis down: %v, %v; want ErrUnavailable", first, err)
	}
	if err := r.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with Redis down = %v", err)
	}
}

func TestRedisWrongPasswordFailsClosed(t *testing.T) {
	srv := redistest.Start(t, "right")
	r := NewRedis(RedisOptions{Address: srv.Addr, Password: "wrong"})
	defer r.Close()
	if first, err := r.Use(context.Background(), key("x"), time.Minute); first || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("wrong password: %v, %v; want ErrUnavailable", first, err)
	}
}

func b64(k [32]byte) string { return base64.RawURLEncoding.EncodeToString(k[:]) }
