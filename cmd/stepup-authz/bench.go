//go:build !serveronly

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stepup-authz/stepup-authz/internal/bench"
)

func newBenchCmd() *cobra.Command {
	o := bench.Options{}
	var mix string
	var printConfig, asJSON bool
	var listenGRPC, listenAdmin string
	cmd := &cobra.Command{
		Use:   "bench (--target ADDR | --self) [--floor] [--jwt-floor]",
		Short: "Load-test an ext_authz server with realistic CheckRequests",
		Long: `bench sends Envoy-like CheckRequests (12 headers, an ~800-byte RS256 bearer token
minted by an identity provider that bench serves on loopback, route metadata
{required_acr: aal2, max_age: 300}) to an ext_authz gRPC server and reports
Checks/s, latency percentiles and errors. Decisions are checked: a valid aal2 token
must be allowed, a forged one denied.

Servers:
  --self       start stepup-authz serve (this binary) trusting the bench IdP,
               a fresh process for every phase
  --target     any running ext_authz server; it must trust the bench IdP: run
               it with the config from --print-config and a fixed --idp-listen
  --floor      also measure the naive always-OK grpc-go server (default codec),
               the floor every ratio is taken against, in the same run
  --jwt-floor  also measure a server that verifies every token with
               golang-jwt/v5 and no cache: the reference for unique tokens

Reference servers run as separate processes of this binary, pinned to
--server-cpus like --self, so every server runs under the same conditions; the
load generator pins itself to --load-cpus. Phases alternate between servers
run by run, and the summary gives medians over --runs and the median of the
per-run ratios. Envoy opens one connection per worker thread: --connections 1,4
measures every server over one connection and over four in every run,
interleaved, each count against the floor over the same count.

Load: closed loop with --concurrency calls in flight, or open loop with
--rate Checks/s (latency counted from when each call was due). Every phase is
bounded by --duration and/or --count. Token mix: --mix cached=90,unique=10,invalid=0
(cached tokens come from a pool of --cached-tokens and hit the server's
verified-token cache; unique tokens are minted for every run and each is sent
once; invalid tokens are well formed but fail signature verification).`,
		Example: `  stepup-authz bench --self --floor --server-cpus 0 --load-cpus 1
  stepup-authz bench --self --floor --connections 1,4 --cached-tokens 1000 --server-cpus 0 --load-cpus 1
  stepup-authz bench --self --jwt-floor --mix unique=1 --unique-tokens 20000 --count 20000
  stepup-authz bench --self --rate 1000 --duration 20s
  stepup-authz bench --print-config --idp-listen 127.0.0.1:9400 > bench.yaml
  stepup-authz serve --config bench.yaml &   # in another shell
  stepup-authz bench --target 127.0.0.1:9191 --idp-listen 127.0.0.1:9400 --floor`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if printConfig {
				if _, port, err := net.SplitHostPort(o.IdPListen); err != nil || port == "0" {
					return &exitError{code: 2, err: errors.New("--print-config needs a fixed --idp-listen (e.g. 127.0.0.1:9400), which bench must then be run with")}
				}
				fmt.Fprint(out, bench.SelfConfig("http://"+o.IdPListen, listenGRPC, listenAdmin))
				return nil
			}
			m, err := bench.ParseMix(mix)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			o.Mix = m
			o.Log = cmd.ErrOrStderr()
			rep, err := bench.RunBench(o)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("bench: %w", err)}
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				rep.WriteText(out)
			}
			var bad int64
			for _, s := range rep.Summary {
				bad += s.Errors + s.Unexpected
			}
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("bench: %d errors or unexpected decisions", bad)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Target, "target", "", "address of a running ext_authz server (host:port)")
	f.IntVar(&o.TargetPid, "target-pid", 0, "process id of --target, to report its CPU time per Check")
	f.StringVar(&o.TargetAdmin, "target-admin", "", "admin address of --target (host:port serving /metrics), to report its allocations per Check")
	f.BoolVar(&o.Self, "self", false, "start stepup-authz serve trusting the bench IdP, one fresh process per phase")
	f.BoolVar(&o.Floor, "floor", false, "also measure the naive always-OK grpc-go server in the same run")
	f.BoolVar(&o.JWTFloor, "jwt-floor", false, "also measure a golang-jwt/v5 verifier without cache in the same run")
	f.StringVar(&o.Client, "client", "h2", "load client: h2 (lean HTTP/2) or grpc (grpc-go, several times the CPU per call)")
	f.IntSliceVar(&o.Conns, "connections", []int{1}, "HTTP/2 connections to each server; a list (1,4) measures every server over each count in every run, interleaved")
	f.IntVar(&o.Concurrency, "concurrency", 64, "closed loop: Checks in flight")
	f.Float64Var(&o.Rate, "rate", 0, "open loop: Checks per second (overrides --concurrency)")
	f.IntVar(&o.MaxInflight, "max-inflight", 4096, "open loop: most Checks in flight")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each measured phase (0: only --count bounds it)")
	f.Int64Var(&o.Count, "count", 0, "most Checks per measured phase (0: only --duration bounds it)")
	f.DurationVar(&o.Warmup, "warmup", 2*time.Second, "warm-up before each phase, with cached tokens, not measured")
	f.IntVar(&o.Runs, "runs", 1, "repetitions; the summary gives medians")
	f.DurationVar(&o.Timeout, "grpc-timeout", 200*time.Millisecond, "grpc-timeout sent with each Check, as Envoy does (0: none)")
	f.StringVar(&mix, "mix", "cached=1", "token mix by weight: cached=N,unique=N,invalid=N")
	f.IntVar(&o.CachedTokens, "cached-tokens", 100, "size of the pool of cached tokens")
	f.IntVar(&o.UniqueTokens, "unique-tokens", 20000, "unique tokens minted per run (RS256 signing takes ~1-3ms each)")
	f.StringVar(&o.ACR, "acr", "aal2", "acr of the minted tokens (aal1 makes every Check a step-up)")
	f.StringVar(&o.ServerCPUs, "server-cpus", "", "CPUs for the servers bench starts, as for taskset -c (\"\": unpinned)")
	f.StringVar(&o.LoadCPUs, "load-cpus", "", "CPUs for the load generator (\"\": unpinned)")
	f.StringVar(&o.IdPListen, "idp-listen", "127.0.0.1:0", "address of the bench identity provider (loopback)")
	f.StringVar(&o.WorkDir, "workdir", "", "keep configs and server logs here (default: a temporary directory, removed)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&printConfig, "print-config", false, "print a stepup-authz config trusting the bench IdP at --idp-listen, and exit")
	f.StringVar(&listenGRPC, "config-listen-grpc", "127.0.0.1:9191", "with --print-config: listen.grpc of the printed config")
	f.StringVar(&listenAdmin, "config-listen-admin", "127.0.0.1:9192", "with --print-config: listen.admin of the printed config")
	cmd.AddCommand(newBenchFloorCmd(), newBenchJWTCmd())
	return cmd
}

// newBenchFloorCmd is the always-OK floor, run by bench as its own process.
func newBenchFloorCmd() *cobra.Command {
	var listen, admin string
	cmd := &cobra.Command{
		Use:    "floor-server --listen ADDR [--admin ADDR]",
		Short:  "Serve the naive always-OK ext_authz floor (used by bench --floor)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if err := serveBenchAdmin(admin); err != nil {
				lis.Close()
				return err
			}
			gs := bench.ServeFloor(lis)
			waitSignal()
			gs.Stop()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "gRPC address")
	cmd.Flags().StringVar(&admin, "admin", "", "address for /metrics (Go runtime metrics)")
	return cmd
}

// newBenchJWTCmd is the golang-jwt reference, run by bench as its own process.
func newBenchJWTCmd() *cobra.Command {
	var listen, admin, jwks, issuer, audience string
	cmd := &cobra.Command{
		Use:    "jwt-server --listen ADDR --jwks URL --issuer ISS --audience AUD [--admin ADDR]",
		Short:  "Serve the golang-jwt/v5 no-cache reference (used by bench --jwt-floor)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if err := serveBenchAdmin(admin); err != nil {
				lis.Close()
				return err
			}
			gs, err := bench.ServeJWTFloor(lis, jwks, issuer, audience)
			if err != nil {
				lis.Close()
				return &exitError{code: 1, err: err}
			}
			waitSignal()
			gs.Stop()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:0", "gRPC address")
	f.StringVar(&admin, "admin", "", "address for /metrics (Go runtime metrics)")
	f.StringVar(&jwks, "jwks", "", "JWKS URL")
	f.StringVar(&issuer, "issuer", "", "expected iss")
	f.StringVar(&audience, "audience", bench.Audience, "expected aud")
	return cmd
}

// serveBenchAdmin serves a reference server's /metrics on addr ("" for none).
func serveBenchAdmin(addr string) error {
	if addr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	bench.ServeAdmin(lis)
	return nil
}

func waitSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
