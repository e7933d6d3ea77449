package wire

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/internal/bench"
)

// benchToken is shaped like the ~800-byte RS256 token of BENCHMARKS.md.
var benchToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoLTAxMjM0NTY3ODlhYiIsInR5cCI6IkpXVCJ9." +
	strings.Repeat("eyJzdWIiOiIwMHUxYTJiM2M0ZDVlNmY3ZzhoOSJ9", 10) + "." + strings.Repeat("c2lnbmF0dXJl", 28)

// allowResponse is shaped like the allow extauthz answers a cached aal2 token
// with: identity headers and the decision's dynamic metadata.
func allowResponse() *authv3.CheckResponse {
	header := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
			header("x-stepup-sub", "00u1a2b3c4d5e6f7g8h9"),
			header("x-stepup-acr", "aal2"),
			header("x-stepup-auth-time", "1800000000"),
		}}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"decision": structpb.NewStringValue("allow"),
			"reason":   structpb.NewStringValue("allowed"),
		}},
	}
}

// BenchmarkCodec compares grpc-go's standard codec (codec=proto) with Codec
// (codec=fast) on the CheckRequest of BENCHMARKS.md and on an allow response.
//
//	go test -run='^$' -bench=Codec -benchmem ./extauthz/wire
func BenchmarkCodec(b *testing.B) {
	req, err := proto.Marshal(bench.Request(benchToken))
	if err != nil {
		b.Fatal(err)
	}
	resp := allowResponse()
	for _, name := range Names {
		c, err := ServerCodec(name)
		if err != nil {
			b.Fatal(err)
		}
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
