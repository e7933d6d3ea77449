package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

const minimal = `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return cfg
}

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("want Problems, got %T: %v", err, err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, minimal))
	want := &Config{
		Listen: Listen{GRPC: ":9191", Admin: ":9192", Codec: "fast"},
		Issuers: []Issuer{{
			Issuer:     "https://idp.example.com",
			Audiences:  []string{"https://api.example.com"},
			Algorithms: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"},
			LevelClaim: policy.LevelClaimACR,
			Challenge:  policy.ChallengeRFC9470,
		}},
		ClockSkew:           30 * time.Second,
		ACRLevels:           policy.Levels{"aal1", "aal2", "aal3"},
		MetadataNamespace:   "stepup",
		MachineTokens:       policy.MachineRFC9068,
		JWKSRefreshInterval: 5 * time.Minute,
		TokenCacheSize:      100000,
		Log:                 Log{Level: slog.LevelInfo},
		DPoP: DPoP{
			Algorithms:  []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"},
			ProofMaxAge: 60 * time.Second,
			ReplayStore: ReplayStore{Type: "memory", MaxEntries: 1000000},
		},
		MTLS: MTLS{CertificateFrom: "peer"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	// The default algorithm list is a copy: changing one config cannot
	// change the next.
	cfg.Issuers[0].Algorithms[0] = "changed"
	if token.DefaultAlgorithms()[0] != "RS256" {
		t.Error("Issuer.Algorithms aliases token.DefaultAlgorithms")
	}
	cfg.ACRLevels[0] = "changed"
	if policy.DefaultLevels[0] != "aal1" {
		t.Error("ACRLevels aliases policy.DefaultLevels")
	}
}

func TestNullMeansAbsent(t *testing.T) {
	cfg, err := Parse([]byte(minimal+"listen:\nclock_skew:\nlog: {level: }\npolicy:\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.GRPC != ":9191" || cfg.ClockSkew != 30*time.Second || cfg.Log.Level != slog.LevelInfo {
		t.Errorf("null did not select defaults: %+v", cfg)
	}
}

func TestContractConfig(t *testing.T) {
	cfg := mustLoad(t, filepath.Join("testdata", "full_valid.yaml"))
	if cfg.Listen.GRPC != "127.0.0.1:9191" || cfg.Listen.Admin != "127.0.0.1:9192" || cfg.Listen.TLS != nil {
		t.Errorf("listen = %+v", cfg.Listen)
	}
	iss := cfg.Issuers[0]
	if iss.JWKSURI != "https://idp.example.com/jwks.json" || iss.RequireTyp != "" || iss.CAFile != "" {
		t.Errorf("issuer = %+v", iss)
	}
	if !slices.Equal(iss.Algorithms, []string{"RS256", "ES256"}) {
		t.Errorf("algorithms = %v", iss.Algorithms)
	}
	rules := iss.Rules()
	wantRules := policy.IssuerRules{
		ACRAliases:         map[string]string{"urn:okta:loa:2fa:any": "aal2", "phrh": "aal3"},
		AMRLevels:          map[string]string{"mfa": "aal2", "hwk": "aal3"},
		ChallengeACRValues: map[string]string{"aal2": "urn:okta:loa:2fa:any"},
		LevelClaim:         policy.LevelClaimACR,
		Challenge:          policy.ChallengeRFC9470,
	}
	if !reflect.DeepEqual(rules, wantRules) {
		t.Errorf("Rules() = %+v, want %+v", rules, wantRules)
	}
	if !cfg.Default.IsZero() {
		t.Errorf("policy.default = %+v, want empty", cfg.Default)
	}
	if len(cfg.Routes) != 1 {
		t.Fatalf("routes = %+v", cfg.Routes)
	}
	r := cfg.Routes[0]
	if r.Name != "payout-destination" ||
		!slices.Equal(r.Match.Hosts, []string{"app.example.com"}) ||
		r.Match.PathPrefix != "/api/payout-destination" ||
		!slices.Equal(r.Match.Methods, []string{"POST"}) {
		t.Errorf("route = %+v", r)
	}
	p, _ := policy.Resolve(policy.Sourced{Source: policy.SourceConfigRoute, Layer: r.Layer})
	want := policy.Policy{RequiredACR: "aal2", MaxAge: 5 * time.Minute, HasMaxAge: true,
		MachineScopes: []string{"payouts:write"}, Name: "payout-destination"}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("route policy = %+v, want %+v", p, want)
	}
	s := cfg.Settings()
	if !slices.Equal(s.Levels, cfg.ACRLevels) || s.ClockSkew != 30*time.Second || s.MachineRule != policy.MachineRFC9068 {
		t.Errorf("Settings() = %+v", s)
	}
}

func TestEveryKeySet(t *testing.T) {
	cfg := mustLoad(t, filepath.Join("testdata", "loopback_valid.yaml"))
	if cfg.ClockSkew != 10*time.Second || cfg.JWKSRefreshInterval != time.Second ||
		cfg.TokenCacheSize != DefaultTokenCacheSize || cfg.MachineTokens != policy.MachineClientID ||
		cfg.MetadataNamespace != "example.stepup" || cfg.Log != (Log{Level: slog.LevelDebug, JSON: true}) ||
		!slices.Equal(cfg.ACRLevels, policy.Levels{"bronze", "silver", "gold"}) {
		t.Errorf("config = %+v", cfg)
	}
	rules := cfg.Issuers[1].Rules()
	if got := rules.ChallengeACR("silver"); got != "https://refeds.org/profile/mfa urn:okta:loa:2fa:any" {
		t.Errorf("ChallengeACR(silver) = %q", got)
	}
	if cfg.Issuers[1].CAFile != "testdata/tls/server.crt" || cfg.Issuers[1].RequireTyp != "at+jwt" {
		t.Errorf("issuer = %+v", cfg.Issuers[1])
	}
	def, _ := policy.Resolve(policy.Sourced{Layer: cfg.Default})
	if def.RequiredACR != "bronze" || def.Name != "fallback" || def.Mode != policy.ModeDryRun {
		t.Errorf("default = %+v", def)
	}

	names := make([]string, len(cfg.Routes))
	for i, r := range cfg.Routes {
		names[i] = r.Name
		if got := r.Layer.Name; !got.Set || got.Value != r.Name {
			t.Errorf("route %q: layer name = %+v", r.Name, got)
		}
	}
	if !slices.Equal(names, []string{"exact", "regex", "public", "everything-else"}) {
		t.Errorf("route order = %v", names)
	}

	exact := cfg.Routes[0]
	if exact.Match.Path != "/api/me" || !slices.Equal(exact.Match.Methods, []string{"GET", "HEAD"}) {
		t.Errorf("exact match = %+v", exact.Match)
	}
	// required_acr "" is set-and-cleared, which loosens policy.default.
	p, _ := policy.Resolve(policy.Sourced{Layer: exact.Layer}, policy.Sourced{Layer: cfg.Default})
	if p.RequiredACR != "" || !p.HasMaxAge || p.MaxAge != 300*time.Second {
		t.Errorf("exact policy = %+v", p)
	}

	re := cfg.Routes[1]
	if !slices.Equal(re.Match.Hosts, []string{"app.example.com", "::1"}) {
		t.Errorf("hosts = %q, want lower-cased without port", re.Match.Hosts)
	}
	for path, want := range map[string]bool{"/api/v2/x": true, "/api/v2/": true, "/x/api/v2/y": false, "/api/vx/y": false} {
		if got := re.Match.PathRegex.MatchString(path); got != want {
			t.Errorf("path_regex matches %q = %v, want %v (anchored to the whole path)", path, got, want)
		}
	}
	if !slices.Equal(re.Layer.MachineScopes.Value, []string{"a:b", "c:d"}) {
		t.Errorf("machine_scopes = %+v", re.Layer.MachineScopes)
	}
	route, err := policy.MatchRoute(cfg.Routes, policy.Request{Host: "APP.example.com:8443", Method: "get", Path: "/api/v1/things?x=1"})
	if err != nil || route == nil || route.Name != "regex" {
		t.Errorf("MatchRoute = %+v, %v; want regex", route, err)
	}
	route, _ = policy.MatchRoute(cfg.Routes, policy.Request{Host: "other", Method: "DELETE", Path: "/nothing"})
	if route == nil || route.Name != "everything-else" {
		t.Errorf("MatchRoute = %+v; want everything-else (no match = every request)", route)
	}
}

// TestVerbatimMapKeys is why the file is not read through viper: it would
// lower-case these keys and split them on dots.
func TestVerbatimMapKeys(t *testing.T) {
	path := writeConfig(t, `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["api"]
    acr_aliases:
      "https://refeds.org/profile/mfa": aal2
      "urn:okta:loa:2fa:any": aal2
      "Phrh.X": aal3
    amr_levels:
      "Hwk.Key": aal3
    challenge_acr_values:
      aal2: "https://refeds.org/profile/mfa"
`)
	cfg := mustLoad(t, path)
	iss := cfg.Issuers[0]
	wantAliases := map[string]string{
		"https://refeds.org/profile/mfa": "aal2",
		"urn:okta:loa:2fa:any":           "aal2",
		"Phrh.X":                         "aal3",
	}
	if !reflect.DeepEqual(iss.ACRAliases, wantAliases) {
		t.Errorf("acr_aliases = %q, want %q", iss.ACRAliases, wantAliases)
	}
	if !reflect.DeepEqual(iss.AMRLevels, map[string]string{"Hwk.Key": "aal3"}) {
		t.Errorf("amr_levels = %q", iss.AMRLevels)
	}
	rules := iss.Rules()
	for acr, want := range map[string]string{"Phrh.X": "aal3", "phrh.x": "", "https://refeds.org/profile/mfa": "aal2"} {
		got, _ := rules.Level(cfg.ACRLevels, &policy.Claims{ACR: acr, HasACR: true})
		if got != want {
			t.Errorf("Level(acr %q) = %q, want %q", acr, got, want)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	path := writeConfig(t, `
listen: { grpc: "127.0.0.1:9191" }
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["api"]
clock_skew: 30s
acr_levels: [aal1, aal2, aal3]
log: { level: info }
policy:
  default: { required_acr: aal3 }
`)
	t.Setenv("STEPUP_LISTEN_GRPC", "127.0.0.1:7000")
	t.Setenv("STEPUP_LISTEN_ADMIN", "127.0.0.1:7001")
	t.Setenv("STEPUP_CLOCK_SKEW", "45s")
	t.Setenv("STEPUP_ACR_LEVELS", "[bronze, silver]")
	t.Setenv("STEPUP_POLICY", "{default: {required_acr: silver, max_age: 60}}")
	t.Setenv("STEPUP_ISSUERS", `[{issuer: "https://env.example.com", audiences: [env-api], acr_aliases: {"urn:X:Y": silver}}]`)
	t.Setenv("STEPUP_METADATA_NAMESPACE", "env.ns")
	t.Setenv("STEPUP_MACHINE_TOKENS", "client_id")
	t.Setenv("STEPUP_JWKS_REFRESH_INTERVAL", "90s")
	t.Setenv("STEPUP_TOKEN_CACHE_SIZE", "42")
	t.Setenv("STEPUP_LOG_LEVEL", "warn")
	t.Setenv("STEPUP_LOG_FORMAT", "json")

	cfg, err := Load(path, NewViper())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.GRPC != "127.0.0.1:7000" || cfg.Listen.Admin != "127.0.0.1:7001" {
		t.Errorf("listen = %+v", cfg.Listen)
	}
	if cfg.ClockSkew != 45*time.Second {
		t.Errorf("clock_skew = %v", cfg.ClockSkew)
	}
	if !slices.Equal(cfg.ACRLevels, policy.Levels{"bronze", "silver"}) {
		t.Errorf("acr_levels = %v", cfg.ACRLevels)
	}
	def, _ := policy.Resolve(policy.Sourced{Layer: cfg.Default})
	if def.RequiredACR != "silver" || def.MaxAge != time.Minute {
		t.Errorf("policy.default = %+v", def)
	}
	if len(cfg.Issuers) != 1 || cfg.Issuers[0].Issuer != "https://env.example.com" ||
		cfg.Issuers[0].ACRAliases["urn:X:Y"] != "silver" {
		t.Errorf("issuers = %+v", cfg.Issuers)
	}
	if cfg.MetadataNamespace != "env.ns" || cfg.MachineTokens != policy.MachineClientID ||
		cfg.JWKSRefreshInterval != 90*time.Second || cfg.TokenCacheSize != 42 ||
		cfg.Log != (Log{Level: slog.LevelWarn, JSON: true}) {
		t.Errorf("config = %+v", cfg)
	}
}

func TestEnvOverrideTLS(t *testing.T) {
	path := writeConfig(t, minimal)
	t.Setenv("STEPUP_LISTEN_TLS_CERT_FILE", filepath.Join("testdata", "tls", "server.crt"))
	_, err := Load(path, NewViper())
	if got := problemsOf(t, err); !slices.Equal(got, Problems{"listen.tls.key_file: required when listen.tls is set"}) {
		t.Errorf("problems = %q", got)
	}
	t.Setenv("STEPUP_LISTEN_TLS_KEY_FILE", filepath.Join("testdata", "tls", "server.key"))
	t.Setenv("STEPUP_LISTEN_TLS_CLIENT_CA_FILE", filepath.Join("testdata", "tls", "server.crt"))
	cfg, err := Load(path, NewViper())
	if err != nil {
		t.Fatal(err)
	}
	want := &TLS{
		CertFile:     filepath.Join("testdata", "tls", "server.crt"),
		KeyFile:      filepath.Join("testdata", "tls", "server.key"),
		ClientCAFile: filepath.Join("testdata", "tls", "server.crt"),
	}
	if !reflect.DeepEqual(cfg.Listen.TLS, want) {
		t.Errorf("tls = %+v", cfg.Listen.TLS)
	}
}

// A bad value from the environment is reported against the variable that
// holds it, never against the config file (which may not have the key at all).
func TestEnvOverrideProblems(t *testing.T) {
	path := writeConfig(t, minimal+"policy:\n  default: { required_acr: aal9 }\n")
	t.Setenv("STEPUP_CLOCK_SKEW", "abc")
	t.Setenv("STEPUP_ACR_LEVELS", "[aal1")
	t.Setenv("STEPUP_TOKEN_CACHE_SIZE", "lots")
	t.Setenv("STEPUP_LISTEN_REFLECTION", "maybe")
	t.Setenv("STEPUP_ISSUERS", `[{issuer: "https://env.example.com", jwks_uri: "file:///jwks.json"}]`)
	_, err := Load(path, NewViper())
	got := problemsOf(t, err)
	want := Problems{
		// An override that cannot even be read comes first, then validation in schema order.
		`environment variable STEPUP_ACR_LEVELS: acr_levels: not valid YAML: yaml: line 1: did not find expected ',' or ']'`,
		`environment variable STEPUP_LISTEN_REFLECTION: listen.reflection: must be true or false, got string "maybe"`,
		`environment variable STEPUP_ISSUERS: issuers[0].jwks_uri: "file:///jwks.json" must use https (http is allowed only on loopback hosts: localhost, 127.0.0.0/8, ::1); keys are fetched from the identity provider over the network, not read from a file: URL`,
		`environment variable STEPUP_ISSUERS: issuers[0].audiences: required: the token's aud must contain one of them`,
		`environment variable STEPUP_CLOCK_SKEW: clock_skew: "abc" is not a duration like "30s"`,
		`environment variable STEPUP_TOKEN_CACHE_SIZE: token_cache_size: must be a whole number, got string "lots"`,
		`policy.default.required_acr: "aal9" is not one of acr_levels [aal1 aal2 aal3]`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Printed for the file, only the file's own problem carries its name.
	located := got.Located("serve.yaml")
	for i, line := range located {
		fromFile := strings.HasPrefix(line, "serve.yaml: ")
		if fromFile != (i == len(located)-1) {
			t.Errorf("Located line %d = %q", i, line)
		}
	}
	if located[len(located)-1] != "serve.yaml: "+want[len(want)-1] {
		t.Errorf("Located = %q", located[len(located)-1])
	}
}

// A bad value given as a flag is reported against the flag; the same key from
// the environment, which the flag beats, is not blamed.
func TestFlagOverrideProblems(t *testing.T) {
	path := writeConfig(t, minimal+"clock_skew: 30s\n")
	t.Setenv("STEPUP_CLOCK_SKEW", "45s")
	t.Setenv("STEPUP_LOG_LEVEL", "loud")
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.String("clock-skew", "", "")
	fs.String("log-level", "", "")
	v := NewViper()
	for key, name := range map[string]string{"clock_skew": "clock-skew", "log.level": "log-level"} {
		if err := v.BindPFlag(key, fs.Lookup(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Parse([]string{"--clock-skew=soon"}); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, v)
	got := problemsOf(t, err)
	want := Problems{
		`flag --clock-skew: clock_skew: "soon" is not a duration like "30s"`,
		`environment variable STEPUP_LOG_LEVEL: log.level: "loud" is not one of debug, info, warn, error`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReflectionSwitch(t *testing.T) {
	if cfg := mustLoad(t, writeConfig(t, minimal)); cfg.Listen.Reflection {
		t.Error("reflection is on by default")
	}
	if cfg := mustLoad(t, writeConfig(t, minimal+"listen: { reflection: true }\n")); !cfg.Listen.Reflection {
		t.Error("listen.reflection: true did not turn it on")
	}
	_, err := Load(writeConfig(t, minimal+"listen: { reflection: \"yes\" }\n"), nil)
	if got := problemsOf(t, err); !slices.Equal(got, Problems{`listen.reflection: must be true or false, got string "yes"`}) {
		t.Errorf("problems = %q", got)
	}
	t.Setenv("STEPUP_LISTEN_REFLECTION", "true")
	cfg, err := Load(writeConfig(t, minimal+"listen: { reflection: false }\n"), NewViper())
	if err != nil || !cfg.Listen.Reflection {
		t.Errorf("STEPUP_LISTEN_REFLECTION=true: %v, %+v", err, cfg)
	}
}

func TestEnvKeyNames(t *testing.T) {
	for _, key := range Keys {
		env := EnvVar(key)
		if strings.ContainsAny(env, ".") || env != strings.ToUpper(env) || !strings.HasPrefix(env, "STEPUP_") {
			t.Errorf("EnvVar(%q) = %q", key, env)
		}
		t.Setenv(env, "x")
		if v := NewViper(); !v.IsSet(key) || v.GetString(key) != "x" {
			t.Errorf("%s does not set %s", env, key)
		}
	}
	if got := EnvVar("listen.grpc"); got != "STEPUP_LISTEN_GRPC" {
		t.Errorf("EnvVar(listen.grpc) = %q", got)
	}
}

// TestKeysAreSchemaKeys keeps Keys in step with what the walker accepts.
func TestKeysAreSchemaKeys(t *testing.T) {
	schema := map[string][]string{"": topKeys, "listen": listenKeys, "listen.tls": tlsKeys, "log": logKeys, "tracing": tracingKeys,
		"dpop": dpopKeys, "dpop.replay_store": replayKeys, "mtls": mtlsKeys, "protected_resource": protectedResourceKeys}
	for _, key := range Keys {
		parent, leaf := "", key
		if i := strings.LastIndex(key, "."); i >= 0 {
			parent, leaf = key[:i], key[i+1:]
		}
		if !slices.Contains(schema[parent], leaf) {
			t.Errorf("Keys has %q, which the config does not know", key)
		}
	}
}

func TestFlagOverride(t *testing.T) {
	path := writeConfig(t, minimal+"listen: { grpc: \"127.0.0.1:9191\", admin: \"127.0.0.1:9192\" }\nclock_skew: 30s\ntoken_cache_size: 5\n")
	t.Setenv("STEPUP_LISTEN_GRPC", "127.0.0.1:7000")
	t.Setenv("STEPUP_CLOCK_SKEW", "45s")

	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.String("listen-grpc", ":9191", "")
	fs.String("listen-admin", ":9192", "")
	fs.Duration("clock-skew", 30*time.Second, "")
	fs.Int("token-cache-size", 100000, "")
	v := NewViper()
	for key, name := range map[string]string{
		"listen.grpc": "listen-grpc", "listen.admin": "listen-admin",
		"clock_skew": "clock-skew", "token_cache_size": "token-cache-size",
	} {
		if err := v.BindPFlag(key, fs.Lookup(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Parse([]string{"--listen-grpc=127.0.0.1:8000", "--clock-skew=1m", "--token-cache-size=9"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, v)
	if err != nil {
		t.Fatal(err)
	}
	// A flag that was given beats the environment, which beats the file.
	if cfg.Listen.GRPC != "127.0.0.1:8000" || cfg.ClockSkew != time.Minute || cfg.TokenCacheSize != 9 {
		t.Errorf("flags did not win: %+v", cfg)
	}
	// A flag that was not given does not override the file with its default.
	if cfg.Listen.Admin != "127.0.0.1:9192" {
		t.Errorf("listen.admin = %q; an unset flag's default must not override the file", cfg.Listen.Admin)
	}
}

func TestNoOverridesWithoutViper(t *testing.T) {
	t.Setenv("STEPUP_LISTEN_GRPC", "127.0.0.1:7000")
	cfg, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.GRPC != ":9191" {
		t.Errorf("listen.grpc = %q; env must apply only through a viper", cfg.Listen.GRPC)
	}
}

func TestProgrammaticOverride(t *testing.T) {
	v := NewViper()
	v.Set("acr_levels", []string{"low", "high"})
	v.Set("policy", map[string]any{"default": map[string]any{"required_acr": "high"}})
	cfg, err := Parse([]byte(minimal), v)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.ACRLevels, policy.Levels{"low", "high"}) || cfg.Default.RequiredACR.Value != "high" {
		t.Errorf("config = %+v", cfg)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	var p Problems
	if errors.As(err, &p) {
		t.Errorf("an unreadable file is not a validation problem: %v", err)
	}

	_, err = Parse([]byte("issuers: []\nclock_skew: x\n"), nil)
	p = problemsOf(t, err)
	if len(p) != 2 || err.Error() != p[0]+"\n"+p[1] {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestReportsEveryProblem(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "many_problems.yaml"), nil)
	if got := problemsOf(t, err); len(got) < 8 {
		t.Errorf("only %d problems: %q", len(got), got)
	}
}

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"requried_acr", "required_acr", 1}, {"tlss", "tls", 1}, {"", "abc", 3}, {"abc", "abc", 0}, {"ca", "abc", 3}} {
		if got := distance(c.a, c.b); got != c.want {
			t.Errorf("distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestListenCodec(t *testing.T) {
	for _, tc := range []struct {
		name, file, env, want string
	}{
		{"the default is the fast codec", minimal, "", "fast"},
		{"the file selects grpc-go's standard codec", minimal + "listen: { codec: proto }\n", "", "proto"},
		{"the environment overrides the file", minimal + "listen: { codec: fast }\n", "proto", "proto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(EnvVar("listen.codec"), tc.env)
			}
			cfg, err := Load(writeConfig(t, tc.file), NewViper())
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen.Codec != tc.want {
				t.Errorf("listen.codec = %q, want %q", cfg.Listen.Codec, tc.want)
			}
		})
	}
}

// TestFetchURLRule: validate accepts exactly the key URLs the key fetcher
// fetches from (token.FetchableURL): https anywhere, http on any loopback host.
func TestFetchURLRule(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://idp.example.com/jwks.json", true},
		{"http://localhost:8080/jwks.json", true},
		{"http://127.0.0.1:8080/jwks.json", true},
		{"http://127.0.0.2:8080/jwks.json", true},
		{"http://[::1]:8080/jwks.json", true},
		{"http://10.0.0.1/jwks.json", false},
		{"http://idp.example.com/jwks.json", false},
		{"http://localhost.example.com/jwks.json", false},
		{"http://127.0.0.1.nip.io/jwks.json", false},
		{"ftp://127.0.0.1/jwks.json", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			yaml := "issuers:\n  - issuer: \"https://idp.example.com\"\n    jwks_uri: \"" + tc.url + "\"\n    audiences: [api]\n"
			_, err := Parse([]byte(yaml), nil)
			if (err == nil) != tc.ok {
				t.Fatalf("validate: %v, want ok=%v", err, tc.ok)
			}
			u, perr := url.Parse(tc.url)
			if perr != nil {
				t.Fatal(perr)
			}
			if token.FetchableURL(u) != tc.ok {
				t.Fatalf("token.FetchableURL = %v, want %v", !tc.ok, tc.ok)
			}
		})
	}
}
