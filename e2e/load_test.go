package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/stepup-authz/stepup-authz/internal/devidp"
)

// loadWorkers is how many Checks are in flight at once under load.
const loadWorkers = 200

// reloadConfig requires acr of POST /api/payout-destination. The policy comes first,
// the issuer last and each route's name after its requirement, so a reader that
// catches an in-place write half done finds an invalid file (no issuer, a route
// without a name, a cut YAML token), never a valid config with another policy.
func reloadConfig(acr string) string {
	return `
policy:
  routes:
    - match: { path_prefix: /api/payout-destination, methods: [POST] }
      required_acr: ` + acr + `
      name: payout-destination
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - audiences: ["https://api.example.com"]
    jwks_uri: "{{ISSUER}}/jwks.json"
    issuer: "{{ISSUER}}"
`
}

// outcome of one Check under load, for an aal2 token on the payout route.
type outcome int

const (
	allowed     outcome = iota // under required_acr: aal2
	stepUpAAL3                 // under required_acr: aal3: 401 step_up_required
	wrongAnswer                // any other answer: a failure
	grpcError                  // a gRPC error: a failure, except Unavailable at shutdown
)

func classifyPayout(resp *authv3.CheckResponse) outcome {
	if resp.GetStatus().GetCode() == int32(codes.OK) && header(resp, "x-stepup-acr") == "aal2" {
		return allowed
	}
	dr := resp.GetDeniedResponse()
	if resp.GetStatus().GetCode() == int32(codes.PermissionDenied) && dr.GetStatus().GetCode() == 401 &&
		dr.GetBody() == `{"error":"step_up_required","required_acr":"aal3"}` &&
		header(resp, "www-authenticate") == `Bearer error="insufficient_user_authentication", error_description="A stronger authentication is required", acr_values="aal3"` {
		return stepUpAAL3
	}
	return wrongAnswer
}

func payoutRequest(tok string) *authv3.CheckRequest {
	headers := map[string]string{":method": "POST", ":path": "/api/payout-destination", ":authority": "app.example.com", "authorization": "Bearer " + tok}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/api/payout-destination", Host: "app.example.com", Headers: headers},
	}}}
}

// record is one Check: when it ran and what came back.
type record struct {
	start, end time.Time
	got        outcome
	code       codes.Code
}

// load runs loadWorkers concurrent Checks until stop is closed, each worker made max
// Checks, or a worker got a gRPC error (it stops there, as a client of a server that
// is going away would, rather than spin), and returns every record.
func load(client authv3.AuthorizationClient, tok string, stop <-chan struct{}, max int, completed *atomic.Int64) []record {
	var mu sync.Mutex
	var all []record
	var wg sync.WaitGroup
	for range loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []record
			for i := 0; i < max; i++ {
				select {
				case <-stop:
					i = max
					continue
				default:
				}
				r := record{start: time.Now()}
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				resp, err := client.Check(ctx, payoutRequest(tok))
				cancel()
				r.end = time.Now()
				completed.Add(1)
				if err != nil {
					r.got, r.code = grpcError, status.Code(err)
					i = max
				} else {
					r.got = classifyPayout(resp)
				}
				mine = append(mine, r)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all
}

// version is one config written during the reload test.
type version struct {
	valid     bool
	want      outcome // the decision under this config (valid versions)
	written   time.Time
	confirmed time.Time // when /metrics counted the reload
}

// 200 concurrent Checks while the config is rewritten 50 times, half in place and
// half by atomic rename, valid and invalid alternately: no Check fails, and each
// answer is the decision of a config that was in force at some point while it ran
// (aal2 -> allowed, aal3 -> step up), never anything else.
func TestReloadUnderLoad(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, reloadConfig("aal2"))
	tok := userToken(t, idp, "aal2", 0)

	versions := []version{{valid: true, want: allowed}} // in force at start
	stop := make(chan struct{})
	done := make(chan []record)
	var completed atomic.Int64
	go func() { done <- load(s.client, tok, stop, 1<<20, &completed) }()

	okSeries, badSeries := `stepup_config_reloads_total{result="ok"}`, `stepup_config_reloads_total{result="invalid"}`
	acr := "aal2"
	for i := range 50 {
		v := version{valid: i%2 == 0}
		text := reloadConfig("aal9") // not a level: refused
		if v.valid {
			acr = map[string]string{"aal2": "aal3", "aal3": "aal2"}[acr]
			text = reloadConfig(acr)
			v.want = map[string]outcome{"aal2": allowed, "aal3": stepUpAAL3}[acr]
		}
		series := badSeries
		if v.valid {
			series = okSeries
		}
		before := s.metric(t, series)
		v.written = time.Now()
		if i%4 < 2 {
			s.writeConfig(t, idp, text) // write a temporary file, rename it over
		} else {
			s.writeInPlace(t, idp, text)
		}
		until(t, 15*time.Second, fmt.Sprintf("rewrite %d counted", i), func() bool { return s.metric(t, series) > before })
		v.confirmed = time.Now()
		versions = append(versions, v)
	}
	close(stop)
	records := <-done

	// A config is in force from its write (at the earliest) until the next valid
	// config was confirmed (at the latest).
	type window struct {
		from, to time.Time
		want     outcome
	}
	var windows []window
	for i, v := range versions {
		if !v.valid {
			continue
		}
		w := window{from: v.written, to: time.Now().Add(time.Hour), want: v.want}
		for _, n := range versions[i+1:] {
			if n.valid {
				w.to = n.confirmed
				break
			}
		}
		windows = append(windows, w)
	}
	counts := map[outcome]int{}
	failures := 0
	for _, r := range records {
		counts[r.got]++
		ok := false
		for _, w := range windows {
			if r.got == w.want && !r.end.Before(w.from) && !r.start.After(w.to) {
				ok = true
			}
		}
		if !ok {
			failures++
			if failures <= 5 {
				t.Errorf("Check %v..%v answered %v (gRPC %v), which no config in force then gives", r.start.Format("15:04:05.000"), r.end.Format("15:04:05.000"), r.got, r.code)
			}
		}
	}
	t.Logf("%d Checks by %d concurrent workers across 50 rewrites (25 valid, 25 invalid; in place and renamed): %d allowed (aal2 config), %d step-up (aal3 config), %d failures",
		len(records), loadWorkers, counts[allowed], counts[stepUpAAL3], failures)
	if counts[allowed] == 0 || counts[stepUpAAL3] == 0 {
		t.Errorf("the load never saw both configs: %v", counts)
	}
	s.stop(t)
}

// writeInPlace rewrites the config file in place (truncate and write, same inode),
// as some editors and tools do.
func (s *server) writeInPlace(t *testing.T, idp *devidp.IdP, config string) {
	t.Helper()
	r := strings.NewReplacer("{{ISSUER}}", idp.Issuer, "{{GRPC}}", s.grpcAddr, "{{ADMIN}}", s.adminAddr)
	f, err := os.OpenFile(s.configPath, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(r.Replace(config)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// sentHandler reports, on the client side, when a request message was written.
type sentHandler struct{ sent chan struct{} }

func (h *sentHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h *sentHandler) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.OutPayload); ok {
		select {
		case h.sent <- struct{}{}:
		default:
		}
	}
}
func (h *sentHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h *sentHandler) HandleConn(context.Context, stats.ConnStats)                       {}

// SIGTERM under load: every Check already in the server completes with a decision,
// including one held inside the server by a hanging JWKS fetch; the only gRPC error
// allowed is Unavailable, for Checks that reached the server after it stopped taking
// new ones (Envoy answers those with status_on_error or retries another replica);
// the process exits 0, within its 15s drain timeout.
func TestShutdownUnderLoad(t *testing.T) {
	idp := startIdP(t)
	slow := startIdP(t) // a second issuer whose JWKS hangs from the start
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow.SetJWKSFault(hangFault(release))
	s := launchServer(t, idp, reloadConfig("aal2")+`  - issuer: "`+slow.Issuer+`"
    jwks_uri: "`+slow.Issuer+`/jwks.json"
    audiences: ["https://api.example.com"]
`)
	tok := userToken(t, idp, "aal2", 0)
	until(t, 15*time.Second, "the first issuer's keys", func() bool {
		resp, err := s.client.Check(context.Background(), payoutRequest(tok))
		return err == nil && classifyPayout(resp) == allowed
	})

	// The held Check: its issuer's first key fetch hangs, so the server waits on it
	// until 80% of the Check's 4s deadline, then answers 503 (the JWKS answers after
	// 5s, too late for it).
	sent := &sentHandler{sent: make(chan struct{}, 1)}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(sent))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	heldTok := userToken(t, slow, "aal2", 0)
	type result struct {
		resp *authv3.CheckResponse
		err  error
		end  time.Time
	}
	held := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, payoutRequest(heldTok))
		held <- result{resp, err, time.Now()}
	}()
	<-sent.sent
	heldSent := time.Now()

	stop := make(chan struct{})
	done := make(chan []record)
	var completed atomic.Int64
	go func() { done <- load(s.client, tok, stop, 1<<20, &completed) }()
	// SIGTERM once the load has run 2000 Checks, or after 1.5s of it on a machine too
	// busy for that, so that it always comes while the Check is held (until 3.2s).
	until(t, 20*time.Second, "the load to run (2000 Checks, or 1.5s)", func() bool {
		return completed.Load() >= 2000 || (completed.Load() > 0 && time.Since(heldSent) > 1500*time.Millisecond)
	})
	sigterm := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	select {
	case exitErr = <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM (drain timeout 15s)")
	}
	exited := time.Now()
	close(stop)
	records := <-done
	h := <-held

	if exitErr != nil {
		t.Errorf("exit after SIGTERM: %v", exitErr)
	}
	if h.err != nil {
		t.Errorf("the Check held in the server at SIGTERM failed: %v", h.err)
	} else if v := classify(h.resp); v != vUnavailable {
		t.Errorf("the held Check: %s, want %s", v, vUnavailable)
	}
	// The server's own log orders it: the held Check's denial, then "stopped".
	logs := s.stderr.String()
	if d, st := strings.Index(logs, "reason=keys_unavailable"), strings.Index(logs, "msg=stopped"); d < 0 || st < 0 || d > st ||
		!h.end.After(sigterm) || strings.Index(logs, "shutting down") > d {
		t.Errorf("the drain did not wait for the held Check (answered %v after SIGTERM):\n%s", h.end.Sub(sigterm), logs)
	}
	codesSeen := map[string]int{}
	failures := 0
	for _, r := range records {
		switch {
		case r.got == allowed:
			codesSeen["allowed"]++
			if r.end.After(sigterm) {
				codesSeen["allowed, answered after SIGTERM"]++
			}
		case r.got == grpcError && r.code == codes.Unavailable:
			codesSeen["Unavailable"]++
		default:
			failures++
			codesSeen[fmt.Sprintf("%v/%v", r.got, r.code)]++
		}
	}
	keys := make([]string, 0, len(codesSeen))
	for k := range codesSeen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("SIGTERM under %d concurrent Checks: %d Checks, outcomes %v; held Check answered %v after SIGTERM; exit %v after SIGTERM",
		loadWorkers, len(records), codesSeen, h.end.Sub(sigterm), exited.Sub(sigterm))
	if failures > 0 {
		t.Errorf("%d Checks failed with something other than a decision or Unavailable: %v", failures, keys)
	}
	if codesSeen["allowed"] == 0 {
		t.Error("no Check completed under load")
	}
}
