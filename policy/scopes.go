package policy

import "slices"

// hasAllScopes reports whether have contains every required scope. It does
// not allocate: it runs inside Decide on every machine-token Check.
func hasAllScopes(required, have []string) bool {
	for _, s := range required {
		if !slices.Contains(have, s) {
			return false
		}
	}
	return true
}
