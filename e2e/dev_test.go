package e2e

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevPlayground runs `stepup-authz dev` and walks the README's curl story:
// deny -> step up with `dev token` -> allow.
func TestDevPlayground(t *testing.T) {
	addrs := map[string]string{}
	args := []string{"dev"}
	for _, flag := range []string{"proxy-addr", "idp-addr", "app-addr", "grpc-addr", "admin-addr"} {
		addrs[flag] = freeAddr(t)
		args = append(args, "--"+flag, addrs[flag])
	}
	cmd := exec.Command(binary, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("dev output:\n%s", out.String())
		}
	})
	// The banner is printed once everything is ready.
	waitFor(t, "the playground banner", func() bool { return strings.Contains(out.String(), "Ctrl-C stops everything") })
	if !strings.Contains(out.String(), "dev token --idp http://"+addrs["idp-addr"]+" --acr aal1") {
		t.Errorf("the banner does not explain how to mint tokens:\n%s", out.String())
	}

	token := func(acr string, extra ...string) string {
		code, stdout, stderr := run(t, nil, append([]string{"dev", "token", "--idp", "http://" + addrs["idp-addr"], "--acr", acr}, extra...)...)
		if code != 0 {
			t.Fatalf("dev token: exit %d: %s", code, stderr)
		}
		return strings.TrimSpace(stdout)
	}
	post := func(tok string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addrs["proxy-addr"]+"/api/payout-destination", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(token("aal1")); code != 401 || !strings.Contains(body, "step_up_required") {
		t.Fatalf("aal1: %d %s", code, body)
	}
	if code, body := post(token("aal2")); code != 200 || !strings.Contains(body, `"x-stepup-acr":"aal2"`) {
		t.Fatalf("aal2: %d %s", code, body)
	}
	// The README's flow is the normal one: no step-up loop is counted.
	if metrics := httpGet(t, "http://"+addrs["admin-addr"]+"/metrics"); !strings.Contains(metrics, "stepup_step_up_loop_suspected_total") ||
		regexp.MustCompile(`(?m)^stepup_step_up_loop_suspected_total\{.*\} [1-9]`).MatchString(metrics) {
		t.Errorf("step-up loops counted after the README's flow:\n%s", grep(metrics, "loop"))
	}
	// The same story with opaque tokens, which the server introspects at the dev IdP.
	if tok := token("aal1", "--opaque"); strings.Contains(tok, ".") {
		t.Fatalf("dev token --opaque printed a JWT: %s", tok)
	}
	if code, body := post(token("aal1", "--opaque")); code != 401 || !strings.Contains(body, "step_up_required") {
		t.Fatalf("opaque aal1: %d %s", code, body)
	}
	if code, body := post(token("aal2", "--opaque")); code != 200 || !strings.Contains(body, `"x-stepup-acr":"aal2"`) {
		t.Fatalf("opaque aal2: %d %s", code, body)
	}
	// DPoP: dev token --dpop prints a curl command with a bound token and a
	// one-time proof; the proof works once.
	target := "http://" + addrs["proxy-addr"] + "/api/payout-destination"
	curl := token("aal2", "--dpop", "ES256", "--method", "POST", "--url", target)
	quoted := strings.Split(curl, "'")
	if !strings.HasPrefix(curl, "curl -i -X POST '"+target+"'") || len(quoted) < 7 ||
		!strings.HasPrefix(quoted[3], "Authorization: DPoP ") || !strings.HasPrefix(quoted[5], "DPoP: ") {
		t.Fatalf("dev token --dpop printed %q", curl)
	}
	sendDPoP := func() (int, http.Header, string) {
		req, _ := http.NewRequest("POST", target, nil)
		req.Header.Set("Authorization", strings.TrimPrefix(quoted[3], "Authorization: "))
		req.Header.Set("DPoP", strings.TrimPrefix(quoted[5], "DPoP: "))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if code, _, body := sendDPoP(); code != 200 || !strings.Contains(body, `"x-stepup-acr":"aal2"`) {
		t.Fatalf("the printed DPoP request: %d %s", code, body)
	}
	if code, h, body := sendDPoP(); code != 401 || body != `{"error":"invalid_dpop_proof"}` || !strings.HasPrefix(h.Get("WWW-Authenticate"), `DPoP error="invalid_dpop_proof"`) {
		t.Fatalf("the printed DPoP request again: %d %s %v", code, body, h)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop within 20s of SIGINT")
	}
}

func TestDevTokenWithoutPlaygroundSaysSo(t *testing.T) {
	code, _, stderr := run(t, nil, "dev", "token", "--idp", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "stepup-authz dev") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// The banner describes the bootstrap in use, not a fixed text: with max_age
// 120 in the file it says 120, and it names the file.
func TestDevBannerComesFromTheBootstrap(t *testing.T) {
	src, err := os.ReadFile("../envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), "max_age: 300 ", "max_age: 120 ", 1)
	if edited == string(src) {
		t.Fatal("envoy.yaml no longer has payout-destination's max_age: 300")
	}
	file := writeFile(t, "my-envoy.yaml", edited)
	args := []string{"dev", "--envoy", file}
	for _, flag := range []string{"proxy-addr", "idp-addr", "app-addr", "grpc-addr", "admin-addr"} {
		args = append(args, "--"+flag, freeAddr(t))
	}
	out := startDev(t, args...)
	for _, want := range []string{
		"(Envoy bootstrap: " + file + ")",
		"Routes (from " + file + ", first match wins):",
		// The match column is as wide as the longest match (the well-known path's route).
		"prefix /api/payout-destination                               aal2, authenticated within 120 s; machine tokens need payouts:write",
		"DELETE  prefix /api/account                                          aal2, authenticated within 60 s",
		"path /healthz                                                no token (ext_authz disabled on this route)",
		"path_separated_prefix /mcp                                   a token with scope mcp:tools (RFC 9728 resource /mcp)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "300 s") {
		t.Errorf("banner still says 300 s:\n%s", out)
	}
}

// startDev runs `stepup-authz dev` with args until the test ends and returns
// its output up to the banner's last line.
func startDev(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("dev output:\n%s", out.String())
		}
	})
	waitFor(t, "the playground banner", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("dev exited: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), "Ctrl-C stops everything")
	})
	return out.String()
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
