// Command stepup-authz is the step-up authentication server for Envoy's
// ext_authz filter. Keep main thin: parse flags, load config, wire, run.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(os.Stderr, ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "stepup-authz:", err)
		os.Exit(2)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "stepup-authz",
		Short: "Step-up authentication for Envoy's ext_authz filter",
		Long: "stepup-authz verifies bearer JWTs for Envoy and Istio and answers\n" +
			"401 step_up_required (RFC 9470) when a route needs a stronger or more recent sign-in.",
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what `stepup-authz version` prints.
		Version: versionString(),
	}
	root.SetVersionTemplate("stepup-authz {{.Version}}\n")
	root.AddCommand(newServeCmd(), newValidateCmd(), newCheckCmd(), newDevCmd(), newVersionCmd(), newBenchCmd())
	return root
}
