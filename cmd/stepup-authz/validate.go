package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
)

func newValidateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a config file; one line per problem, naming the field",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := config.Load(path, config.NewViper()); err != nil {
				var problems config.Problems
				if errors.As(err, &problems) {
					for _, p := range problems {
						fmt.Fprintln(cmd.ErrOrStderr(), p)
					}
					return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", path, len(problems))}
				}
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "config file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
