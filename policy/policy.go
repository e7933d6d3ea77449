// Package policy decides whether verified claims meet what a route requires.
// It is pure: no I/O, no clock of its own, no knowledge of Envoy or JWT
// libraries. Metadata arrives as plain Go values, converted at the edge.
package policy

import (
	"strings"
	"time"
)

// Mode says whether a policy is enforced.
type Mode string

const (
	// ModeEnforce denies requests that do not meet the policy (the default).
	ModeEnforce Mode = "enforce"
	// ModeDryRun allows everything but reports what would have been denied.
	ModeDryRun Mode = "dry_run"
	// ModeOff skips the check entirely.
	ModeOff Mode = "off"
)

// Policy is what one request requires, after resolution.
type Policy struct {
	RequiredACR   string        // "" means no acr rule
	MaxAge        time.Duration // meaningful only when HasMaxAge
	HasMaxAge     bool
	MachineScopes []string
	Mode          Mode // "" means enforce
	Name          string
	// SenderConstraint is the binding the token must carry ("" for none).
	SenderConstraint SenderConstraint
	// ResourcePath is appended to the resource identifier (RFC 9728 §3.3):
	// "/mcp" makes it the URL an MCP client connects to. "" for none.
	ResourcePath string
	// RequiredScopes must all be carried by every token, human or machine.
	RequiredScopes []string
}

// NeedsStepUp reports whether the policy has a human step-up requirement.
func (p *Policy) NeedsStepUp() bool { return p.RequiredACR != "" || p.HasMaxAge }

// EffectiveMode returns the mode, defaulting to enforce.
func (p *Policy) EffectiveMode() Mode {
	if p.Mode == "" {
		return ModeEnforce
	}
	return p.Mode
}

// Field names, as they appear in every policy source.
const (
	FieldRequiredACR   = "required_acr"
	FieldMaxAge        = "max_age"
	FieldMachineScopes = "machine_scopes"
	FieldMode          = "mode"
	FieldName          = "name"
	// FieldSenderConstraint is sender_constraint (sender.go).
	FieldSenderConstraint = "sender_constraint"
	// FieldResourcePath and FieldRequiredScopes are resource.go's.
	FieldResourcePath   = "resource_path"
	FieldRequiredScopes = "required_scopes"
)

// Fields lists the policy fields in a stable order.
var Fields = []string{FieldRequiredACR, FieldMaxAge, FieldMachineScopes, FieldMode, FieldName, FieldSenderConstraint,
	FieldResourcePath, FieldRequiredScopes}

// Layer is what one source says about a policy. A field that is Set with a
// zero value was cleared on purpose (the source wrote ""), which lets a route
// loosen what policy.default requires.
type Layer struct {
	RequiredACR   Field[string]
	MaxAge        Field[time.Duration]
	MachineScopes Field[[]string]
	Mode          Field[Mode]
	Name          Field[string]
	// SenderConstraint holds only the package's constants (parseSenderConstraint).
	SenderConstraint Field[SenderConstraint]
	ResourcePath     Field[string]
	RequiredScopes   Field[[]string]
}

// Field is one optional policy value.
type Field[T any] struct {
	Set   bool
	Value T
}

func set[T any](v T) Field[T] { return Field[T]{Set: true, Value: v} }

// IsZero reports whether the layer says nothing at all.
func (l *Layer) IsZero() bool {
	return !l.RequiredACR.Set && !l.MaxAge.Set && !l.MachineScopes.Set && !l.Mode.Set && !l.Name.Set &&
		!l.SenderConstraint.Set && !l.ResourcePath.Set && !l.RequiredScopes.Set
}

// SetFields lists the fields this layer sets, in Fields order.
func (l *Layer) SetFields() []string {
	var out []string
	for _, f := range Fields {
		if l.isSet(f) {
			out = append(out, f)
		}
	}
	return out
}

func (l *Layer) isSet(field string) bool {
	switch field {
	case FieldRequiredACR:
		return l.RequiredACR.Set
	case FieldMaxAge:
		return l.MaxAge.Set
	case FieldMachineScopes:
		return l.MachineScopes.Set
	case FieldMode:
		return l.Mode.Set
	case FieldName:
		return l.Name.Set
	case FieldSenderConstraint:
		return l.SenderConstraint.Set
	case FieldResourcePath:
		return l.ResourcePath.Set
	case FieldRequiredScopes:
		return l.RequiredScopes.Set
	}
	return false
}

// String renders a policy compactly for logs and `check` output.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString("{")
	sep := ""
	add := func(k, v string) {
		b.WriteString(sep + k + "=" + v)
		sep = " "
	}
	if p.Name != "" {
		add(FieldName, p.Name)
	}
	add(FieldMode, string(p.EffectiveMode()))
	if p.RequiredACR != "" {
		add(FieldRequiredACR, p.RequiredACR)
	}
	if p.HasMaxAge {
		add(FieldMaxAge, p.MaxAge.String())
	}
	if len(p.MachineScopes) > 0 {
		add(FieldMachineScopes, strings.Join(p.MachineScopes, " "))
	}
	if p.SenderConstraint != SenderNone {
		add(FieldSenderConstraint, string(p.SenderConstraint))
	}
	if p.ResourcePath != "" {
		add(FieldResourcePath, p.ResourcePath)
	}
	if len(p.RequiredScopes) > 0 {
		add(FieldRequiredScopes, strings.Join(p.RequiredScopes, " "))
	}
	b.WriteString("}")
	return b.String()
}
