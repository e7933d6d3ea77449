package policy

import "slices"

// missingScopes returns the required scopes that have is missing.
func missingScopes(required, have []string) []string {
	var missing []string
	for _, s := range required {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
