package extauthz

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/replay"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Sender-constrained tokens (CONTRACT.md): the DPoP proof is part of the
// credential (verified before the token, RFC 9449 §4.3), the token's cnf is
// checked against the proof or the client certificate after it (the binding
// stage), and a proof's jti is used up last, once everything else held.

// senderState is one configuration's DPoP and mTLS settings. It always
// exists: a token bound to a key is held to its binding whatever the config
// says, with the dpop defaults when there is no dpop: block.
type senderState struct {
	proofs *token.ProofVerifier
	nonces *token.Nonces // nil: nonces off
	replay replay.Store
	// algs is dpop.algorithms space-separated, the algs challenge parameter.
	algs         string
	certFromXFCC bool
}

// errReplayStore wraps a replay store that could not say whether a proof was
// used: the request is refused with 503 (replay_store_unavailable).
var errReplayStore = errors.New("replay store")

func newSenderState(cfg *config.Config, stores *ReplayStores) (*senderState, error) {
	d := &cfg.DPoP
	st := &senderState{algs: strings.Join(d.Algorithms, " "), certFromXFCC: cfg.MTLS.CertificateFrom == config.CertificateFromXFCC}
	if d.Nonce {
		// A nonce lives one to two proof windows: long enough for a client to
		// use the one it was given, short enough to bound pre-made proofs.
		n, err := token.NewNonces(d.NonceKey, max(time.Second, d.ProofMaxAge.Truncate(time.Second)))
		if err != nil {
			return nil, fmt.Errorf("dpop.nonce_key_file: %w", err)
		}
		st.nonces = n
	}
	proofs, err := token.NewProofVerifier(token.ProofOptions{
		Algorithms: d.Algorithms, MaxAge: d.ProofMaxAge, ClockSkew: cfg.ClockSkew, Nonces: st.nonces,
	})
	if err != nil {
		return nil, err
	}
	st.proofs = proofs
	st.replay = stores.get(d.ReplayStore, proofs.Window())
	return st, nil
}

// verifyProof is the credential stage of a DPoP-scheme request: the proof in
// the DPoP header, judged against the request's method and URL and the token.
func (st *senderState) verifyProof(a *attributes, tok string, now time.Time) (*token.Proof, error) {
	if st == nil {
		// An Engine built without NewEngine: nothing to verify a proof with.
		return nil, &token.ProofError{Detail: token.ProofAlg, Err: errors.New("DPoP is not configured on this engine")}
	}
	url, err := token.RequestURL(a.forwardedProto, a.scheme, a.host, a.path)
	if err != nil {
		return nil, &token.ProofError{Detail: token.ProofHTU, Err: err}
	}
	return st.proofs.Verify(a.dpop, token.ProofRequest{Method: a.method, URL: url, AccessToken: tok}, now)
}

// clientCert says where the binding stage finds the request's client
// certificate: where mtls.certificate_from says; the XFCC header is never read
// otherwise.
func (st *senderState) clientCert(a *attributes) token.ClientCertificate {
	if st != nil && st.certFromXFCC {
		return token.ClientCertificate{XFCC: a.xfcc, FromXFCC: true}
	}
	return token.ClientCertificate{Peer: a.peerCert}
}

// use records the proof's jti, refusing a replay; answerBy (when set) bounds
// the wait on a shared store.
func (st *senderState) use(ctx context.Context, p *token.Proof, answerBy time.Time) error {
	if st == nil {
		return fmt.Errorf("%w: none configured", errReplayStore)
	}
	if !answerBy.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, answerBy)
		defer cancel()
	}
	first, err := st.replay.Use(ctx, p.ReplayKey(), st.proofs.Window())
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", errReplayStore, err)
	case !first:
		return &token.ProofError{Detail: token.ProofReplayed, Err: errors.New("this proof's jti was accepted before")}
	}
	return nil
}

// ReplayStores outlive reloads, so that a reload never forgets a used proof:
// one memory store per process, one Redis client per address and credentials.
// Build one with NewReplayStores and pass it to every NewEngine.
type ReplayStores struct {
	mu    sync.Mutex
	mem   *replay.Memory
	redis map[config.ReplayStore]*replay.Redis
}

// NewReplayStores returns empty stores.
func NewReplayStores() *ReplayStores { return &ReplayStores{} }

// Close closes the Redis clients.
func (r *ReplayStores) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.redis {
		_ = c.Close()
	}
	r.redis = nil
}

func (r *ReplayStores) get(rs config.ReplayStore, window time.Duration) replay.Store {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rs.Type == config.ReplayRedis {
		key := rs
		key.MaxEntries = 0
		if c, ok := r.redis[key]; ok {
			return c
		}
		if r.redis == nil {
			r.redis = map[config.ReplayStore]*replay.Redis{}
		}
		c := replay.NewRedis(replay.RedisOptions{Address: rs.Address, Password: rs.Password, TLS: rs.TLS})
		r.redis[key] = c
		return c
	}
	if r.mem == nil {
		r.mem = replay.NewMemory(window, rs.MaxEntries, nil)
	} else {
		r.mem.SetWindow(max(window, r.mem.Window()))
		r.mem.SetMax(rs.MaxEntries)
	}
	return r.mem
}

// outcome is what the response writer needs: the scheme, algs, and a current
// nonce for a DPoP request or a DPoP challenge when nonces are on.
func (st *senderState) outcome(scheme token.Scheme, d *policy.Decision, now time.Time) dpopOutcome {
	if st == nil {
		return dpopOutcome{scheme: scheme}
	}
	o := dpopOutcome{scheme: scheme, algs: st.algs}
	if st.nonces == nil {
		return o
	}
	switch {
	case scheme == token.SchemeDPoP,
		(d.Reason == policy.ReasonSenderConstraintMissing || d.Reason == policy.ReasonTokenMissing) &&
			(d.Policy.SenderConstraint == policy.SenderDPoP || d.Policy.SenderConstraint == policy.SenderEither):
		o.nonce = st.nonces.Issue(now)
	}
	return o
}
