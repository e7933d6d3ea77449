package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFrom(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "b7cbc119826137f8ae3fa6494a683330c05ec14f"
	for _, c := range []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		want    string
	}{
		{"a version stamped at link time wins", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-x"}}, "v1.2.3"},
		{"go install module@version reports that version", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"a build in a git checkout reports its pseudo-version", "",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261204165600-b7cbc1198261+dirty"}, Settings: vcs(rev, "true")},
			"v0.0.0-20261204165600-b7cbc1198261+dirty"},
		{"a devel build with VCS info reports the revision", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "(devel) b7cbc1198261"},
		{"a modified devel build says dirty", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "(devel) b7cbc1198261+dirty"},
		{"without VCS info it is (devel)", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
		{"without build info it is (devel)", "", nil, "(devel)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := versionFrom(c.stamped, c.bi); got != c.want {
				t.Errorf("versionFrom = %q, want %q", got, c.want)
			}
		})
	}
}

// --version and the version command print the same line.
func TestVersionFlag(t *testing.T) {
	outputs := map[string]string{}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		outputs[args[0]] = out.String()
	}
	if outputs["--version"] != outputs["version"] || !strings.HasPrefix(outputs["version"], "stepup-authz ") {
		t.Errorf("--version printed %q, version printed %q", outputs["--version"], outputs["version"])
	}
}
