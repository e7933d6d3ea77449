package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	stdreflect "reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stepup-authz/stepup-authz/internal/oidcprovider"
)

// TestMCPPlaygroundAsTheREADMESays runs README's "MCP servers behind Envoy"
// curl flow word for word against the real `dev` binary (only the ports, the
// binary's path for `go run ./cmd/stepup-authz`, and dev token's --idp
// differ), checks what each step prints, then has oauth4webapi do an MCP
// client's RFC 9728 discovery and scope step-up against the same /mcp route.
func TestMCPPlaygroundAsTheREADMESays(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\n## MCP servers behind Envoy\n.*?\n```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no sh block in \"MCP servers behind Envoy\"")
	}
	flow := string(m[1])
	for _, want := range []string{"127.0.0.1:8000", "go run ./cmd/stepup-authz dev token"} {
		if !strings.Contains(flow, want) {
			t.Fatalf("the README's MCP flow no longer has %q; this test follows it:\n%s", want, flow)
		}
	}

	addrs := map[string]string{}
	args := []string{"dev"}
	for _, flag := range []string{"proxy-addr", "idp-addr", "app-addr", "grpc-addr", "admin-addr"} {
		addrs[flag] = freeAddr(t)
		args = append(args, "--"+flag, addrs[flag])
	}
	banner := startDev(t, args...)
	proxy, idp := addrs["proxy-addr"], "http://"+addrs["idp-addr"]
	if !strings.Contains(banner, "curl -i http://"+proxy+"/mcp") {
		t.Errorf("the banner does not show the MCP flow:\n%s", banner)
	}

	script := strings.NewReplacer(
		"go run ./cmd/stepup-authz dev token", binary+" dev token --idp "+idp,
		"127.0.0.1:8000", proxy,
	).Replace(flow)
	// A marker before each numbered step, to read each step's output apart.
	var marked []string
	for _, line := range strings.Split(script, "\n") {
		if regexp.MustCompile(`^# \d+\.`).MatchString(line) {
			marked = append(marked, "echo '@@STEP@@'")
		}
		marked = append(marked, line)
	}
	cmd := exec.Command("bash", "-e", "-c", strings.Join(marked, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's MCP flow failed: %v\n%s", err, out)
	}
	steps := strings.Split(string(out), "@@STEP@@\n")[1:]
	if len(steps) != 5 {
		t.Fatalf("%d steps, want 5:\n%s", len(steps), out)
	}
	rm := `resource_metadata="http://` + proxy + `/.well-known/oauth-protected-resource/mcp"`
	expect := func(step int, what string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(strings.ToLower(steps[step-1]), strings.ToLower(w)) {
				t.Errorf("step %d (%s): no %q in\n%s", step, what, w, steps[step-1])
			}
		}
	}
	expect(1, "no token", "HTTP/1.1 401", "www-authenticate: Bearer "+rm+"\r\n")
	var doc map[string]any
	if err := json.Unmarshal([]byte(steps[1]), &doc); err != nil {
		t.Fatalf("step 2 printed no JSON document: %v\n%s", err, steps[1])
	}
	want := map[string]any{
		"resource":                 "http://" + proxy + "/mcp",
		"authorization_servers":    []any{idp},
		"bearer_methods_supported": []any{"header"},
		"scopes_supported":         []any{"mcp:tools"},
		"resource_name":            "stepup-authz playground",
	}
	if !stdreflect.DeepEqual(doc, want) {
		t.Errorf("step 2's document\n %v\nwant\n %v", doc, want)
	}
	scope403 := `www-authenticate: Bearer error="insufficient_scope", scope="mcp:tools", ` + rm + "\r\n"
	expect(3, "a user without the scope", "HTTP/1.1 403", scope403, `{"error":"insufficient_scope"}`)
	expect(4, "a user with the scope", "HTTP/1.1 200", `"x-stepup-sub":"user-1"`)
	machine := strings.SplitN(steps[4], "HTTP/1.1 ", 3)
	if len(machine) != 3 || !strings.HasPrefix(machine[1], "403") || !strings.Contains(strings.ToLower(machine[1]), strings.ToLower(scope403)) ||
		!strings.HasPrefix(machine[2], "200") || !strings.Contains(machine[2], `"x-stepup-sub":"mcp-agent"`) {
		t.Errorf("step 5 (a machine without, then with the scope):\n%s", steps[4])
	}

	// The playground section shows the payout step-up's challenge with the
	// resource_metadata dev's protected_resource adds: it is the one sent.
	shown := regexp.MustCompile(`(?m)^#   Www-Authenticate: (.*resource_metadata=.*)$`).FindSubmatch(readme)
	if shown == nil {
		t.Fatal("README's playground no longer shows the step-up challenge with resource_metadata")
	}
	code, stdout, stderr := run(t, nil, "dev", "token", "--idp", idp, "--acr", "aal1")
	if code != 0 {
		t.Fatalf("dev token: %s", stderr)
	}
	req, _ := http.NewRequest("POST", "http://"+proxy+"/api/payout-destination", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(stdout))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("WWW-Authenticate"), strings.ReplaceAll(string(shown[1]), "127.0.0.1:8000", proxy); got != want {
		t.Errorf("the payout step-up challenge is\n %s\nREADME shows\n %s", got, want)
	}

	// HEAD through the proxy: the GET's status and headers, no body (Envoy drops a
	// local reply's body for HEAD and keeps Content-Type because the body was not empty).
	head, err := http.Head("http://" + proxy + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(head.Body)
	head.Body.Close()
	if head.StatusCode != 200 || head.Header.Get("Content-Type") != "application/json" || head.Header.Get("Cache-Control") != "public, max-age=300" ||
		head.Header.Get("Access-Control-Allow-Origin") != "*" || len(body) != 0 {
		t.Errorf("HEAD of the document: %d %v %q", head.StatusCode, head.Header, body)
	}

	// An independent client library does what an MCP client does.
	token := func(args ...string) string {
		code, stdout, stderr := run(t, nil, append([]string{"dev", "token", "--idp", idp}, args...)...)
		if code != 0 {
			t.Fatalf("dev token: exit %d: %s", code, stderr)
		}
		return strings.TrimSpace(stdout)
	}
	got, err := oidcprovider.MCPClient(context.Background(), "http://"+proxy+"/mcp", token("--acr", "aal1"), token("--acr", "aal1", "--scope", "mcp:tools"))
	if err != nil {
		t.Fatal(err)
	}
	var learnt map[string]any
	if err := json.Unmarshal([]byte(got), &learnt); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	wantLearnt := map[string]any{
		"resource_metadata":     "http://" + proxy + "/.well-known/oauth-protected-resource/mcp",
		"resource":              "http://" + proxy + "/mcp",
		"authorization_servers": []any{idp},
		"scopes_supported":      []any{"mcp:tools"},
		"issuer":                idp,
		"scope":                 "mcp:tools",
		"allowed":               float64(200),
	}
	if !stdreflect.DeepEqual(learnt, wantLearnt) {
		t.Errorf("oauth4webapi learnt\n %v\nwant\n %v", learnt, wantLearnt)
	}
}

// check says what the server answers for the metadata document (exit 0: no
// denial, though Envoy receives it as one) and for /mcp (exit 1, the challenge
// with resource_metadata).
func TestCheckShowsTheMetadataDocument(t *testing.T) {
	cfg := writeFile(t, "config.yaml", `
issuers:
  - issuer: "http://127.0.0.1:1"
    jwks_uri: "http://127.0.0.1:1/jwks.json"
    audiences: ["https://api.example.com"]
protected_resource: { base_url: "https://api.example.com" }
`)
	code, out, stderr := run(t, nil, "check", "--config", cfg, "--token", "", "--method", "HEAD", "--path", "/.well-known/oauth-protected-resource/mcp")
	if code != 0 || !strings.Contains(out, "reason:   metadata_served") || !strings.Contains(out, "HTTP 200") ||
		!strings.Contains(out, `{"resource":"https://api.example.com/mcp","authorization_servers":["http://127.0.0.1:1"],"bearer_methods_supported":["header"]}`) {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run(t, nil, "check", "--config", cfg, "--envoy", "../envoy/envoy.yaml", "--token", "", "--method", "GET", "--path", "/mcp")
	if code != 1 || !strings.Contains(out, `www-authenticate: Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"`) ||
		!strings.Contains(out, "required_scopes from route_metadata") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
}

// protected_resource follows the config's reload rules: added to a running
// server, its challenges gain resource_metadata and the document is served;
// removed, both are gone again.
func TestProtectedResourceReloads(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, seedConfig)
	if got := header(s.check(t, "GET", "/mcp", ""), "www-authenticate"); got != "Bearer" {
		t.Fatalf("before: %q", got)
	}
	withResource := seedConfig + "protected_resource: { base_url: \"https://api.example.com\" }\n"
	s.writeConfig(t, idp, withResource)
	waitFor(t, "resource_metadata after the reload", func() bool {
		return header(s.check(t, "GET", "/mcp", ""), "www-authenticate") == `Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"`
	})
	if resp := s.check(t, "GET", "/.well-known/oauth-protected-resource/mcp", ""); resp.GetDeniedResponse().GetStatus().GetCode() != 200 ||
		!strings.Contains(resp.GetDeniedResponse().GetBody(), `"resource":"https://api.example.com/mcp"`) {
		t.Errorf("the document after the reload: %s", describe(resp))
	}
	s.writeConfig(t, idp, seedConfig)
	waitFor(t, "no resource_metadata after the block is removed", func() bool {
		return header(s.check(t, "GET", "/mcp", ""), "www-authenticate") == "Bearer"
	})
	if code := s.check(t, "GET", "/.well-known/oauth-protected-resource", "").GetDeniedResponse().GetStatus().GetCode(); code != 401 {
		t.Errorf("the document is still served (HTTP %d) after protected_resource was removed", code)
	}
	s.stop(t)
}
