package extauthz

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

// The detector's memory is bounded: at most loopMemory denials, each for at most
// loopWindow.
func TestLoopDetectorBounds(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &policy.Policy{RequiredACR: "aal2", HasMaxAge: true, MaxAge: 5 * time.Minute}
	claims := func(sub string, authAt time.Time) *policy.Claims {
		return &policy.Claims{Issuer: "https://idp", Subject: sub, ACR: "aal1", HasACR: true, AuthTime: authAt, IssuedAt: authAt}
	}
	// loopAfter denies sub a token authenticated at retryAt: a loop when sub's
	// earlier denial is still remembered.
	loopAfter := func(l *loopDetector, sub string, retryAt time.Time) bool {
		_, loop := l.stepUpDenied(claims(sub, retryAt), p, retryAt)
		return loop
	}

	t.Run("a denial is remembered for loopWindow and no longer", func(t *testing.T) {
		var l loopDetector
		l.stepUpDenied(claims("u", t0.Add(-time.Hour)), p, t0)
		if !loopAfter(&l, "u", t0.Add(loopWindow)) {
			t.Fatal("a retry loopWindow after the denial was not recognised")
		}
		var m loopDetector
		m.stepUpDenied(claims("u", t0.Add(-time.Hour)), p, t0)
		if loopAfter(&m, "u", t0.Add(loopWindow+time.Second)) {
			t.Fatal("a denial older than loopWindow still counted")
		}
	})
	t.Run("at most loopMemory denials are remembered; the least recently denied goes first", func(t *testing.T) {
		var l loopDetector
		for i := range loopMemory + 10 {
			l.stepUpDenied(claims(fmt.Sprint("user-", i), t0.Add(-time.Hour)), p, t0.Add(time.Duration(i)*time.Millisecond))
		}
		if n := len(l.byKey); n != loopMemory || l.order.Len() != loopMemory || int(l.size.Load()) != loopMemory {
			t.Fatalf("%d denials remembered (list %d, size %d), want %d", n, l.order.Len(), l.size.Load(), loopMemory)
		}
		later := t0.Add(time.Minute)
		if loopAfter(&l, "user-0", later) {
			t.Fatal("the oldest denial was not the one forgotten")
		}
		if !loopAfter(&l, fmt.Sprint("user-", loopMemory+9), later) {
			t.Fatal("the newest denial was forgotten")
		}
	})
	t.Run("an allow on the route forgets the denial", func(t *testing.T) {
		var l loopDetector
		l.allowed(claims("u", t0), p) // empty: nothing to do
		l.stepUpDenied(claims("u", t0.Add(-time.Hour)), p, t0)
		l.allowed(claims("u", t0), p)
		if l.size.Load() != 0 || len(l.byKey) != 0 {
			t.Fatal("the allow did not forget the denial")
		}
		if loopAfter(&l, "u", t0.Add(time.Minute)) {
			t.Fatal("a denial after an allow counted as a loop")
		}
	})
	t.Run("tokens without subject or without auth_time and iat are not tracked", func(t *testing.T) {
		var l loopDetector
		l.stepUpDenied(claims("", t0), p, t0)
		l.stepUpDenied(&policy.Claims{Issuer: "https://idp", Subject: "u"}, p, t0)
		if l.size.Load() != 0 {
			t.Fatalf("%d denials remembered", l.size.Load())
		}
	})
}

// BenchmarkLoopDetectorMemory measures the memory one remembered denial takes
// (README, "Step-up loops").
func BenchmarkLoopDetectorMemory(b *testing.B) {
	p := &policy.Policy{RequiredACR: "aal2", HasMaxAge: true, MaxAge: 5 * time.Minute}
	t0 := time.Now()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := &loopDetector{}
		for i := range loopMemory {
			c := &policy.Claims{Issuer: "https://login.example.com/tenant-0123456789", Subject: fmt.Sprintf("user-%08d-0000-0000-0000-000000000000", i), AuthTime: t0}
			l.stepUpDenied(c, p, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/loopMemory, "B/denial")
		runtime.KeepAlive(l)
	}
}

// BenchmarkLoopDetectorAllowed is what an allow on a step-up route costs the
// detector: nothing remembered (one atomic load), and a full detector (a lookup).
func BenchmarkLoopDetectorAllowed(b *testing.B) {
	p := &policy.Policy{RequiredACR: "aal2", HasMaxAge: true, MaxAge: 5 * time.Minute}
	t0 := time.Now()
	c := &policy.Claims{Issuer: "https://login.example.com/tenant-0123456789", Subject: "user-x", AuthTime: t0}
	b.Run("empty", func(b *testing.B) {
		var l loopDetector
		b.ReportAllocs()
		for range b.N {
			l.allowed(c, p)
		}
	})
	b.Run("full", func(b *testing.B) {
		var l loopDetector
		for i := range loopMemory {
			l.stepUpDenied(&policy.Claims{Issuer: c.Issuer, Subject: fmt.Sprint("user-", i), AuthTime: t0}, p, t0)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			l.allowed(c, p)
		}
	})
}
