package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// kubeletVolume is a directory laid out the way kubelet lays out a mounted
// ConfigMap (pkg/volume/util/atomic_writer.go):
//
//	..2026_11_27_00_00_00.123456789/config.yaml   the payload, one dir per version
//	..data -> ..2026_11_27_00_00_00.123456789      swapped atomically on update
//	config.yaml -> ..data/config.yaml              what the pod opens; never changes
//
// The file the server was told to read is a symlink that never changes
// itself: only ..data moves, and the old version's directory is deleted.
type kubeletVolume struct {
	dir     string
	current string // the timestamped directory ..data points at
	n       int
}

func newKubeletVolume(t *testing.T, files map[string]string) *kubeletVolume {
	t.Helper()
	v := &kubeletVolume{dir: t.TempDir()}
	v.update(t, files)
	return v
}

// update writes a new version as kubelet does: payload into a fresh
// timestamped directory, a ..data_tmp symlink to it renamed over ..data,
// user-visible symlinks created if new, then the old version removed.
func (v *kubeletVolume) update(t *testing.T, files map[string]string) {
	t.Helper()
	v.n++
	ts := time.Date(2026, 11, 27, 0, 0, v.n, 123456789, time.UTC).Format("..2006_01_02_15_04_05.000000000")
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v.current != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, v.current)); err != nil {
			t.Fatal(err)
		}
	}
	v.current = ts
}

// launchAt starts the binary on an existing config file, as the Deployment
// in k8s/base does (serve --config /etc/stepup-authz/config.yaml).
func launchAt(t *testing.T, configPath, grpcAddr, adminAddr string) *server {
	t.Helper()
	s := &server{grpcAddr: grpcAddr, adminAddr: adminAddr, configPath: configPath, stderr: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(binary, "serve", "--config", configPath)
	s.cmd.Stderr, s.cmd.Stdout = s.stderr, s.stderr
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
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.client = authv3.NewAuthorizationClient(conn)
	s.waitReady(t)
	return s
}

// TestConfigMapSymlinkSwap runs the real binary on a config mounted the way
// kubelet mounts a ConfigMap and updates it the way kubelet does: a new
// policy takes effect without a restart, an invalid one is refused while the
// last good one keeps serving, and swaps keep working after the directory
// the server first read from is gone.
func TestConfigMapSymlinkSwap(t *testing.T) {
	idp := startIdP(t)
	grpcAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := func(acr string) map[string]string {
		r := strings.NewReplacer("{{ISSUER}}", idp.Issuer, "{{GRPC}}", grpcAddr, "{{ADMIN}}", adminAddr,
			"required_acr: aal2", "required_acr: "+acr)
		return map[string]string{"config.yaml": r.Replace(seedConfig)}
	}
	vol := newKubeletVolume(t, cfg("aal2"))
	s := launchAt(t, filepath.Join(vol.dir, "config.yaml"), grpcAddr, adminAddr)

	aal2 := userToken(t, idp, "aal2", 0)
	if resp := s.check(t, "POST", "/api/payout-destination", aal2); resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("before the swap: %s, want allowed", describe(resp))
	}

	// 1. A stricter policy arrives by symlink swap.
	first := vol.current
	start := time.Now()
	vol.update(t, cfg("aal3"))
	if _, err := os.Stat(filepath.Join(vol.dir, first)); !os.IsNotExist(err) {
		t.Fatalf("the old version %s should be gone, as kubelet removes it: %v", first, err)
	}
	waitFor(t, "the aal3 policy after the ..data swap", func() bool {
		dr := s.check(t, "POST", "/api/payout-destination", aal2).GetDeniedResponse()
		return dr.GetStatus().GetCode() == 401 && strings.Contains(dr.GetBody(), `"required_acr":"aal3"`)
	})
	t.Logf("reloaded %v after the swap (watch events; the 5 s poll is the fallback)", time.Since(start).Round(10*time.Millisecond))

	// 2. An invalid config arrives: refused, counted, the aal3 policy serves on.
	vol.update(t, cfg("aal9"))
	waitFor(t, "the invalid config to be refused", func() bool {
		_, body := s.get(t, "/metrics")
		return strings.Contains(body, `stepup_config_reloads_total{result="invalid"} 1`)
	})
	if dr := s.check(t, "POST", "/api/payout-destination", aal2).GetDeniedResponse(); dr.GetStatus().GetCode() != 401 {
		t.Fatalf("after the refused swap the last good (aal3) policy must serve: got %d", dr.GetStatus().GetCode())
	}

	// 3. Back to aal2: the third swap still reaches the server.
	vol.update(t, cfg("aal2"))
	waitFor(t, "the aal2 policy after the third swap", func() bool {
		return s.check(t, "POST", "/api/payout-destination", aal2).GetStatus().GetCode() == int32(codes.OK)
	})
	_, metrics := s.get(t, "/metrics")
	if !strings.Contains(metrics, `stepup_config_reloads_total{result="ok"} 2`) {
		t.Errorf("want exactly two good reloads counted:\n%s", grep(metrics, "stepup_config_reloads_total"))
	}
	s.stop(t)
}
