package wire

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"unsafe"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/protobuf/proto"

	"github.com/stepup-authz/stepup-authz/internal/bench"
)

func TestServerCodecNames(t *testing.T) {
	if c, err := ServerCodec(Fast); err != nil || c != (Codec{}) {
		t.Errorf("ServerCodec(%q) = %v, %v; want Codec", Fast, c, err)
	}
	std := encoding.GetCodecV2(protoenc.Name)
	if c, err := ServerCodec(Proto); err != nil || c != std {
		t.Errorf("ServerCodec(%q) = %T, %v; want grpc-go's registered %T", Proto, c, err, std)
	}
	if _, ok := std.(Codec); ok {
		t.Error("grpc-go's registry holds Codec under \"proto\": nothing may register it")
	}
	if Default != Fast {
		t.Errorf("Default = %q; BENCHMARKS.md and README describe serve with the fast codec", Default)
	}
	_, err := ServerCodec("protobuf")
	if err == nil || !strings.Contains(err.Error(), `"protobuf"`) || !strings.Contains(err.Error(), "fast, proto") {
		t.Errorf("an unknown name gave %v; want an error naming it and the choices", err)
	}
	if _, err := ServerOption("grpc"); err == nil {
		t.Error("ServerOption took an unknown name")
	}
}

// capture is an ext_authz server that keeps the last request it was given.
type capture struct {
	authv3.UnimplementedAuthorizationServer
	got chan *authv3.CheckRequest
}

func (c *capture) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	c.got <- r
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

// checkOver sends req to a loopback gRPC server speaking the codec called
// name and returns the request as the server decoded it.
func checkOver(t *testing.T, name string, req *authv3.CheckRequest) *authv3.CheckRequest {
	t.Helper()
	opt, err := ServerOption(name)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opt)
	srv := &capture{got: make(chan *authv3.CheckRequest, 1)}
	authv3.RegisterAuthorizationServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), req); err != nil {
		t.Fatalf("codec %s: %v", name, err)
	}
	return <-srv.got
}

// TestServerOptionSelectsTheDecoder tells the decoders apart by what only the
// fast one does: every string of the request it decodes points into one copy
// of the message, at the string's offset in it. grpc-go's codec copies each
// string on its own.
func TestServerOptionSelectsTheDecoder(t *testing.T) {
	req := bench.Request("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	h := req.Attributes.Request.Http
	h.Id, h.Method, h.Path, h.Query = "probe-request-id", "PATCH", "/probe/path", "probe=query"
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		aliased bool
	}{{Fast, true}, {Proto, false}} {
		got := checkOver(t, tc.name, req)
		if !proto.Equal(got, req) {
			t.Fatalf("codec %s decoded\n%v\nwant\n%v", tc.name, got, req)
		}
		h := got.GetAttributes().GetRequest().GetHttp()
		// Fields of one message, whose distances do not depend on the order
		// the client wrote the headers map in.
		strs := []string{h.Id, h.Method, h.Path, h.Query}
		offset := func(s string) int {
			if bytes.Count(msg, []byte(s)) != 1 {
				t.Fatalf("%q is not in the message exactly once", s)
			}
			return bytes.Index(msg, []byte(s))
		}
		aliased := true
		for _, s := range strs[1:] {
			// Pointer distances only: no memory outside a string is read.
			dist := int(uintptr(unsafe.Pointer(unsafe.StringData(s))) - uintptr(unsafe.Pointer(unsafe.StringData(strs[0]))))
			aliased = aliased && dist == offset(s)-offset(strs[0])
		}
		if aliased != tc.aliased {
			t.Errorf("codec %s: strings point into one copy of the message: %v, want %v", tc.name, aliased, tc.aliased)
		}
	}
}
