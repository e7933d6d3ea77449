package e2e

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerOnlyBuild builds stepup-authz as the container image does
// (-tags serveronly, stripped) and checks that the playground's token-minting
// identity provider and the load generator are not in it: dev and bench say
// so and exit 2, their packages and the dev page are absent from the binary,
// and the server's own commands still work.
func TestServerOnlyBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stepup-authz")
	build := exec.Command("go", "build", "-tags", "serveronly", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../cmd/stepup-authz")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags serveronly: %v\n%s", err, out)
	}

	// With a flag the real commands refuse at once first: were dev or bench
	// compiled in after all, the bare commands below would start and not return.
	for _, args := range [][]string{{"dev", "--no-such-flag"}, {"bench", "--no-such-flag"}, {"dev"}, {"dev", "token", "--acr", "aal2"}, {"dev", "--help"}, {"bench"}, {"bench", "floor"}} {
		code, stdout, stderr := runBinary(t, bin, args...)
		want := `stepup-authz: "` + args[0] + `" is not built into this binary (built with -tags serveronly); use a full build: go install ./cmd/stepup-authz`
		if code != 2 || strings.TrimSpace(stderr) != want || stdout != "" {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, stdout, stderr, want)
		}
	}

	cfg := writeFile(t, "config.yaml", `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
`)
	if code, stdout, stderr := runBinary(t, bin, "validate", "--config", cfg, "--envoy", "../envoy/envoy.yaml"); code != 0 {
		t.Errorf("validate: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, _ := runBinary(t, bin, "version"); code != 0 || !strings.HasPrefix(stdout, "stepup-authz ") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}

	// The full build (TestMain's) is the control: what is looked for here is
	// there, so its absence from the server-only build means something.
	const mod = "github.com/stepup-authz/stepup-authz/"
	devOnly := []string{mod + "internal/devidp", mod + "internal/bench"}
	page, err := os.ReadFile("../cmd/stepup-authz/devui/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		bin     string
		present bool
	}{{"the full build", binary, true}, {"the server-only build", bin, false}} {
		pkgs := binaryPackages(t, c.bin)
		for _, want := range []string{mod + "policy", mod + "extauthz"} {
			if !hasPackage(pkgs, want) {
				t.Errorf("%s: no %s found in its function table; the package check below would prove nothing", c.name, want)
			}
		}
		for _, p := range devOnly {
			if got := hasPackage(pkgs, p); got != c.present {
				t.Errorf("%s: %s compiled in = %v, want %v", c.name, p, got, c.present)
			}
		}
		exe, err := os.ReadFile(c.bin)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(exe, page); got != c.present {
			t.Errorf("%s: the dev page (devui/index.html) embedded = %v, want %v", c.name, got, c.present)
		}
	}
}

// binaryPackages lists the packages with functions in a Go ELF binary, from
// .gopclntab, which stripping (-s -w) keeps: the runtime needs it.
func binaryPackages(t *testing.T, file string) []string {
	t.Helper()
	f, err := elf.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		t.Fatalf("%s: no .gopclntab or .text section", file)
	}
	data, err := pcln.Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	seen := map[string]bool{}
	var pkgs []string
	for _, fn := range tab.Funcs {
		if p := fn.PackageName(); !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

// hasPackage reports p or anything under it (a method's package name can
// carry the interface it implements as a suffix).
func hasPackage(pkgs []string, p string) bool {
	for _, q := range pkgs {
		if q == p || strings.HasPrefix(q, p+"/") || strings.HasPrefix(q, p+".") {
			return true
		}
	}
	return false
}

// runBinary executes bin and returns its exit code, stdout and stderr.
func runBinary(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("run %s %v: %v", bin, args, err)
	return -1, "", ""
}
