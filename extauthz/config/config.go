// Package config reads the server's YAML config file, applies overrides from
// environment variables and flags, and validates it strictly: every problem is
// reported, one line each, naming the field it is about.
//
// The file is not read through viper: viper lower-cases map keys and splits
// them on dots, which would corrupt acr values such as
// "https://refeds.org/profile/mfa" used as keys of acr_aliases. The file is
// decoded with sigs.k8s.io/yaml (which refuses duplicate keys) and walked by
// hand; viper supplies only overrides (see Keys and NewViper).
//
// Rules beyond CONTRACT.md that this package decides:
//   - A key set to null (or left empty in YAML) is absent and takes its
//     default, except the policy fields, where null is an error because ""
//     (clear the field) and absent mean different things.
//   - clock_skew and jwks_refresh_interval take a Go duration ("30s") or a
//     whole number of seconds (30 or "30").
//   - token_cache_size 0 selects the default (token.DefaultCacheSize, 100000)
//     and a negative size is an error: the verified-principal cache cannot be
//     turned off. This is the one statement of that contract; token.Options
//     and the README refer to it.
//   - A route's match takes at most one of path, path_prefix and path_regex,
//     as Envoy's route match does (a oneof). A route without match conditions
//     matches every request, so any route after it is reported unreachable.
//   - hosts match exactly (no wildcards); hosts: [] and methods: [] are errors.
//   - log.level and log.format are case-insensitive.
//   - File paths (listen.tls.*, ca_file) are used as written: relative paths
//     resolve against the working directory, not the config file.
//   - At least one issuer is required.
package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"sigs.k8s.io/yaml"

	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

// Defaults applied when a key is absent.
const (
	DefaultGRPCAddr            = ":9191"
	DefaultAdminAddr           = ":9192"
	DefaultClockSkew           = 30 * time.Second
	DefaultMetadataNamespace   = "stepup"
	DefaultJWKSRefreshInterval = 5 * time.Minute
	MinJWKSRefreshInterval     = time.Second
	// DefaultTokenCacheSize is the token package's default, named here with
	// the other defaults of the file.
	DefaultTokenCacheSize = token.DefaultCacheSize
)

// Config is a validated configuration.
type Config struct {
	Listen    Listen
	Issuers   []Issuer
	ClockSkew time.Duration // clock_skew: leeway for exp, nbf, iat and auth_time
	// ACRLevels is the acr ladder, ascending strength (acr_levels).
	ACRLevels policy.Levels
	// MetadataNamespace is the route metadata namespace Envoy forwards.
	MetadataNamespace string
	// MachineTokens selects which tokens count as machine tokens (machine_tokens).
	MachineTokens policy.MachineRule
	// JWKSRefreshInterval is how often key sets are refreshed (jwks_refresh_interval).
	JWKSRefreshInterval time.Duration
	// TokenCacheSize is the number of verified tokens cached (token_cache_size);
	// never 0 after validation: 0 in the file selects the default.
	TokenCacheSize int
	Log            Log
	// Default is policy.default; Routes is policy.routes in order, first match wins.
	Default policy.Layer
	Routes  []policy.Route
	// Tracing is the OpenTelemetry setup (tracing:); read at start only.
	Tracing Tracing
	// DPoP and MTLS hold their defaults when the blocks are absent (dpop.go).
	DPoP DPoP
	MTLS MTLS
	// ProtectedResource is the protected_resource: block (resource.go); nil when absent.
	ProtectedResource *ProtectedResource
}

// Listen holds the listen addresses.
type Listen struct {
	GRPC  string // ext_authz and gRPC health
	Admin string // /healthz /readyz /metrics
	// Reflection turns on gRPC server reflection (grpc.reflection.v1), so
	// that grpcurl and similar tools can call the server without .proto files.
	// Off by default: only Envoy needs to reach the gRPC port.
	Reflection bool
	// Codec names the gRPC server's protobuf codec (wire.Names): wire.Fast,
	// the default, or wire.Proto, grpc-go's standard codec.
	Codec string
	// TLS, when set, serves gRPC over TLS (mutual TLS with ClientCAFile).
	TLS *TLS
}

// TLS names the files for the gRPC listener's TLS. The files were readable
// and parsed at validation time; the server loads them again when it starts.
type TLS struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string // optional: require and verify client certificates
}

// Log is the logging setup.
type Log struct {
	Level slog.Level
	JSON  bool
}

// Issuer is one trusted identity provider.
type Issuer struct {
	Issuer     string   // must equal the token's iss exactly
	JWKSURI    string   // "" means discovery from Issuer
	Audiences  []string // the token's aud must contain one of them
	Algorithms []string // never empty after validation (token.DefaultAlgorithms)
	// ACRAliases, AMRLevels and ChallengeACRValues are verbatim maps: their
	// keys keep case, dots, colons and slashes.
	ACRAliases         map[string]string
	AMRLevels          map[string]string
	ChallengeACRValues map[string]string
	RequireTyp         string
	CAFile             string // "" means the system roots only
	// JWTAuthnPayload is the payload_in_metadata name under which Envoy's
	// jwt_authn filter stores this issuer's verified payload; "" (the default)
	// means tokens are always verified by stepup-authz itself.
	JWTAuthnPayload string
	// Introspection, when set, is how this issuer is asked about opaque tokens
	// and lightweight JWTs (introspection.go).
	Introspection *Introspection
	// LevelClaim (level_claim) and Challenge (challenge) are the issuer's
	// dialect (dialect.go); never "" after validation.
	LevelClaim policy.LevelClaim
	Challenge  policy.Challenge
	// ClaimNames (claim_names) reads claims under this issuer's names
	// (token.RenamableClaims); nil when absent.
	ClaimNames map[string]string
}

// Rules returns how this issuer expresses authentication strength.
func (i *Issuer) Rules() policy.IssuerRules {
	return policy.IssuerRules{
		ACRAliases:         i.ACRAliases,
		AMRLevels:          i.AMRLevels,
		ChallengeACRValues: i.ChallengeACRValues,
		LevelClaim:         i.LevelClaim,
		Challenge:          i.Challenge,
	}
}

// Settings returns the server-wide inputs to every policy decision.
func (c *Config) Settings() policy.Settings {
	return policy.Settings{Levels: c.ACRLevels, ClockSkew: c.ClockSkew, MachineRule: c.MachineTokens}
}

// Problems is the validation error: one line per problem, each naming the
// field path ("policy.routes[2].required_acr: ...").
type Problems []string

// Error joins the problems, one per line.
func (p Problems) Error() string { return strings.Join(p, "\n") }

// Keys lists every key that an environment variable (STEPUP_<KEY>, upper
// case, dots as underscores) or a flag bound with viper can override.
// issuers, acr_levels and policy take YAML (or JSON) text; the others take
// the value itself.
var Keys = []string{
	"listen.grpc",
	"listen.admin",
	"listen.reflection",
	"listen.codec",
	"listen.tls.cert_file",
	"listen.tls.key_file",
	"listen.tls.client_ca_file",
	"issuers",
	"clock_skew",
	"acr_levels",
	"metadata_namespace",
	"machine_tokens",
	"jwks_refresh_interval",
	"token_cache_size",
	"log.level",
	"log.format",
	"policy",
	"tracing.enabled",
	"tracing.protocol",
	"tracing.endpoint",
	"tracing.sample_ratio",
	"tracing.include_subject",
	"dpop.algorithms",
	"dpop.proof_max_age",
	"dpop.nonce",
	"dpop.nonce_key_file",
	"dpop.replay_store.type",
	"dpop.replay_store.address",
	"dpop.replay_store.password_file",
	"dpop.replay_store.tls",
	"dpop.replay_store.max_entries",
	"mtls.certificate_from",
	"protected_resource.base_url",
	"protected_resource.authorization_servers",
	"protected_resource.scopes_supported",
	"protected_resource.resource_name",
}

// structuredKeys take YAML text as their override value.
var structuredKeys = map[string]bool{"issuers": true, "acr_levels": true, "policy": true, "dpop.algorithms": true,
	"protected_resource.authorization_servers": true, "protected_resource.scopes_supported": true}

// boolKeys take true or false (strconv.ParseBool's spellings) as their override value.
var boolKeys = map[string]bool{"listen.reflection": true, "tracing.enabled": true, "tracing.include_subject": true,
	"dpop.nonce": true, "dpop.replay_store.tls": true}

// EnvPrefix is the prefix of the environment variables that override keys.
const EnvPrefix = "STEPUP"

// EnvVar returns the environment variable that overrides key.
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Where a problem with an overridden value came from: a problem line starts
// with one of these (then the variable or flag name, then ": ") instead of a
// field path, so that it is never blamed on the config file.
const (
	envSource  = "environment variable "
	flagSource = "flag --"
)

// Overrides is a viper bound to the environment variable STEPUP_<KEY> for
// every key in Keys, plus the flags bound with BindPFlag. It remembers those
// flags so that a problem with an overridden value names the variable or flag
// it came from rather than the file.
type Overrides struct {
	*viper.Viper
	flags map[string]*pflag.Flag
}

// NewViper returns the overrides from the environment (STEPUP_<KEY> for every
// key in Keys). Bind flags with BindPFlag(key, flag); a flag that was set wins
// over the environment, which wins over the file.
func NewViper() *Overrides {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range Keys {
		_ = v.BindEnv(k) // only fails without a key
	}
	return &Overrides{Viper: v, flags: map[string]*pflag.Flag{}}
}

// BindPFlag makes flag f override key when it is set on the command line.
func (o *Overrides) BindPFlag(key string, f *pflag.Flag) error {
	if err := o.Viper.BindPFlag(key, f); err != nil {
		return err
	}
	o.flags[key] = f
	return nil
}

// source names where the override of key came from, in viper's order of
// precedence: a flag that was set, else the environment variable (viper
// ignores an empty one), else a value set in code.
func (o *Overrides) source(key string) string {
	if f := o.flags[key]; f != nil && f.Changed {
		return flagSource + f.Name
	}
	if os.Getenv(EnvVar(key)) != "" {
		return envSource + EnvVar(key)
	}
	return "override of " + key
}

// Located returns the problems as they should be printed for the config file
// named file: a problem with the file gets the file's name in front, one with
// an environment variable or flag already names it and is left as it is.
func (p Problems) Located(file string) Problems {
	out := make(Problems, len(p))
	for i, line := range p {
		if strings.HasPrefix(line, envSource) || strings.HasPrefix(line, flagSource) || strings.HasPrefix(line, "override of ") {
			out[i] = line
		} else {
			out[i] = file + ": " + line
		}
	}
	return out
}

// Load reads the file at path, applies overrides from v (environment and
// bound flags; v may be nil), validates it and returns the config. An invalid
// config returns Problems (print them with Located(path)); a file that cannot
// be read returns another error.
func Load(path string, v *Overrides) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, v)
}

// Parse is Load from bytes. With a nil v there are no overrides.
func Parse(data []byte, v *Overrides) (*Config, error) {
	root, probs := decode(data)
	if len(probs) > 0 {
		return nil, probs
	}
	w := &walker{}
	var sources map[string]string
	if v != nil {
		sources = applyOverrides(root, v, w)
	}
	cfg := build(root, w)
	if len(w.probs) > 0 {
		return nil, attribute(w.probs, sources)
	}
	return cfg, nil
}

// attribute puts the source in front of every problem about an overridden
// key (the key itself, or anything below it: issuers[0].audiences is about
// STEPUP_ISSUERS), so that `STEPUP_CLOCK_SKEW=abc` is reported as
// `environment variable STEPUP_CLOCK_SKEW: clock_skew: "abc" is not a duration`,
// never as a problem with the file.
func attribute(probs Problems, sources map[string]string) Problems {
	if len(sources) == 0 {
		return probs
	}
	out := make(Problems, len(probs))
	for i, line := range probs {
		out[i] = line
		best := ""
		for key := range sources {
			if len(key) > len(best) && strings.HasPrefix(line, key) && len(line) > len(key) && strings.ContainsRune(":.[", rune(line[len(key)])) {
				best = key
			}
		}
		if best != "" {
			out[i] = sources[best] + ": " + line
		}
	}
	return out
}

// decode turns YAML into plain JSON values (map[string]any, []any, string,
// float64, bool, nil), refusing duplicate keys.
func decode(data []byte) (map[string]any, Problems) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, yamlProblems(err)
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, Problems{"cannot decode the YAML: " + err.Error()}
	}
	switch x := doc.(type) {
	case nil:
		return nil, Problems{"the config is empty: expected a YAML mapping with at least \"issuers\""}
	case map[string]any:
		return x, nil
	default:
		return nil, Problems{"the config must be a YAML mapping of settings (" + strings.Join(topKeys, ", ") + "), got " + describe(doc)}
	}
}

// yamlProblems splits a YAML error into one line per problem.
func yamlProblems(err error) Problems {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	lines := strings.Split(msg, "\n")
	if len(lines) > 1 && strings.HasSuffix(strings.TrimSpace(lines[0]), "errors:") {
		var out Problems
		for _, l := range lines[1:] {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, "yaml: "+l)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return Problems{strings.Join(strings.Fields(msg), " ")}
}

// applyOverrides writes every key that v has set into the decoded file and
// returns where each of them came from.
func applyOverrides(root map[string]any, v *Overrides, w *walker) map[string]string {
	sources := map[string]string{}
	for _, key := range Keys {
		if !v.IsSet(key) {
			continue
		}
		sources[key] = v.source(key)
		val, err := overrideValue(v.Viper, key)
		if err != nil {
			w.add(key, "%v", err)
			continue
		}
		setPath(root, strings.Split(key, "."), val)
	}
	return sources
}

func overrideValue(v *viper.Viper, key string) (any, error) {
	raw := v.Get(key)
	s, isString := raw.(string)
	if structuredKeys[key] {
		if !isString {
			// Set programmatically (v.Set): normalise to JSON values.
			b, err := json.Marshal(raw)
			if err != nil {
				return nil, err
			}
			var out any
			err = json.Unmarshal(b, &out)
			return out, err
		}
		j, err := yaml.YAMLToJSONStrict([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("not valid YAML: %s", strings.Join(yamlProblems(err), "; "))
		}
		var out any
		err = json.Unmarshal(j, &out)
		return out, err
	}
	if !isString {
		s = v.GetString(key)
	}
	if key == "token_cache_size" {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return float64(n), nil
		}
	}
	if boolKeys[key] {
		if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
			return b, nil
		}
	}
	if key == "tracing.sample_ratio" {
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			return f, nil
		}
	}
	return s, nil
}

// setPath sets root[a][b]... = val, creating mappings on the way. Where the
// file holds something else than a mapping the override is dropped; the
// file's value is reported by validation.
func setPath(root map[string]any, path []string, val any) {
	m := root
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			if m[k] != nil {
				return
			}
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = val
}
