package extauthz

import (
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers grpc-go's default codec
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/stepup-authz/stepup-authz/internal/bench"
	"github.com/stepup-authz/stepup-authz/policy"
)

// benchToken is shaped like the ~800-byte RS256 token of BENCHMARKS.md.
var benchToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoLTAxMjM0NTY3ODlhYiIsInR5cCI6IkpXVCJ9." +
	string(make([]byte, 0)) + repeat("eyJzdWIiOiIwMHUxYTJiM2M0ZDVlNmY3ZzhoOSJ9", 10) + "." + repeat("c2lnbmF0dXJl", 28)

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

// allowOutcome is an allow with identity headers, as a cached aal2 token gets.
func allowOutcome() (*outcome, *attributes) {
	c := &policy.Claims{Issuer: "https://idp", Subject: "00u1a2b3c4d5e6f7g8h9", ACR: "aal2", HasACR: true,
		AuthTime: time.Unix(1_800_000_000, 0)}
	o := &outcome{claims: c, rules: &policy.IssuerRules{},
		decision: policy.Decision{Reason: policy.ReasonAllowed, Level: "aal2",
			Policy: policy.Policy{RequiredACR: "aal2", MaxAge: 300 * time.Second, HasMaxAge: true}}}
	return o, &attributes{}
}

// BenchmarkCodec compares grpc-go's default codec (codec=grpc) with Codec on
// the CheckRequest of BENCHMARKS.md and on an allow response.
//
//	go test -run='^$' -bench=Codec -benchmem ./extauthz
func BenchmarkCodec(b *testing.B) {
	req, err := proto.Marshal(bench.Request(benchToken))
	if err != nil {
		b.Fatal(err)
	}
	o, a := allowOutcome()
	resp := buildResponse(o, a)
	codecs := map[string]encoding.CodecV2{"grpc": encoding.GetCodecV2("proto"), "stepup": Codec{}}
	for _, name := range []string{"grpc", "stepup"} {
		c := codecs[name]
		b.Run("op=unmarshal_request/codec="+name, func(b *testing.B) {
			data := mem.BufferSlice{mem.SliceBuffer(req)}
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				var m authv3.CheckRequest
				if err := c.Unmarshal(data, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=marshal_response/codec="+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := c.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				d.Free()
			}
		})
	}
}

// BenchmarkBuildResponse builds the CheckResponse of each kind of decision.
func BenchmarkBuildResponse(b *testing.B) {
	allow, a := allowOutcome()
	stepUp, _ := allowOutcome()
	stepUp.decision.Reason = policy.ReasonAuthTooOld
	invalid := &outcome{decision: policy.Decision{Reason: policy.ReasonTokenInvalid}, rules: &policy.IssuerRules{}}
	forged := &attributes{stepupHeaders: []string{"x-stepup-sub", "x-stepup-admin"}}
	for _, tc := range []struct {
		name string
		o    *outcome
		a    *attributes
	}{
		{"decision=allow", allow, a},
		{"decision=allow_forged_headers", allow, forged},
		{"decision=step_up", stepUp, a},
		{"decision=deny_invalid", invalid, a},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := buildResponse(tc.o, tc.a); r.Status == nil {
					b.Fatal("no status")
				}
			}
		})
	}
}
