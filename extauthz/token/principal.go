package token

import (
	"context"
	"errors"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

// Principal is who a verified credential speaks for: the claims the policy decides
// on, and what keeps them valid. A Principal held by the cache is shared by every
// request that hits it and is never modified.
type Principal struct {
	Claims policy.Claims
	// Until is the first instant the principal may no longer be served from the
	// cache: a JWT's exp (without clock skew), an introspection answer's cache_ttl.
	Until time.Time
	// Hold, when set, is asked on every cache hit whether the principal still holds
	// for the request's credential (the key that verified it is still published,
	// Envoy vouched for it again); nil means only Until limits it.
	Hold Hold
}

// Hold is a verifier's revocation hook on a cached principal.
type Hold interface {
	// Holds reports whether the principal may be served for cred. It must be cheap
	// and must not block: it runs on every cache hit. With the zero Credential it
	// answers whether it may be served without anything from the request, and the
	// cache evicts entries that cannot first.
	Holds(cred Credential) bool
}

// Verifier is one way of knowing a token (local JWT verification; introspection
// joins it): the principal stage of the pipeline, asked only when the cache does not
// hold the credential. Each mechanism is one file with its own tests.
//
// Every stage takes the Credential by value: a pointer passed through an interface
// would move each request's credential to the heap.
type Verifier interface {
	// Verify returns the principal of cred, an *InvalidError when the token is not
	// acceptable, an error wrapping ErrKeysUnavailable when it cannot be judged now,
	// or ErrNotApplicable when this verifier does not know this kind of credential
	// (the pipeline then asks the next one). ctx bounds any I/O it waits on.
	Verify(ctx context.Context, cred Credential) (*Principal, error)
}

// ErrNotApplicable is returned by a Verifier that does not handle a credential; it
// never reaches the caller of the pipeline, which fails closed when no verifier
// applies.
var ErrNotApplicable = errors.New("token: this verifier does not apply to the credential")
