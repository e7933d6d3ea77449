package extauthz

import (
	"container/list"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

// The step-up loop detector's bounds, per replica (README, "Step-up loops").
const (
	// loopMemory is how many (issuer, subject, requirement) step-up denials are
	// remembered; beyond it the least recently denied is forgotten. About 400
	// bytes each with a 44-byte issuer and a 41-byte subject
	// (BenchmarkLoopDetectorMemory): 10,000 hold about 4 MB.
	loopMemory = 10000
	// loopWindow is how long a step-up denial is remembered: longer than any
	// step-up prompt (sign-in, MFA, retry) takes.
	loopWindow = 10 * time.Minute
)

// loopDetector tells a step-up loop from the normal flow. A user asked to step
// up (a step-up denial at t0) comes back with a new token; when the IdP honoured
// the challenge it passes. When it still fails the same requirement although it
// was authenticated after t0 (its auth_time, or iat when there is none), the
// step-up happened and did not help: an IdP that ignores acr_values/max_age or
// leaves acr or auth_time out of access tokens, and the user would be prompted
// forever. The first denial, retries of the denied token, and refreshed tokens
// (new iat, same auth_time) are not loops.
//
// It belongs to a Server (its zero value is ready) and remembers at most
// loopMemory denials for loopWindow each. Only step-up denials and allows on
// routes that require a step-up touch it.
type loopDetector struct {
	size atomic.Int32 // len(byKey), read without the lock by allowed

	mu    sync.Mutex
	byKey map[loopKey]*list.Element // of *loopEntry
	order list.List                 // least recently denied first
}

// loopKey is one subject facing one requirement.
type loopKey struct {
	issuer, subject, requiredACR string
	maxAge                       time.Duration // -1 when the policy has no max_age
}

type loopEntry struct {
	key loopKey
	// deniedAt is the latest step-up denial; authAt is the latest authentication
	// time (auth_time, else iat) of a token denied for this requirement.
	deniedAt, authAt time.Time
}

// loopEvidence is what a suspected loop is logged with.
type loopEvidence struct {
	deniedAt time.Time // the denial the new token came after
	authAt   time.Time // the new token's auth_time (or iat)
}

func newLoopKey(c *policy.Claims, p *policy.Policy) loopKey {
	k := loopKey{issuer: c.Issuer, subject: c.Subject, requiredACR: p.RequiredACR, maxAge: -1}
	if p.HasMaxAge {
		k.maxAge = p.MaxAge
	}
	return k
}

// authenticatedAt is when the token's user authenticated: auth_time, else iat.
func authenticatedAt(c *policy.Claims) time.Time {
	if !c.AuthTime.IsZero() {
		return c.AuthTime
	}
	return c.IssuedAt
}

// stepUpDenied records a step-up denial of the token c under policy p at now,
// and reports whether it looks like a loop: the same subject was denied for the
// same requirement within loopWindow, and this token was authenticated after that
// denial (to the second: auth_time and iat have no more) and after every token
// denied for it before.
func (l *loopDetector) stepUpDenied(c *policy.Claims, p *policy.Policy, now time.Time) (loopEvidence, bool) {
	at := authenticatedAt(c)
	if c.Subject == "" || at.IsZero() {
		return loopEvidence{}, false // nothing to tell this user's tokens apart by
	}
	key := newLoopKey(c, p)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	if el, ok := l.byKey[key]; ok {
		e := el.Value.(*loopEntry)
		ev := loopEvidence{deniedAt: e.deniedAt, authAt: at}
		suspected := at.After(e.authAt) && !at.Before(e.deniedAt.Truncate(time.Second))
		e.deniedAt = now
		if at.After(e.authAt) {
			e.authAt = at
		}
		l.order.MoveToBack(el)
		return ev, suspected
	}
	if l.byKey == nil {
		l.byKey = make(map[loopKey]*list.Element)
	}
	if l.order.Len() >= loopMemory {
		l.remove(l.order.Front())
	}
	// The strings may point into a request's memory (see wire.Codec): keep copies.
	key.issuer, key.subject, key.requiredACR = strings.Clone(key.issuer), strings.Clone(key.subject), strings.Clone(key.requiredACR)
	l.byKey[key] = l.order.PushBack(&loopEntry{key: key, deniedAt: now, authAt: at})
	l.size.Store(int32(len(l.byKey)))
	return loopEvidence{}, false
}

// allowed forgets the subject's denial for the requirement p sets: the step-up
// worked, so a later denial (a new sign-in at a lower level) starts afresh.
func (l *loopDetector) allowed(c *policy.Claims, p *policy.Policy) {
	if l.size.Load() == 0 || c == nil || !p.NeedsStepUp() {
		return
	}
	key := newLoopKey(c, p)
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.byKey[key]; ok {
		l.remove(el)
	}
}

// expire forgets the denials older than loopWindow; l.mu is held.
func (l *loopDetector) expire(now time.Time) {
	for el := l.order.Front(); el != nil && now.Sub(el.Value.(*loopEntry).deniedAt) > loopWindow; el = l.order.Front() {
		l.remove(el)
	}
}

// remove forgets one denial; l.mu is held.
func (l *loopDetector) remove(el *list.Element) {
	delete(l.byKey, el.Value.(*loopEntry).key)
	l.order.Remove(el)
	l.size.Store(int32(len(l.byKey)))
}
