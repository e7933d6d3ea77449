package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run executes the binary and returns its exit code, stdout and stderr.
func run(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	default:
		t.Fatalf("run %v: %v", args, err)
		return -1, "", ""
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateNamesEveryProblem(t *testing.T) {
	bad := writeFile(t, "bad.yaml", `
issuers:
  - issuer: "https://idp.example.com"
    jwks_uri: "http://idp.example.com/jwks.json"
policy:
  routes:
    - name: a
      match: { path_prefix: /a }
      required_acr: aal9
    - name: b
      match: { path_prefix: /b }
      requried_acr: aal2
`)
	code, _, stderr := run(t, nil, "validate", "--config", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		`issuers[0].audiences`,
		`issuers[0].jwks_uri`,
		`policy.routes[0].required_acr: "aal9" is not one of acr_levels [aal1 aal2 aal3]`,
		`policy.routes[1].requried_acr`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr)
		}
	}

	good := writeFile(t, "good.yaml", `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
    acr_aliases: { "https://refeds.org/profile/mfa": aal2 }
`)
	if code, stdout, stderr := run(t, nil, "validate", "--config", good); code != 0 || !strings.Contains(stdout, "ok") {
		t.Fatalf("valid config: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestCheckCommand(t *testing.T) {
	idp := startIdP(t)
	cfg := writeFile(t, "config.yaml", strings.ReplaceAll(`
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
policy:
  default: { required_acr: aal1 }
  routes:
    - name: payout-destination
      match: { path_prefix: /api/payout-destination, methods: [POST] }
      required_acr: aal2
`, "{{ISSUER}}", idp.Issuer))
	aal1 := userToken(t, idp, "aal1", time.Minute)

	t.Run("deny exits 1 and shows the policy's sources and the response", func(t *testing.T) {
		code, out, stderr := run(t, nil, "check", "--config", cfg, "--token", aal1, "--method", "POST",
			"--path", "/api/payout-destination", "--metadata", `{"max_age": 300}`)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
		}
		for _, want := range []string{
			"decision: deny", "reason:   acr_too_low",
			"required_acr    from policy.routes[payout-destination]",
			"max_age         from route_metadata",
			"HTTP 401",
			`www-authenticate: Bearer error="insufficient_user_authentication"`,
			`{"error":"step_up_required","required_acr":"aal2","max_age":300}`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("allow exits 0 and shows the upstream headers", func(t *testing.T) {
		code, out, stderr := run(t, nil, "check", "--config", cfg, "--token", aal1, "--method", "GET", "--path", "/home")
		if code != 0 {
			t.Fatalf("exit %d, want 0\n%s%s", code, out, stderr)
		}
		for _, want := range []string{"decision: allow", "required_acr    from policy.default", "set upstream header x-stepup-sub: user-42"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("a config that cannot be loaded exits 2", func(t *testing.T) {
		code, out, stderr := run(t, nil, "check", "--config", filepath.Join(t.TempDir(), "missing.yaml"), "--path", "/")
		if code != 2 {
			t.Fatalf("exit %d, want 2\n%s%s", code, out, stderr)
		}
	})
	t.Run("malformed --metadata exits 2", func(t *testing.T) {
		code, _, stderr := run(t, nil, "check", "--config", cfg, "--path", "/", "--metadata", "{not json")
		if code != 2 || !strings.Contains(stderr, "--metadata") {
			t.Fatalf("exit %d, stderr %q; want 2 naming --metadata", code, stderr)
		}
	})
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "stepup-authz ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	if code, flagOut, stderr := run(t, nil, "--version"); code != 0 || flagOut != out {
		t.Fatalf("--version: exit %d, %q (stderr %q); want %q as from version", code, flagOut, stderr, out)
	}
}

// Every config key can be set by environment; here the listen addresses in
// the file are unusable and only STEPUP_LISTEN_GRPC and STEPUP_LISTEN_ADMIN work.
func TestEnvironmentOverridesConfig(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, `
listen: { grpc: "127.0.0.1:1", admin: "127.0.0.1:1" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
`, "STEPUP_LISTEN_GRPC={{GRPC}}", "STEPUP_LISTEN_ADMIN={{ADMIN}}")
	if resp := s.check(t, "GET", "/", userToken(t, idp, "aal1", 0)); resp.GetStatus().GetCode() != 0 {
		t.Fatalf("Check over the address from STEPUP_LISTEN_GRPC: %s", describe(resp))
	}
	s.stop(t)
}

func TestServeRefusesAnInvalidConfig(t *testing.T) {
	bad := writeFile(t, "bad.yaml", "issuers: []\nclock_skew: yes\n")
	code, _, stderr := run(t, nil, "serve", "--config", bad)
	if code != 1 || !strings.Contains(stderr, "clock_skew") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 naming clock_skew", code, stderr)
	}
}

// listen.codec: proto is the way back to grpc-go's standard codec; the server
// answers over it as over the default one, and says which it speaks.
func TestServeOverTheStandardCodec(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
`, "STEPUP_LISTEN_CODEC=proto")
	if resp := s.check(t, "GET", "/", userToken(t, idp, "aal1", 0)); resp.GetStatus().GetCode() != 0 || header(resp, "x-stepup-acr") != "aal1" {
		t.Fatalf("allow over the standard codec: %s", describe(resp))
	}
	if resp := s.check(t, "GET", "/", ""); resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("no token over the standard codec: %s", describe(resp))
	}
	if !strings.Contains(s.stderr.String(), "codec=proto") {
		t.Fatalf("the start line does not say codec=proto:\n%s", s.stderr.String())
	}
	s.stop(t)
}

func TestServeRefusesAnUnknownCodec(t *testing.T) {
	cfg := writeFile(t, "config.yaml", `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
`)
	code, _, stderr := run(t, nil, "serve", "--config", cfg, "--codec", "protobuf")
	if code != 1 || !strings.Contains(stderr, `listen.codec: "protobuf" is not one of fast, proto`) {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 naming listen.codec and its choices", code, stderr)
	}
}

func TestValidateEnvoyBootstraps(t *testing.T) {
	cfg := writeFile(t, "config.yaml", `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
`)
	shipped := []string{"../envoy/envoy.yaml", "../envoy/envoy-context-extensions.yaml", "../envoy/envoy-jwt-authn.yaml", "../envoy/envoy-mtls.yaml"}
	args := []string{"validate", "--config", cfg}
	for _, f := range shipped {
		args = append(args, "--envoy", f)
	}
	if code, out, stderr := run(t, nil, args...); code != 0 {
		t.Fatalf("shipped bootstraps: exit %d\n%s%s", code, out, stderr)
	}

	src, err := os.ReadFile("../envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	broken := writeFile(t, "envoy.yaml", strings.Replace(string(src), "required_acr: aal2", "required_acr: aal9", 1))
	code, _, stderr := run(t, nil, "validate", "--config", cfg, "--envoy", broken)
	if code != 1 || !strings.Contains(stderr, "required_acr") || !strings.Contains(stderr, "aal9") || !strings.Contains(stderr, "routes[") {
		t.Fatalf("broken bootstrap: exit %d, stderr:\n%s\nwant 1 naming the route and required_acr", code, stderr)
	}

	// The server's own ladder decides: with acr_levels [low, high], aal2 is unknown.
	custom := writeFile(t, "custom.yaml", `
acr_levels: [low, high]
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
`)
	if code, _, stderr := run(t, nil, "validate", "--config", custom, "--envoy", "../envoy/envoy.yaml"); code != 1 || !strings.Contains(stderr, `"aal2" is not one of acr_levels [low high]`) {
		t.Fatalf("custom ladder: exit %d, stderr:\n%s", code, stderr)
	}
}

// A bad value from the environment or a flag is reported against that variable
// or flag, by validate and by serve, never against the config file.
func TestOverrideProblemsNameTheirSource(t *testing.T) {
	cfg := writeFile(t, "serve.yaml", `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
`)
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"validate names STEPUP_CLOCK_SKEW", []string{"STEPUP_CLOCK_SKEW=abc"}, []string{"validate", "--config", cfg},
			`environment variable STEPUP_CLOCK_SKEW: clock_skew: "abc" is not a duration like "30s"`},
		{"serve names STEPUP_CLOCK_SKEW", []string{"STEPUP_CLOCK_SKEW=abc"}, []string{"serve", "--config", cfg},
			`environment variable STEPUP_CLOCK_SKEW: clock_skew: "abc" is not a duration like "30s"`},
		{"validate names STEPUP_ISSUERS", []string{`STEPUP_ISSUERS=[{issuer: "https://env.example.com"}]`}, []string{"validate", "--config", cfg},
			`environment variable STEPUP_ISSUERS: issuers[0].audiences: required`},
		{"serve names STEPUP_ISSUERS", []string{`STEPUP_ISSUERS=[{issuer: "https://env.example.com"}]`}, []string{"serve", "--config", cfg},
			`environment variable STEPUP_ISSUERS: issuers[0].audiences: required`},
		{"serve names the flag, which beats the environment", []string{"STEPUP_CLOCK_SKEW=45s"}, []string{"serve", "--config", cfg, "--clock-skew", "abc"},
			`flag --clock-skew: clock_skew: "abc" is not a duration like "30s"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := run(t, c.env, c.args...)
			if code != 1 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant 1 and %q", code, stderr, c.want)
			}
			if strings.Contains(stderr, cfg+": ") {
				t.Errorf("the config file is blamed for an override:\n%s", stderr)
			}
		})
	}
	t.Run("a problem in the file still names the file", func(t *testing.T) {
		bad := writeFile(t, "bad.yaml", "issuers: []\n")
		code, _, stderr := run(t, []string{"STEPUP_CLOCK_SKEW=45s"}, "validate", "--config", bad)
		if code != 1 || !strings.Contains(stderr, bad+": issuers: ") {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
	})
}

// On a busy port, serve says so (and what to do) before anything else: no key
// fetch has started, so none is cancelled and logged first.
func TestServeOnABusyPortSaysWhatToDo(t *testing.T) {
	idp := startIdP(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := writeFile(t, "serve.yaml", fmt.Sprintf(`
listen: { grpc: %q, admin: %q }
issuers:
  - issuer: %q
    jwks_uri: "%s/jwks.json"
    audiences: ["https://api.example.com"]
`, busy.Addr().String(), freeAddr(t), idp.Issuer, idp.Issuer))
	code, stdout, stderr := run(t, nil, "serve", "--config", cfg)
	out := stdout + stderr
	want := "listen.grpc " + busy.Addr().String() + ": the address is already in use"
	if code != 1 || !strings.HasPrefix(strings.TrimSpace(out), want) || !strings.Contains(out, "--listen-grpc or STEPUP_LISTEN_GRPC") {
		t.Fatalf("exit %d, output:\n%s\nwant 1, starting with %q and naming --listen-grpc and STEPUP_LISTEN_GRPC", code, out, want)
	}
	if strings.Contains(out, "context canceled") || strings.Contains(out, "jwks") {
		t.Errorf("a key fetch was started and cancelled:\n%s", out)
	}
}

// check --envoy picks the route as the front proxy does and sends that route's
// metadata and context extensions; without it, check says the decision came
// from the server's config alone.
func TestCheckWithTheEnvoyBootstrap(t *testing.T) {
	idp := startIdP(t)
	cfg := writeFile(t, "config.yaml", strings.ReplaceAll(`
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
`, "{{ISSUER}}", idp.Issuer))
	aal1 := userToken(t, idp, "aal1", time.Minute)
	aal2 := userToken(t, idp, "aal2", time.Minute)
	staleAAL2 := userToken(t, idp, "aal2", 6*time.Minute)
	const meta, ext = "../envoy/envoy.yaml", "../envoy/envoy-context-extensions.yaml"
	for _, c := range []struct {
		name     string
		args     []string
		code     int
		want     []string
		dontWant []string
	}{
		{"an aal1 token on the payout route is asked to step up", []string{"--envoy", meta, "--token", aal1, "--method", "POST", "--path", "/api/payout-destination"}, 1,
			[]string{"route payout-destination (prefix /api/payout-destination)", `sends route metadata stepup: {"machine_scopes":["payouts:write"],"max_age":300,"name":"payout-destination","required_acr":"aal2"}`,
				"reason:   acr_too_low", "required_acr    from route_metadata", "HTTP 401", `"required_acr":"aal2","max_age":300`}, []string{"note:"}},
		{"without --envoy the same request is allowed, and check says why", []string{"--token", aal1, "--method", "POST", "--path", "/api/payout-destination"}, 0,
			[]string{"decision: allow", "note:     the policy came only from the server's config (policy.routes, policy.default): no Envoy route was given", "--envoy FILE"}, nil},
		{"the path is normalised before the route is picked", []string{"--envoy", meta, "--token", aal1, "--method", "POST", "--path", "/api/x/..//payout-destination?a=1"}, 1,
			[]string{"route payout-destination", "reason:   acr_too_low"}, nil},
		{"an old sign-in is too old for the route's max_age", []string{"--envoy", meta, "--token", staleAAL2, "--method", "POST", "--path", "/api/payout-destination"}, 1,
			[]string{"reason:   auth_too_old", "max_age         from route_metadata"}, nil},
		{"context extensions come from the per-route ext_authz settings", []string{"--envoy", ext, "--token", aal1, "--method", "POST", "--path", "/api/payout-destination"}, 1,
			[]string{"sends context extensions:", "required_acr    from context_extensions", "reason:   acr_too_low"}, []string{"sends route metadata"}},
		{"a header condition picks the DELETE route", []string{"--envoy", meta, "--token", aal1, "--method", "DELETE", "--path", "/api/account"}, 1,
			[]string{"route delete-account (prefix /api/account, DELETE)", "reason:   acr_too_low"}, nil},
		{"another method falls through to the default route", []string{"--envoy", meta, "--token", aal1, "--method", "GET", "--path", "/api/account"}, 0,
			[]string{"route default (prefix /)", "decision: allow", "note:     this route's metadata and context extensions set no requirement"}, nil},
		{"a fresh aal2 token passes the payout route", []string{"--envoy", meta, "--token", aal2, "--method", "POST", "--path", "/api/payout-destination"}, 0,
			[]string{"decision: allow", "set upstream header x-stepup-acr: aal2"}, []string{"note:"}},
		{"a route with ext_authz disabled sends no Check", []string{"--envoy", meta, "--path", "/healthz"}, 0,
			[]string{"route healthz (path /healthz)", "ext_authz is disabled on this route: Envoy sends no Check"}, []string{"reason:"}},
		{"an encoded slash is refused by the proxy", []string{"--envoy", meta, "--token", aal2, "--path", "/api%2Fpayout-destination"}, 1,
			[]string{"refused by path normalisation", "HTTP 400 (path_normalization_failed)"}, []string{"reason:"}},
		{"--metadata with --envoy is an error", []string{"--envoy", meta, "--path", "/", "--metadata", `{"required_acr":"aal2"}`}, 2, nil, nil},
		{"a bootstrap that cannot be read is an error", []string{"--envoy", filepath.Join(t.TempDir(), "missing.yaml"), "--path", "/"}, 2, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := run(t, nil, append([]string{"check", "--config", cfg}, c.args...)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.dontWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			if code == 2 && !strings.Contains(stderr, "--envoy") {
				t.Errorf("exit 2 without naming --envoy: %q", stderr)
			}
		})
	}
}
