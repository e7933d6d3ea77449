package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/stepup-authz/stepup-authz/envoy"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/policy"
)

func newValidateCmd() *cobra.Command {
	var path string
	var envoyFiles []string
	cmd := &cobra.Command{
		Use:   "validate --config FILE [--envoy FILE ...]",
		Short: "Check a config file (and Envoy bootstraps); one line per problem, naming the field",
		Long: "validate exits 0 when everything is valid, else 1 with one line per problem.\n" +
			"With --envoy, each Envoy bootstrap (or Kubernetes ConfigMap embedding one) is checked\n" +
			"against the Envoy v3 API and against this config: every route's stepup policy must be\n" +
			"one the server understands.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := validate(path, envoyFiles, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if n > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d problem(s)", n)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "config file (YAML)")
	cmd.Flags().StringArrayVar(&envoyFiles, "envoy", nil, "Envoy bootstrap YAML to check too (repeatable)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// validate prints every problem and returns how many there were.
func validate(path string, envoyFiles []string, out, errw io.Writer) int {
	cfg, err := config.Load(path, config.NewViper())
	if err != nil {
		var problems config.Problems
		if !errors.As(err, &problems) {
			fmt.Fprintf(errw, "%s: %v\n", path, err)
			return 1
		}
		// A problem with an environment variable or flag names it, not the file.
		for _, p := range problems.Located(path) {
			fmt.Fprintln(errw, p)
		}
		return len(problems)
	}
	fmt.Fprintf(out, "%s: ok\n", path)
	// Warnings do not fail validation: the config is valid, but likely not
	// what its author means.
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(errw, "%s: warning: %s\n", path, w)
	}
	total := 0
	for _, f := range envoyFiles {
		problems, err := envoy.ValidateFile(f, envoyOptions(cfg))
		if err != nil {
			fmt.Fprintf(errw, "%s: %v\n", f, err)
			total++
			continue
		}
		n := 0
		for _, p := range problems {
			if p.Warning {
				fmt.Fprintf(errw, "%s: warning: %s\n", f, p)
				continue
			}
			fmt.Fprintf(errw, "%s: %s\n", f, p)
			n++
		}
		if n == 0 {
			fmt.Fprintf(out, "%s: ok\n", f)
		}
		total += n
	}
	return total
}

// envoyOptions checks Envoy-side policies with exactly the parser the server
// uses on the wire, against this config's acr levels and namespace.
func envoyOptions(cfg *config.Config) envoy.Options {
	return envoy.Options{
		Namespace: cfg.MetadataNamespace,
		CheckPolicy: func(m map[string]any) error {
			_, err := policy.ParseMetadata(m, cfg.ACRLevels)
			return err
		},
		WarnPolicy: func(m map[string]any) []string {
			l, err := policy.ParseMetadata(m, cfg.ACRLevels)
			if err != nil {
				return nil // CheckPolicy reported it
			}
			return cfg.LayerWarnings(&l)
		},
		WarnExtensions: func(m map[string]string) []string {
			l, err := policy.ParseContextExtensions(m, cfg.ACRLevels)
			if err != nil {
				return nil // CheckExtensions reported it
			}
			return cfg.LayerWarnings(&l)
		},
		CheckExtensions: func(m map[string]string) error {
			_, err := policy.ParseContextExtensions(m, cfg.ACRLevels)
			return err
		},
		ReadsXFCC: cfg.MTLS.CertificateFrom == config.CertificateFromXFCC,
	}
}
