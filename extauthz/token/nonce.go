package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"
)

// Nonces are stateless DPoP server nonces (RFC 9449 §8, §9): a nonce names a
// time step and carries an HMAC of it under a key every replica reads from the
// same file, so any replica can check a nonce another issued without sharing
// state. The nonce of the current step and of the previous one are accepted,
// so a nonce lives between one and two steps.
//
// Replicas must keep their clocks in step (NTP): a nonce issued in the first
// moments of a step by a replica whose clock runs ahead is refused, once, by a
// replica still in the previous step; the client then retries with the nonce
// that refusal carries, which the first replica accepts as its previous step.
type Nonces struct {
	key  []byte
	step time.Duration
	// current caches the nonce of the latest step issued: every allowed DPoP
	// request carries a DPoP-Nonce, and all of them in one step are the same.
	current atomic.Pointer[issuedNonce]
}

type issuedNonce struct {
	step  int64
	nonce string
}

// nonceMACBytes is the HMAC-SHA-256 prefix a nonce carries: 128 bits.
const nonceMACBytes = 16

// nonceLen is the length of a nonce: base64url of an 8-byte step and the MAC.
var nonceLen = base64.RawURLEncoding.EncodedLen(8 + nonceMACBytes)

// NewNonces returns nonces keyed by key, changing every step.
func NewNonces(key []byte, step time.Duration) (*Nonces, error) {
	if len(key) < 32 {
		return nil, errors.New("dpop: nonce key shorter than 32 bytes")
	}
	if step < time.Second {
		return nil, errors.New("dpop: nonce step below one second")
	}
	return &Nonces{key: append([]byte(nil), key...), step: step}, nil
}

func (n *Nonces) stepAt(t time.Time) int64 { return t.Unix() / int64(n.step/time.Second) }

func (n *Nonces) make(step int64) string {
	var buf [8 + sha256.Size]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(step))
	m := hmac.New(sha256.New, n.key)
	// Domain separation: the key file is meant for nonces only, but a MAC over
	// eight bytes alone could collide with another use of the same key.
	m.Write([]byte("stepup-authz dpop nonce v1\x00"))
	m.Write(buf[:8])
	m.Sum(buf[:8])
	return base64.RawURLEncoding.EncodeToString(buf[:8+nonceMACBytes])
}

// Issue returns the nonce of now's step.
func (n *Nonces) Issue(now time.Time) string {
	s := n.stepAt(now)
	if c := n.current.Load(); c != nil && c.step == s {
		return c.nonce
	}
	nonce := n.make(s)
	n.current.Store(&issuedNonce{step: s, nonce: nonce})
	return nonce
}

// Valid reports whether nonce was issued, with this key, in now's step or the
// one before.
func (n *Nonces) Valid(nonce string, now time.Time) bool {
	if len(nonce) != nonceLen {
		return false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(nonce)
	if err != nil {
		return false
	}
	s := int64(binary.BigEndian.Uint64(raw[:8]))
	cur := n.stepAt(now)
	if s != cur && s != cur-1 {
		return false
	}
	return hmac.Equal([]byte(n.make(s)), []byte(nonce))
}
