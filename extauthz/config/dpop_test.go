package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

func TestDPoPDefaultsWithoutBlocks(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, minimal))
	want := DPoP{
		Algorithms:  []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"},
		ProofMaxAge: time.Minute,
		ReplayStore: ReplayStore{Type: ReplayMemory, MaxEntries: DefaultReplayMaxEntries},
	}
	if !reflect.DeepEqual(cfg.DPoP, want) {
		t.Errorf("dpop = %+v, want %+v", cfg.DPoP, want)
	}
	if cfg.MTLS.CertificateFrom != CertificateFromPeer {
		t.Errorf("mtls.certificate_from = %q, want peer", cfg.MTLS.CertificateFrom)
	}
	// The default list is a copy: changing one config cannot change the next.
	cfg.DPoP.Algorithms[0] = "changed"
	if DefaultDPoPAlgorithms[0] != "ES256" {
		t.Error("DPoP.Algorithms aliases DefaultDPoPAlgorithms")
	}
}

func TestDPoPEveryKey(t *testing.T) {
	cfg := mustLoad(t, filepath.Join("testdata", "dpop_valid.yaml"))
	d := cfg.DPoP
	if !d.Nonce || d.NonceKeyFile != "testdata/secrets/nonce.key" || len(d.NonceKey) < MinNonceKeyBytes {
		t.Errorf("nonce = %v %q (%d key bytes)", d.Nonce, d.NonceKeyFile, len(d.NonceKey))
	}
	if d.NonceKey[len(d.NonceKey)-1] == '\n' {
		t.Error("nonce key keeps its trailing newline; replicas writing the file differently would disagree")
	}
	want := ReplayStore{Type: ReplayRedis, Address: "redis.stepup.svc:6379",
		PasswordFile: "testdata/secrets/redis.password", Password: "s3cret", TLS: true, MaxEntries: DefaultReplayMaxEntries}
	if d.ReplayStore != want {
		t.Errorf("replay_store = %+v, want %+v", d.ReplayStore, want)
	}
	if cfg.MTLS.CertificateFrom != CertificateFromXFCC {
		t.Errorf("mtls.certificate_from = %q", cfg.MTLS.CertificateFrom)
	}
	if sc := cfg.Routes[0].Layer.SenderConstraint; !sc.Set || sc.Value != policy.SenderDPoP {
		t.Errorf("policy.routes[0].sender_constraint = %+v", sc)
	}
	if sc := cfg.Default.SenderConstraint; !sc.Set || sc.Value != policy.SenderEither {
		t.Errorf("policy.default.sender_constraint = %+v", sc)
	}
}

func TestDPoPEnvOverrides(t *testing.T) {
	path := writeConfig(t, minimal+"dpop:\n  nonce: false\n")
	t.Setenv("STEPUP_DPOP_ALGORITHMS", "[EdDSA, ES256]")
	t.Setenv("STEPUP_DPOP_PROOF_MAX_AGE", "90s")
	t.Setenv("STEPUP_DPOP_NONCE", "true")
	t.Setenv("STEPUP_DPOP_NONCE_KEY_FILE", filepath.Join("testdata", "secrets", "nonce.key"))
	t.Setenv("STEPUP_DPOP_REPLAY_STORE_TYPE", "redis")
	t.Setenv("STEPUP_DPOP_REPLAY_STORE_ADDRESS", "127.0.0.1:6379")
	t.Setenv("STEPUP_DPOP_REPLAY_STORE_PASSWORD_FILE", filepath.Join("testdata", "secrets", "redis.password"))
	t.Setenv("STEPUP_DPOP_REPLAY_STORE_TLS", "false")
	t.Setenv("STEPUP_DPOP_REPLAY_STORE_MAX_ENTRIES", "10")
	t.Setenv("STEPUP_MTLS_CERTIFICATE_FROM", "xfcc")
	cfg, err := Load(path, NewViper())
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.DPoP
	if !slices.Equal(d.Algorithms, []string{"EdDSA", "ES256"}) || d.ProofMaxAge != 90*time.Second || !d.Nonce || d.NonceKey == nil {
		t.Errorf("dpop = %+v", d)
	}
	if r := d.ReplayStore; r.Type != ReplayRedis || r.Address != "127.0.0.1:6379" || r.Password != "s3cret" || r.TLS || r.MaxEntries != 10 {
		t.Errorf("replay_store = %+v", r)
	}
	if cfg.MTLS.CertificateFrom != CertificateFromXFCC {
		t.Errorf("mtls = %+v", cfg.MTLS)
	}
}

func TestDPoPEnvOverrideProblems(t *testing.T) {
	path := writeConfig(t, minimal)
	t.Setenv("STEPUP_DPOP_NONCE", "sometimes")
	t.Setenv("STEPUP_DPOP_REPLAY_STORE_MAX_ENTRIES", "many")
	_, err := Load(path, NewViper())
	got := problemsOf(t, err)
	want := Problems{
		`environment variable STEPUP_DPOP_NONCE: dpop.nonce: must be true or false, got string "sometimes"`,
		`environment variable STEPUP_DPOP_REPLAY_STORE_MAX_ENTRIES: dpop.replay_store.max_entries: must be a whole number, got string "many"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}
