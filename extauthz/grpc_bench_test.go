package extauthz_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/stepup-authz/stepup-authz/extauthz/wire"
	"github.com/stepup-authz/stepup-authz/internal/bench"
)

// okServer is the naive floor: always OK, grpc-go defaults.
type okServer struct {
	authv3.UnimplementedAuthorizationServer
}

func (okServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

// BenchmarkCheckGRPC is a Check over loopback gRPC, 64 in flight on one
// connection, sent by the bench tool's lean HTTP/2 client with a 200ms
// grpc-timeout as Envoy sends, for the naive always-OK floor (grpc-go
// defaults) and for stepup-authz (cached aal2 token) with grpc-go's defaults
// and with the options serve uses (its codec, stream workers). Client and server share the process,
// so ns/op and allocs/op count both; the client is the same in every case, so
// differences are the server's. cpu-ns/op is the process's CPU time per
// Check, steadier than ns/op on a busy machine. It is also how to profile the
// whole path:
//
//	go test -run='^$' -bench=CheckGRPC/server=stepup-authz/options=serve -cpuprofile=cpu.out ./extauthz
//	go tool pprof -top cpu.out
func BenchmarkCheckGRPC(b *testing.B) {
	for _, tc := range []struct {
		name  string
		floor bool
		opts  []grpc.ServerOption
	}{
		{"server=floor", true, nil},
		{"server=stepup-authz/options=grpc-defaults", false, nil},
		// As serve wires it: its codec and stream workers.
		{"server=stepup-authz/options=serve", false, []grpc.ServerOption{grpc.ForceServerCodecV2(wire.Codec{}), grpc.NumStreamWorkers(64)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var srv authv3.AuthorizationServer = okServer{}
			tok := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("e30", 200) + "." + strings.Repeat("c2ln", 86)
			if !tc.floor {
				f := newCheckFixture(b, 100000)
				srv, tok = f.srv, f.token(b, "aal2", 1)
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			gs := grpc.NewServer(tc.opts...)
			authv3.RegisterAuthorizationServer(gs, srv)
			go func() { _ = gs.Serve(lis) }()
			b.Cleanup(gs.Stop)

			msg, err := proto.Marshal(bench.Request(tok))
			if err != nil {
				b.Fatal(err)
			}
			src, err := bench.NewMixSource(bench.Mix{Cached: 1}, &bench.Pools{Cached: []*bench.Item{{Msg: bench.Frame(msg), Expect: 0}}})
			if err != nil {
				b.Fatal(err)
			}
			s, err := bench.DialH2(lis.Addr().String(), 128, 200*time.Millisecond)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			run := func(n int) {
				st, err := bench.Run([]bench.Sender{s}, src, bench.Load{Concurrency: 64, Count: int64(n)})
				if err != nil || st.Errors > 0 || st.Unexpected > 0 {
					b.Fatalf("%v %+v", err, st)
				}
			}
			run(1000) // warm up
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := bench.SelfCPU()
			run(b.N)
			// CPU time (client and server) is steadier than wall time on a
			// shared machine.
			b.ReportMetric(float64(bench.SelfCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
