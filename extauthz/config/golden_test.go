package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGolden validates every testdata/<case>.yaml and compares the problem
// lines (or "ok") with testdata/<case>.golden. Regenerate with
// `go test ./extauthz/config -update` and review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 25 {
		t.Fatalf("only %d golden cases", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			got := render(t, in)
			// Validation must be deterministic: maps are walked in sorted order.
			for range 3 {
				if again := render(t, in); again != got {
					t.Fatalf("unstable output:\n%s\nthen:\n%s", got, again)
				}
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s:\n--- got\n%s--- want\n%s", in, got, want)
			}
		})
	}
}

func render(t *testing.T, path string) string {
	t.Helper()
	cfg, err := Load(path, nil)
	if err == nil {
		out := "ok\n"
		for _, w := range cfg.Warnings() {
			out += "warning: " + w + "\n"
		}
		return out
	}
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("Load(%s) returned %T, not Problems: %v", path, err, err)
	}
	if len(probs) == 0 {
		t.Fatalf("Load(%s) returned empty Problems", path)
	}
	return probs.Error() + "\n"
}
