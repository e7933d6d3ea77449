package e2e

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestReload rewrites the config under a running server: a valid change takes
// effect without a restart; an invalid one is refused, logged and counted,
// and the last good config keeps serving.
func TestReload(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, seedConfig)
	aal2 := userToken(t, idp, "aal2", 0)
	if resp := s.check(t, "POST", "/api/payout-destination", aal2); resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("before reload: %s", describe(resp))
	}

	s.writeConfig(t, idp, strings.Replace(seedConfig, "required_acr: aal2", "required_acr: aal3", 1))
	waitFor(t, "aal3 requirement after reload", func() bool {
		return s.check(t, "POST", "/api/payout-destination", aal2).GetDeniedResponse().GetStatus().GetCode() == 401
	})

	s.writeConfig(t, idp, strings.Replace(seedConfig, "required_acr: aal2", "required_acr: aal9", 1))
	waitFor(t, "invalid reload counted", func() bool {
		_, body := s.get(t, "/metrics")
		return strings.Contains(body, `stepup_config_reloads_total{result="invalid"} 1`)
	})
	if resp := s.check(t, "POST", "/api/payout-destination", aal2); resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Errorf("after invalid reload the last good (aal3) config must still serve: %s", describe(resp))
	}
	if !strings.Contains(s.stderr.String(), `aal9`) {
		t.Errorf("the refused reload's problem is not logged:\n%s", s.stderr.String())
	}
	s.stop(t)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
