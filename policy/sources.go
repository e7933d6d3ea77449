package policy

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Source names where a policy field came from, most specific first
// (CONTRACT.md, "Policy").
type Source string

const (
	SourceRouteMetadata     Source = "route_metadata"
	SourceContextExtensions Source = "context_extensions"
	SourceConfigRoute       Source = "policy.routes"
	SourceDefault           Source = "policy.default"
)

// FieldError is one policy value that cannot be understood.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Errors is every problem found in one policy source.
type Errors []*FieldError

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap exposes each problem to errors.Is/As.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, fe := range e {
		out[i] = fe
	}
	return out
}

// ParseMetadata reads a policy from route metadata (Envoy's
// filter_metadata[namespace], as a Struct converted to plain Go values) or
// from a policy in the config file. stepup-authz owns that namespace, so an
// unknown key is an error rather than something silently ignored.
func ParseMetadata(m map[string]any, levels Levels) (Layer, error) {
	var l Layer
	var errs Errors
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := l.setField(k, m[k], levels); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Layer{}, errs
	}
	return l, nil
}

// ParseContextExtensions reads a policy from Envoy's per-route
// context_extensions. Other filters and tools share that map, so keys that
// are not policy fields are ignored. Values are always strings there.
func ParseContextExtensions(m map[string]string, levels Levels) (Layer, error) {
	var l Layer
	var errs Errors
	for _, k := range Fields {
		v, ok := m[k]
		if !ok {
			continue
		}
		if err := l.setField(k, v, levels); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Layer{}, errs
	}
	return l, nil
}

func (l *Layer) setField(key string, v any, levels Levels) *FieldError {
	fail := func(format string, args ...any) *FieldError {
		return &FieldError{Field: key, Problem: fmt.Sprintf(format, args...)}
	}
	switch key {
	case FieldRequiredACR:
		s, ok := v.(string)
		if !ok {
			return fail("must be a string from acr_levels %s, got %s", levels, describe(v))
		}
		if s != "" && levels.Rank(s) < 0 {
			return fail("%q is not one of acr_levels %s", s, levels)
		}
		l.RequiredACR = set(s)
	case FieldMaxAge:
		d, err := parseMaxAge(v)
		if err != nil {
			return fail("%v", err)
		}
		l.MaxAge = d
	case FieldMachineScopes:
		scopes, err := parseScopes(v)
		if err != nil {
			return fail("%v", err)
		}
		l.MachineScopes = set(scopes)
	case FieldMode:
		s, ok := v.(string)
		if !ok {
			return fail("must be one of enforce, dry_run, off, got %s", describe(v))
		}
		switch Mode(s) {
		case "", ModeEnforce, ModeDryRun, ModeOff:
		default:
			return fail("%q is not one of enforce, dry_run, off", s)
		}
		l.Mode = set(Mode(s))
	case FieldName:
		s, ok := v.(string)
		if !ok {
			return fail("must be a string, got %s", describe(v))
		}
		if strings.IndexFunc(s, isControl) >= 0 {
			return fail("%q contains a control character", s)
		}
		l.Name = set(s)
	case FieldSenderConstraint:
		sc, err := parseSenderConstraint(v)
		if err != nil {
			return fail("%v", err)
		}
		l.SenderConstraint = set(sc)
	case FieldResourcePath:
		rp, err := parseResourcePath(v)
		if err != nil {
			return fail("%v", err)
		}
		l.ResourcePath = set(rp)
	case FieldRequiredScopes:
		scopes, err := parseScopes(v)
		if err != nil {
			return fail("%v", err)
		}
		l.RequiredScopes = set(scopes)
	default:
		return fail("unknown policy field (known: %s)", strings.Join(Fields, ", "))
	}
	return nil
}

// noMaxAge marks a max_age cleared by "", which differs from max_age 0.
const noMaxAge time.Duration = -1

// maxAgeLimit keeps seconds*1e9 inside time.Duration.
const maxAgeLimit = math.MaxInt64 / int64(time.Second)

// parseMaxAge accepts seconds as a number, a string of digits (as context
// extensions carry it) or a Go duration ("5m"); "" clears the field.
func parseMaxAge(v any) (Field[time.Duration], error) {
	var secs float64
	switch x := v.(type) {
	case float64:
		secs = x
	case int:
		secs = float64(x)
	case int64:
		secs = float64(x)
	case string:
		if x == "" {
			return set(noMaxAge), nil
		}
		if isDigits(x) {
			if len(x) > 18 {
				return Field[time.Duration]{}, fmt.Errorf("%q is too large", x)
			}
			var n int64
			for _, c := range x {
				n = n*10 + int64(c-'0')
			}
			secs = float64(n)
			break
		}
		d, err := time.ParseDuration(x)
		if err != nil {
			return Field[time.Duration]{}, fmt.Errorf("%q is neither seconds nor a duration like \"5m\" or \"90s\"", x)
		}
		if d < 0 {
			return Field[time.Duration]{}, fmt.Errorf("%q is negative", x)
		}
		if d%time.Second != 0 {
			return Field[time.Duration]{}, fmt.Errorf("%q is not a whole number of seconds (RFC 9470 max_age is in seconds)", x)
		}
		return set(d), nil
	default:
		return Field[time.Duration]{}, fmt.Errorf("must be seconds (300) or a duration (\"5m\"), got %s", describe(v))
	}
	switch {
	case math.IsNaN(secs) || math.IsInf(secs, 0):
		return Field[time.Duration]{}, fmt.Errorf("%v is not a number of seconds", secs)
	case secs < 0:
		return Field[time.Duration]{}, fmt.Errorf("%v is negative", secs)
	case secs != math.Trunc(secs):
		return Field[time.Duration]{}, fmt.Errorf("%v is not a whole number of seconds", secs)
	case secs > float64(maxAgeLimit):
		return Field[time.Duration]{}, fmt.Errorf("%v is too large", secs)
	}
	return set(time.Duration(secs) * time.Second), nil
}

// parseScopes accepts a list of strings or one space-separated string.
func parseScopes(v any) ([]string, error) {
	var scopes []string
	switch x := v.(type) {
	case string:
		scopes = strings.Fields(x)
	case []string:
		scopes = x
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("[%d] must be a string, got %s", i, describe(e))
			}
			scopes = append(scopes, s)
		}
	default:
		return nil, fmt.Errorf("must be a list of scopes or a space-separated string, got %s", describe(v))
	}
	for _, s := range scopes {
		if err := checkScopeToken(s); err != nil {
			return nil, err
		}
	}
	if len(scopes) == 0 {
		return nil, nil
	}
	return scopes, nil
}

// checkScopeToken applies RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ),
// which also keeps quotes and backslashes out of the WWW-Authenticate header.
func checkScopeToken(s string) error {
	if s == "" {
		return errors.New("a scope is empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return fmt.Errorf("scope %q has a character RFC 6749 does not allow (%q)", s, c)
		}
	}
	return nil
}

// checkHeaderSafe refuses what cannot sit inside a quoted header parameter.
func checkHeaderSafe(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return fmt.Errorf("contains %q, which cannot appear in a WWW-Authenticate parameter", c)
		}
	}
	return nil
}

// CheckHeaderSafe is checkHeaderSafe for config validation outside this package.
func CheckHeaderSafe(s string) error { return checkHeaderSafe(s) }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null (use \"\" to clear a field)"
	case string:
		return fmt.Sprintf("string %q", x)
	case float64:
		return fmt.Sprintf("number %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// CheckScopeToken is checkScopeToken for config validation outside this package.
func CheckScopeToken(s string) error { return checkScopeToken(s) }
