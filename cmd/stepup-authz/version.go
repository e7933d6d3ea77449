package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3" (make
// build and the image do, from git describe).
var version = ""

func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return versionFrom(version, bi)
}

// versionFrom picks the most precise version there is: the one stamped in at
// link time, else the main module's version from the build info (go install
// module@v1.2.3 records v1.2.3; since Go 1.24, go build and go install in a
// git checkout record a pseudo-version such as
// v0.0.0-20261204165600-b7cbc1198261, with +dirty for uncommitted changes),
// else the VCS revision when the go command recorded only that, else
// "(devel)" (a build with -buildvcs=false, or outside a repository).
func versionFrom(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi == nil {
		return "(devel)"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "+dirty"
	}
	return "(devel) " + rev
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version (also: stepup-authz --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "stepup-authz", versionString())
			return err
		},
	}
}
