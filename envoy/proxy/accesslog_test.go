package proxy

import (
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestAccessLog(t *testing.T) {
	tests := []struct {
		name    string
		yaml    func(t *testing.T) []byte
		authzNS string // cluster name of the authz server
		path    string
		headers http.Header
		// one record per request is expected, with these attributes
		want     map[string]string
		wantLine *regexp.Regexp
	}{
		{
			name:    "the shipped format logs the decision and reason from ext_authz's dynamic metadata",
			yaml:    func(t *testing.T) []byte { return readShipped(t, "envoy.yaml") },
			authzNS: "stepup_authz",
			path:    "/api/payout-destination?x=1",
			want:    map[string]string{"method": "GET", "path": "/api/payout-destination?x=1", "status": "401", "decision": "deny", "reason": "token_missing"},
			wantLine: regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /api/payout-destination\?x=1 HTTP/1\.1" 401 UAEX ` +
				`route=payout-destination stepup_decision=deny stepup_reason=token_missing duration_ms=\d+$`),
		},
		{
			name:     "an allowed request logs the allow decision and the upstream status",
			yaml:     func(t *testing.T) []byte { return readShipped(t, "envoy.yaml") },
			authzNS:  "stepup_authz",
			path:     "/api/payout-destination",
			headers:  http.Header{"Authorization": {"Bearer good"}},
			want:     map[string]string{"status": "200", "decision": "allow", "reason": "allowed"},
			wantLine: regexp.MustCompile(`" 200 - route=payout-destination stepup_decision=allow stepup_reason=allowed `),
		},
		{
			name: "unknown operators print a dash, known ones their value",
			yaml: func(t *testing.T) []byte {
				return config{
					hcm: M{"access_log": L{M{"name": "log", "typed_config": M{"@type": stdoutLog, "log_format": M{"text_format_source": M{
						"inline_string": "%NOT_AN_OPERATOR% %REQ(:PATH)% %REQ(X-MISSING)% %REQ(USER-AGENT):3% %RESP(X-UPSTREAM)% 100%% %DYNAMIC_METADATA(envoy.filters.http.ext_authz:nope)% %DYNAMIC_METADATA(envoy.filters.http.ext_authz:ext_authz_duration)% %RESPONSE_CODE_DETAILS%\n",
					}}}}}},
					filters: L{extAuthz(nil)},
				}.yaml(t)
			},
			authzNS:  "authz",
			path:     "/x",
			headers:  http.Header{"User-Agent": {"test-agent"}},
			want:     map[string]string{"status": "200", "decision": "allow", "reason": "allowed"},
			wantLine: regexp.MustCompile(`^- /x - tes app 100% - \d+ via_upstream$`),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logRecords{}
			authz := startAuthz(t, stepupServer)
			up := startUpstream(t)
			f := startProxy(t, tc.yaml(t), Options{
				Logger:       slog.New(logs),
				ClusterAddrs: map[string]string{tc.authzNS: authz.addr, "app": up.addr()},
			})
			for range 2 {
				body(t, f.do(t, http.MethodGet, tc.path, tc.headers))
			}
			recs := logs.waitMessages(t, "access", 2)
			if len(recs) != 2 {
				t.Fatalf("%d access records for 2 requests, want 2", len(recs))
			}
			for k, v := range tc.want {
				if recs[0][k] != v {
					t.Errorf("%s = %q, want %q", k, recs[0][k], v)
				}
			}
			if !tc.wantLine.MatchString(recs[0]["log"]) {
				t.Errorf("line %q does not match %s", recs[0]["log"], tc.wantLine)
			}
			if strings.Contains(recs[0]["log"], "\n") {
				t.Errorf("line %q keeps its newline", recs[0]["log"])
			}
			var warnings int
			logs.mu.Lock()
			for _, r := range logs.recs {
				if r.Level == slog.LevelWarn && strings.Contains(r.Message, "operator") {
					warnings++
				}
			}
			logs.mu.Unlock()
			if wantWarn := strings.Contains(tc.name, "unknown operators"); (warnings == 1) != wantWarn || warnings > 1 {
				t.Errorf("%d operator warnings, want %v once", warnings, wantWarn)
			}
		})
	}
}

func TestNoAccessLogWithoutConfig(t *testing.T) {
	logs := &logRecords{}
	up := startUpstream(t)
	f := startProxy(t, config{}.yaml(t), Options{Logger: slog.New(logs), ClusterAddrs: map[string]string{"app": up.addr()}})
	body(t, f.do(t, http.MethodGet, "/x", nil))
	if recs := logs.messages("access"); len(recs) != 0 {
		t.Errorf("%d access records without access_log, want none", len(recs))
	}
}
