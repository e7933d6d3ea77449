package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchReport is the part of `stepup-authz bench --json` the tests read.
type benchReport struct {
	Summary []struct {
		Server       string  `json:"server"`
		Connections  int     `json:"connections"`
		Rate         float64 `json:"checks_per_second"`
		Errors       int64   `json:"errors"`
		Unexpected   int64   `json:"unexpected"`
		RatioToFloor float64 `json:"ratio_to_floor"`
		RatioToJWT   float64 `json:"ratio_to_jwt"`
	} `json:"summary"`
}

func runBench(t *testing.T, args ...string) benchReport {
	t.Helper()
	// A long grpc-timeout: this machine may be busy with other tests, and a
	// Check later than Envoy's usual 200ms would count as an error.
	code, stdout, stderr := run(t, nil, append([]string{"bench", "--json", "--grpc-timeout", "30s"}, args...)...)
	if code != 0 && !strings.Contains(stderr, "errors or unexpected decisions") {
		t.Fatalf("bench %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("bench --json output: %v\n%s", err, stdout)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bench progress:\n%s", stderr)
		}
	})
	return rep
}

// wantServers checks that every named server answered Checks, without errors
// or wrong decisions. It asserts no timing: only that the load ran.
func wantServers(t *testing.T, rep benchReport, names ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range rep.Summary {
		seen[s.Server] = true
		if s.Rate <= 0 {
			t.Errorf("%s: %v Checks/s, want some", s.Server, s.Rate)
		}
		if s.Errors != 0 || s.Unexpected != 0 {
			t.Errorf("%s: %d errors, %d unexpected decisions", s.Server, s.Errors, s.Unexpected)
		}
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("no result for %s in %+v", n, rep.Summary)
		}
	}
}

// TestBenchSelfAndFloors runs the load tool for a second against the servers
// it starts itself: stepup-authz, the always-OK floor and the golang-jwt
// reference, with every kind of token.
func TestBenchSelfAndFloors(t *testing.T) {
	rep := runBench(t, "--self", "--floor", "--jwt-floor", "--duration", "1s", "--warmup", "200ms",
		"--concurrency", "16", "--mix", "cached=2,unique=1,invalid=1", "--unique-tokens", "200")
	wantServers(t, rep, "floor", "jwt-floor", "stepup-authz")
	for _, s := range rep.Summary {
		if s.Server == "stepup-authz" && (s.RatioToFloor <= 0 || s.RatioToJWT <= 0) {
			t.Errorf("stepup-authz: ratios to the floors missing: %+v", s)
		}
	}
}

// TestBenchOpenLoopGRPCClient runs a fixed-rate load with grpc-go's client.
func TestBenchOpenLoopGRPCClient(t *testing.T) {
	rep := runBench(t, "--floor", "--rate", "500", "--count", "300", "--duration", "0", "--warmup", "0", "--client", "grpc")
	wantServers(t, rep, "floor")
}

// TestBenchTarget runs the load tool against a server started from the
// config `bench --print-config` gives, before the bench (and its IdP) runs,
// over one connection and over two.
func TestBenchTarget(t *testing.T) {
	idpAddr, grpcAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	code, cfg, stderr := run(t, nil, "bench", "--print-config", "--idp-listen", idpAddr,
		"--config-listen-grpc", grpcAddr, "--config-listen-admin", adminAddr)
	if code != 0 {
		t.Fatalf("bench --print-config: exit %d: %s", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "bench.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	srv := exec.Command(binary, "serve", "--config", path)
	srv.Stdout, srv.Stderr = out, out
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})
	benchWaitListening(t, grpcAddr)
	rep := runBench(t, "--target", grpcAddr, "--target-pid", strconv.Itoa(srv.Process.Pid), "--idp-listen", idpAddr,
		"--duration", "1s", "--warmup", "200ms", "--mix", "cached=3,invalid=1", "--connections", "1,2")
	wantServers(t, rep, "target")
	if len(rep.Summary) != 2 || rep.Summary[0].Connections != 1 || rep.Summary[1].Connections != 2 {
		t.Errorf("want a summary over 1 and over 2 connections: %+v", rep.Summary)
	}
}

// benchWaitListening waits until addr accepts TCP connections.
func benchWaitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not listening after 20s", addr)
}
