//go:build serveronly

package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// The container image is built with -tags serveronly (Dockerfile, make build):
// dev runs a token-minting identity provider and bench a load generator, and
// neither belongs next to the server in production. Their commands stay, so
// that running them says why they do nothing rather than "unknown command".

func newDevCmd() *cobra.Command {
	return notBuiltIn("dev", "Run the playground (not built into this binary)")
}

func newBenchCmd() *cobra.Command {
	return notBuiltIn("bench", "Measure a stepup-authz under load (not built into this binary)")
}

// notBuiltIn takes any arguments and flags, so `dev token --acr aal2` gets the
// same answer as `dev`, and exits 2 like every other usage error.
func notBuiltIn(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return &exitError{code: 2, err: fmt.Errorf("stepup-authz: %q is not built into this binary (built with -tags serveronly); use a full build: go install ./cmd/stepup-authz", name)}
		},
	}
}
