package config

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
)

// The dpop: and mtls: blocks (CONTRACT.md, "Sender-constrained tokens").
//
// Rules beyond CONTRACT.md that this file decides:
//   - dpop.nonce_key_file must hold at least MinNonceKeyBytes bytes (after a
//     trailing newline is trimmed): the key is an HMAC key, and a short one can
//     be guessed. It is read when the config is loaded, so a new key takes
//     effect with the next config reload.
//   - dpop.replay_store.max_entries (memory only) bounds the used-proof ids a
//     replica remembers; 0 selects DefaultReplayMaxEntries. When it is full,
//     new proofs are refused with 503 (replay_store_unavailable) until old ids
//     age out: the store never forgets an id early.
//   - dpop.replay_store.password_file is read like nonce_key_file; an empty
//     file means no password.
//   - mtls.certificate_from is peer (the default) or xfcc.

// Defaults of the dpop: block, which apply also when the block is absent: a
// token bound to a key is held to its binding whatever the config says.
const (
	DefaultProofMaxAge      = 60 * time.Second
	DefaultReplayMaxEntries = 1_000_000
	MinNonceKeyBytes        = 32
	// ReplayMemory and ReplayRedis are the dpop.replay_store.type values.
	ReplayMemory = "memory"
	ReplayRedis  = "redis"
	// CertificateFromPeer and CertificateFromXFCC are the mtls.certificate_from values.
	CertificateFromPeer = "peer"
	CertificateFromXFCC = "xfcc"
)

// DefaultDPoPAlgorithms is dpop.algorithms when absent. Every name it may hold
// is one of token.DefaultAlgorithms; none and HS* are refused.
var DefaultDPoPAlgorithms = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// DPoP is the dpop: block (RFC 9449).
type DPoP struct {
	// Algorithms are the proof algorithms accepted, in config order (the
	// order of the algs challenge parameter).
	Algorithms []string
	// ProofMaxAge bounds how old a proof's iat may be (plus clock_skew).
	ProofMaxAge time.Duration
	// Nonce requires server nonces keyed by NonceKey.
	Nonce        bool
	NonceKeyFile string
	// NonceKey is the content of NonceKeyFile, trailing newline trimmed;
	// nil when the file is not set.
	NonceKey    []byte
	ReplayStore ReplayStore
}

// ReplayStore is dpop.replay_store: where used proof ids are remembered.
type ReplayStore struct {
	Type         string // ReplayMemory or ReplayRedis
	Address      string // redis: host:port
	PasswordFile string
	// Password is the content of PasswordFile, trailing newline trimmed.
	Password string
	TLS      bool
	// MaxEntries bounds the memory store (never 0 after validation).
	MaxEntries int
}

// MTLS is the mtls: block (RFC 8705).
type MTLS struct {
	// CertificateFrom is where the client certificate is read:
	// CertificateFromPeer (attributes.source.certificate) or
	// CertificateFromXFCC (the x-forwarded-client-cert header's Cert=).
	CertificateFrom string
}

var (
	dpopKeys   = []string{"algorithms", "proof_max_age", "nonce", "nonce_key_file", "replay_store"}
	replayKeys = []string{"type", "address", "password_file", "tls", "max_entries"}
	mtlsKeys   = []string{"certificate_from"}
)

// DefaultDPoP returns the dpop: block's defaults.
func DefaultDPoP() DPoP {
	return DPoP{
		Algorithms:  slices.Clone(DefaultDPoPAlgorithms),
		ProofMaxAge: DefaultProofMaxAge,
		ReplayStore: ReplayStore{Type: ReplayMemory, MaxEntries: DefaultReplayMaxEntries},
	}
}

// DefaultMTLS returns the mtls: block's defaults.
func DefaultMTLS() MTLS { return MTLS{CertificateFrom: CertificateFromPeer} }

func (b *builder) dpop(v any) DPoP {
	d := DefaultDPoP()
	if v == nil {
		return d
	}
	m := b.object("dpop", v, dpopKeys)
	if m == nil {
		return d
	}
	if x := m["algorithms"]; x != nil {
		if algs, ok := b.strList("dpop.algorithms", x); ok {
			if len(algs) == 0 {
				b.add("dpop.algorithms", "must name at least one algorithm, or be left out to allow %s", strings.Join(DefaultDPoPAlgorithms, " "))
			} else {
				d.Algorithms = algs
			}
			for j, a := range algs {
				b.dpopAlgorithm(index("dpop.algorithms", j), a)
				if slices.Index(algs, a) < j {
					b.add(index("dpop.algorithms", j), "%q is listed twice", a)
				}
			}
		}
	}
	if x := m["proof_max_age"]; x != nil {
		if dur, ok := b.duration("dpop.proof_max_age", x); ok {
			if dur <= 0 {
				b.add("dpop.proof_max_age", "%s must be positive (default %s)", dur, DefaultProofMaxAge)
			} else {
				d.ProofMaxAge = dur
			}
		}
	}
	if x := m["nonce"]; x != nil {
		d.Nonce = b.boolean("dpop.nonce", x)
	}
	if x := m["nonce_key_file"]; x != nil {
		d.NonceKeyFile, _ = b.str("dpop.nonce_key_file", x)
	}
	switch {
	case d.NonceKeyFile != "":
		if key, ok := b.secretFile("dpop.nonce_key_file", d.NonceKeyFile); ok {
			if len(key) < MinNonceKeyBytes {
				b.add("dpop.nonce_key_file", "%q holds %d bytes; a nonce key needs at least %d random bytes (e.g. `head -c 48 /dev/urandom | base64 > FILE`)",
					d.NonceKeyFile, len(key), MinNonceKeyBytes)
			} else {
				d.NonceKey = key
			}
		}
	case d.Nonce:
		b.add("dpop.nonce_key_file", "required when dpop.nonce is true: a file of at least %d random bytes, the same on every replica", MinNonceKeyBytes)
	}
	if x := m["replay_store"]; x != nil {
		d.ReplayStore = b.replayStore(x)
	}
	return d
}

func (b *builder) replayStore(v any) ReplayStore {
	const p = "dpop.replay_store"
	r := ReplayStore{Type: ReplayMemory, MaxEntries: DefaultReplayMaxEntries}
	m := b.object(p, v, replayKeys)
	if m == nil {
		return r
	}
	if x := m["type"]; x != nil {
		if s, ok := b.str(p+".type", x); ok {
			switch s {
			case ReplayMemory, ReplayRedis:
				r.Type = s
			default:
				b.add(p+".type", "%q is not one of memory, redis", s)
			}
		}
	}
	if x := m["address"]; x != nil {
		r.Address, _ = b.str(p+".address", x)
	}
	if x := m["password_file"]; x != nil {
		r.PasswordFile, _ = b.str(p+".password_file", x)
	}
	if x := m["tls"]; x != nil {
		r.TLS = b.boolean(p+".tls", x)
	}
	if x := m["max_entries"]; x != nil {
		r.MaxEntries = b.count(p+".max_entries", x, DefaultReplayMaxEntries)
	}
	if r.Type == ReplayRedis {
		if r.Address == "" {
			b.add(p+".address", "required when type is redis: the host:port of the Redis shared by every replica")
		} else if _, port, err := net.SplitHostPort(r.Address); err != nil || port == "" {
			b.add(p+".address", "%q is not a host:port address like \"redis.example.svc:6379\"", r.Address)
		}
		if r.PasswordFile != "" {
			if pw, ok := b.secretFile(p+".password_file", r.PasswordFile); ok {
				r.Password = string(pw)
			}
		}
	} else {
		for _, k := range []string{"address", "password_file"} {
			if s, _ := m[k].(string); s != "" {
				b.add(p+"."+k, "applies only to type redis (type is %s)", r.Type)
			}
		}
		if r.TLS {
			b.add(p+".tls", "applies only to type redis (type is %s)", r.Type)
		}
	}
	return r
}

func (b *builder) mtls(v any) MTLS {
	t := DefaultMTLS()
	if v == nil {
		return t
	}
	m := b.object("mtls", v, mtlsKeys)
	if m == nil {
		return t
	}
	if x := m["certificate_from"]; x != nil {
		if s, ok := b.str("mtls.certificate_from", x); ok {
			switch s {
			case CertificateFromPeer, CertificateFromXFCC:
				t.CertificateFrom = s
			default:
				b.add("mtls.certificate_from", "%q is not one of peer (attributes.source.certificate, Envoy's include_peer_certificate), xfcc (the x-forwarded-client-cert header's Cert=)", s)
			}
		}
	}
	return t
}

// dpopAlgorithm refuses what RFC 9449 §4.3 refuses (none, MAC algorithms)
// and names outside the supported asymmetric ones.
func (b *builder) dpopAlgorithm(path, a string) {
	all := token.DefaultAlgorithms()
	allowed := strings.Join(all, " ")
	switch up := strings.ToUpper(a); {
	case slices.Contains(all, a):
	case strings.HasPrefix(up, "HS"):
		b.add(path, "%q is refused: a proof must be signed with the private key of its public jwk (RFC 9449 §4.3), never a shared secret; use one of %s", a, allowed)
	case up == "NONE":
		b.add(path, "%q is refused: an unsigned proof proves nothing (RFC 9449 §4.3); use one of %s", a, allowed)
	default:
		b.algorithm(path, a)
	}
}

// secretFile reads a file holding a secret, trimming one trailing newline
// (CRLF included) as `echo` and editors leave it.
func (b *builder) secretFile(path, name string) ([]byte, bool) {
	data, err := readFile(name)
	if err != nil {
		b.add(path, "%v", err)
		return nil, false
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	return data, true
}

// count reads a non-negative whole number, 0 selecting def.
func (w *walker) count(path string, v any, def int) int {
	f, ok := v.(float64)
	if !ok {
		if s, isString := v.(string); isString {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				f, ok = float64(n), true
			}
		}
	}
	if !ok {
		w.typeErr(path, "a whole number", v)
		return def
	}
	switch {
	case f != float64(int64(f)) || f > 1<<40:
		w.add(path, "%s is not a whole number below 2^40", formatNumber(f))
	case f < 0:
		w.add(path, "%s is negative (0 selects the default, %d)", formatNumber(f), def)
	case f == 0:
	default:
		return int(f)
	}
	return def
}
