// Package replay remembers the DPoP proofs a server has accepted, so that a
// proof is accepted once (RFC 9449 §11.1). A proof is identified by a 32-byte
// key (the hash of its jti and the key that signed it) and remembered for a
// window at least as long as any replica could still accept it.
//
// Two stores: Memory, per replica and bounded; Redis, shared by replicas.
// Both fail closed: an error from Use means the proof must be refused (503),
// never that it may be accepted.
package replay

import (
	"context"
	"errors"
	"time"
)

// Store remembers used proof keys.
type Store interface {
	// Use records key as used for at least ttl. first is true when key was not
	// in the store: the proof is accepted. first is false for a replay. An
	// error means the store cannot tell, and the proof must be refused.
	Use(ctx context.Context, key [32]byte, ttl time.Duration) (first bool, err error)
}

// ErrFull is returned by Memory.Use when it holds its maximum of keys that
// have not yet aged out. Forgetting one early could re-accept a replay, so
// new proofs are refused until old keys age out.
var ErrFull = errors.New("replay store full: too many proofs within the proof window")

// ErrUnavailable wraps every error of the Redis store.
var ErrUnavailable = errors.New("replay store unavailable")
