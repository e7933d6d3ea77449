package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// server is a running `stepup-authz serve` process.
type server struct {
	cmd        *exec.Cmd
	grpcAddr   string
	adminAddr  string
	configPath string
	client     authv3.AuthorizationClient
	stderr     *syncBuffer
	done       chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startIdP serves a development IdP over real HTTP on loopback.
func startIdP(t *testing.T) *devidp.IdP {
	t.Helper()
	idp, err := devidp.New("https://api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(idp.Handler())
	t.Cleanup(hs.Close)
	idp.Issuer = hs.URL
	return idp
}

// launchServer writes config (with {{ISSUER}}, {{GRPC}} and {{ADMIN}} filled
// in) and starts the binary with extra environment env (where {{GRPC}} and
// {{ADMIN}} are filled in too), without waiting.
func launchServer(t *testing.T, idp *devidp.IdP, config string, env ...string) *server {
	t.Helper()
	s := &server{grpcAddr: freeAddr(t), adminAddr: freeAddr(t), stderr: &syncBuffer{}, done: make(chan error, 1)}
	s.configPath = filepath.Join(t.TempDir(), "config.yaml")
	s.writeConfig(t, idp, config)
	s.cmd = exec.Command(binary, "serve", "--config", s.configPath)
	s.cmd.Env = os.Environ()
	for _, kv := range env {
		s.cmd.Env = append(s.cmd.Env, strings.NewReplacer("{{GRPC}}", s.grpcAddr, "{{ADMIN}}", s.adminAddr).Replace(kv))
	}
	s.cmd.Stderr = s.stderr
	s.cmd.Stdout = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.stderr.String())
		}
	})
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.client = authv3.NewAuthorizationClient(conn)
	return s
}

// startServer launches the binary and waits until /readyz answers 200.
func startServer(t *testing.T, idp *devidp.IdP, config string, env ...string) *server {
	t.Helper()
	s := launchServer(t, idp, config, env...)
	s.waitReady(t)
	return s
}

func (s *server) writeConfig(t *testing.T, idp *devidp.IdP, config string) {
	t.Helper()
	r := strings.NewReplacer("{{ISSUER}}", idp.Issuer, "{{GRPC}}", s.grpcAddr, "{{ADMIN}}", s.adminAddr)
	// Write then rename, as editors and Kubernetes do, so the server never
	// reads a half-written file.
	tmp := s.configPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.Replace(config)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.configPath); err != nil {
		t.Fatal(err)
	}
}

func (s *server) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			t.Fatalf("server exited before ready: %v\n%s", err, s.stderr.String())
		default:
		}
		resp, err := http.Get("http://" + s.adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server not ready after 20s:\n%s", s.stderr.String())
}

func (s *server) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.adminAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not exit within 20s of SIGTERM")
	}
}

func (s *server) check(t *testing.T, method, path, tok string) *authv3.CheckResponse {
	t.Helper()
	headers := map[string]string{":method": method, ":path": path, ":authority": "app.example.com"}
	if tok != "" {
		headers["authorization"] = "Bearer " + tok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "app.example.com", Headers: headers,
		}},
	}})
	if err != nil {
		t.Fatalf("Check %s %s: %v", method, path, err)
	}
	return resp
}

func header(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func userToken(t *testing.T, idp *devidp.IdP, acr string, age time.Duration) string {
	t.Helper()
	tok, err := idp.UserToken("user-42", acr, age)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func describe(resp *authv3.CheckResponse) string {
	if dr := resp.GetDeniedResponse(); dr != nil {
		return fmt.Sprintf("denied %d %s", dr.GetStatus().GetCode(), dr.GetBody())
	}
	return fmt.Sprintf("status %d", resp.GetStatus().GetCode())
}
