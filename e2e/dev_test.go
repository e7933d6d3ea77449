package e2e

import (
	"io"
	"net/http"
	"os/exec"
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

	token := func(acr string) string {
		code, stdout, stderr := run(t, nil, "dev", "token", "--idp", "http://"+addrs["idp-addr"], "--acr", acr)
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
