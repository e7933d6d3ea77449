package policy

// Sourced is a layer together with where it came from.
type Sourced struct {
	Source Source
	// Label refines the source for humans, e.g. the config route's name.
	Label string
	Layer Layer
}

func (s Sourced) String() string {
	if s.Label != "" {
		return string(s.Source) + "[" + s.Label + "]"
	}
	return string(s.Source)
}

// Provenance records, for each field that some source set, which source it
// came from (for `check` output and debug logs).
type Provenance map[string]string

// Resolve merges layers field by field, the first layer (most specific) that
// sets a field winning. A field set to its zero value stays cleared. The name
// is the exception: a config route's name, when one matched, wins.
func Resolve(layers ...Sourced) (Policy, Provenance) {
	prov := Provenance{}
	return merge(layers, prov), prov
}

// Merge is Resolve without the provenance, which costs allocations that the
// request path does not need.
func Merge(layers ...Sourced) Policy {
	return merge(layers, nil)
}

// merge is Resolve, recording provenance in prov when it is not nil.
func merge(layers []Sourced, prov Provenance) Policy {
	var p Policy
	var done [8]bool
	for _, s := range layers {
		l := &s.Layer
		if !done[0] && l.RequiredACR.Set {
			done[0] = true
			p.RequiredACR = l.RequiredACR.Value
			if prov != nil {
				prov[FieldRequiredACR] = s.String()
			}
		}
		if !done[1] && l.MaxAge.Set {
			done[1] = true
			p.MaxAge = l.MaxAge.Value
			// Cleared (noMaxAge) means no freshness rule; 0 is a rule: "just now".
			p.HasMaxAge = l.MaxAge.Value >= 0
			if !p.HasMaxAge {
				p.MaxAge = 0
			}
			if prov != nil {
				prov[FieldMaxAge] = s.String()
			}
		}
		if !done[2] && l.MachineScopes.Set {
			done[2] = true
			p.MachineScopes = l.MachineScopes.Value
			if prov != nil {
				prov[FieldMachineScopes] = s.String()
			}
		}
		if !done[3] && l.Mode.Set {
			done[3] = true
			p.Mode = l.Mode.Value
			if prov != nil {
				prov[FieldMode] = s.String()
			}
		}
		// The name is a label, not a requirement: a matching config route's
		// name wins over a more specific source's, because policy.routes
		// subdivide what Envoy routes to the server (a catch-all Envoy route
		// named "default" must not relabel the config route that decided).
		if l.Name.Set && (!done[4] || s.Source == SourceConfigRoute) {
			done[4] = true
			p.Name = l.Name.Value
			if prov != nil {
				prov[FieldName] = s.String()
			}
		}
		if !done[5] && l.SenderConstraint.Set {
			done[5] = true
			p.SenderConstraint = l.SenderConstraint.Value
			if prov != nil {
				prov[FieldSenderConstraint] = s.String()
			}
		}
		if !done[6] && l.ResourcePath.Set {
			done[6] = true
			p.ResourcePath = l.ResourcePath.Value
			if prov != nil {
				prov[FieldResourcePath] = s.String()
			}
		}
		if !done[7] && l.RequiredScopes.Set {
			done[7] = true
			p.RequiredScopes = l.RequiredScopes.Value
			if prov != nil {
				prov[FieldRequiredScopes] = s.String()
			}
		}
	}
	return p
}
