package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func introspectionConfig(t *testing.T, secretFile, block string) string {
	t.Helper()
	return writeConfig(t, `
issuers:
  - issuer: "https://idp.example.com"
    audiences: ["https://api.example.com"]
    introspection:
      client_id: "stepup-authz"
      client_secret_file: "`+secretFile+`"
`+block)
}

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIntrospectionDefaults(t *testing.T) {
	secret := writeSecret(t, "hunter2\r\n")
	cfg := mustLoad(t, introspectionConfig(t, secret, "      opaque_tokens: true\n"))
	got := cfg.Issuers[0].Introspection
	want := Introspection{
		ClientID:         "stepup-authz",
		ClientSecretFile: secret,
		ClientSecret:     "hunter2",
		Auth:             AuthClientSecretBasic,
		OpaqueTokens:     true,
		RequireAudience:  true,
		CacheTTL:         60 * time.Second,
		NegativeCacheTTL: 5 * time.Second,
		MaxInFlight:      64,
	}
	if got == nil || *got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got.ClientSecret.Reveal() != "hunter2" {
		t.Fatalf("the secret's trailing CRLF was not trimmed: %q", got.ClientSecret.Reveal())
	}
}

func TestIntrospectionSecretIsNeverPrinted(t *testing.T) {
	const value = "do-not-print-me"
	cfg := mustLoad(t, introspectionConfig(t, writeSecret(t, value+"\n"), "      jwt: true\n"))
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg, "secret", cfg.Issuers[0].Introspection.ClientSecret)
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Issuers[0].Introspection
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", *in),
		"%+v":  fmt.Sprintf("%+v", *in),
		"%#v":  fmt.Sprintf("%#v", *in),
		"%s":   fmt.Sprintf("%s", in.ClientSecret),
		"%q":   fmt.Sprintf("%q", in.ClientSecret),
		"%x":   fmt.Sprintf("%x", in.ClientSecret),
		"json": string(j),
		"slog": logged.String(),
	} {
		if strings.Contains(out, value) {
			t.Errorf("%s shows the secret: %s", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s does not say [redacted]: %s", name, out)
		}
	}
}

// A reload is a new Load: it reads the secret file again, so a rotated
// secret is used from the next reload on.
func TestIntrospectionSecretIsReadOnEveryLoad(t *testing.T) {
	secret := writeSecret(t, "first\n")
	path := introspectionConfig(t, secret, "      opaque_tokens: true\n")
	if got := mustLoad(t, path).Issuers[0].Introspection.ClientSecret.Reveal(); got != "first" {
		t.Fatalf("secret %q, want first", got)
	}
	if err := os.WriteFile(secret, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, path).Issuers[0].Introspection.ClientSecret.Reveal(); got != "second" {
		t.Fatalf("after rotation, secret %q, want second", got)
	}
	if err := os.Remove(secret); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if p := problemsOf(t, err); len(p) != 1 || !strings.HasPrefix(p[0], "issuers[0].introspection.client_secret_file: cannot read") {
		t.Fatalf("a removed secret file must refuse the reload, got %v", p)
	}
}

func TestIntrospectionSecretFileWithTwoLinesIsRefusedWithoutQuotingIt(t *testing.T) {
	_, err := Load(introspectionConfig(t, writeSecret(t, "line-one\nline-two\n"), "      opaque_tokens: true\n"), nil)
	p := problemsOf(t, err)
	if len(p) != 1 || !strings.Contains(p[0], "more than one line") || strings.Contains(p[0], "line-one") {
		t.Fatalf("got %v", p)
	}
}
