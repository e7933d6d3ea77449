package extauthz_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepup-authz/stepup-authz/extauthz"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func observed(t *testing.T) (*harness, *extauthz.Metrics, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	m := extauthz.NewMetrics(prometheus.NewRegistry())
	h := newHarnessWith(t, extauthz.Options{Metrics: m, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	return h, m, logs
}

func TestDenialIsLoggedOnceWithItsReasonAndNeverTheToken(t *testing.T) {
	h, m, logs := observed(t)
	tok := h.user(t, "aal1", 10*time.Minute)
	h.check(t, req{method: "POST", path: "/api/payout-destination?secret=s3", headers: bearer(tok)})
	out := logs.String()
	if n := strings.Count(out, "msg=denied"); n != 1 {
		t.Fatalf("%d denial lines, want 1:\n%s", n, out)
	}
	for _, want := range []string{"reason=acr_too_low", "policy=payout-destination", "sub=user-1", "request_id=rid-1", "path=/api/payout-destination "} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{tok[:30], "secret=s3"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("deny", "acr_too_low", "payout-destination")); got != 1 {
		t.Errorf("deny counter = %v, want 1", got)
	}
	if got := checksObserved(t, m, "deny", "miss"); got != 1 {
		t.Errorf("latency histogram deny/miss count = %d, want 1", got)
	}
}

func TestDryRunDenialIsLoggedAndCountedAsDryRun(t *testing.T) {
	h, m, logs := observed(t)
	h.check(t, req{path: "/api/reports/q3", headers: bearer(h.user(t, "aal1", 0))})
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("dry_run_deny", "acr_too_low", "reports")); got != 1 {
		t.Errorf("dry-run counter = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "dry run: would have denied") {
		t.Errorf("no dry-run log line:\n%s", logs.String())
	}
}
