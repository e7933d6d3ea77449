package wire

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/internal/bench"
)

// codecRequests are CheckRequests the fast decoder must handle itself, and
// exactly as proto.Unmarshal does: everything Envoy's ext_authz filter fills.
func codecRequests(t testing.TB) map[string]*authv3.CheckRequest {
	t.Helper()
	must := func(m map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	full := bench.Request("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	a := full.Attributes
	a.Source.Principal = "spiffe://cluster.local/ns/web/sa/frontend"
	a.Source.Service = "frontend"
	a.Source.Labels = map[string]string{"app": "web", "": "empty key", "empty value": ""}
	a.Source.Certificate = "-----BEGIN%20CERTIFICATE-----"
	a.Destination.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "http"}
	a.Destination.Address.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
	a.Destination.Address.GetSocketAddress().ResolverName = "dns"
	a.Destination.Address.GetSocketAddress().Ipv4Compat = true
	a.ContextExtensions = map[string]string{"required_acr": "aal3", "max_age": "60", "other": "ünïcode ✓"}
	a.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.filters.http.jwt_authn": must(map[string]any{"jwt_payload": map[string]any{
			"iss": "https://idp", "exp": 1.8e9, "aud": []any{"a", "b"}, "amr": []any{"pwd", "otp"},
			"nested": map[string]any{"deep": []any{nil, true, false, 1.5, "x", map[string]any{}}},
		}}),
		"other": must(map[string]any{}),
	}}
	a.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "app.example.com"}
	h := a.Request.Http
	h.Query, h.Fragment, h.Size, h.Body = "q", "f", 42, `{"account":"DE89"}`
	h.RawBody = []byte{0, 1, 2, 0xff}
	a.RouteMetadataContext.FilterMetadata["stepup"].Fields["name"] = structpb.NewStringValue("payout")
	a.RouteMetadataContext.FilterMetadata["stepup"].Fields["neg"] = structpb.NewNumberValue(math.Inf(-1))

	raw := bench.Request("tok")
	raw.Attributes.Request.Http.Headers = nil
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte("app.example.com")},
		{Key: "authorization", RawValue: []byte("Bearer a")},
		{Key: "Authorization", RawValue: []byte("Bearer b")},
		{Key: "x-bin", RawValue: []byte{0xff, 0xfe}},
		{Key: "x-old", Value: "value, not raw_value"},
		{Key: "x-empty"},
	}}

	return map[string]*authv3.CheckRequest{
		"bench":       bench.Request("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
		"no token":    bench.Request(""),
		"every field": full,
		"header_map":  raw,
		"empty":       {},
		"empty attrs": {Attributes: &authv3.AttributeContext{}},
		"empty http":  {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}},
	}
}

// decodeBoth decodes b with the codec's fast path and with proto.Unmarshal.
func decodeBoth(t testing.TB, b []byte) (fast *authv3.CheckRequest, fastOK bool, want *authv3.CheckRequest, wantErr error) {
	t.Helper()
	fast = &authv3.CheckRequest{}
	fastOK = fastDecode(bytes.Clone(b), fast)
	want = &authv3.CheckRequest{}
	wantErr = proto.Unmarshal(b, want)
	return fast, fastOK, want, wantErr
}

func TestCodecDecodesEnvoyRequestsItself(t *testing.T) {
	for name, req := range codecRequests(t) {
		for _, det := range []bool{false, true} {
			b, err := proto.MarshalOptions{Deterministic: det}.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			fast, ok, want, err := decodeBoth(t, b)
			if err != nil {
				t.Fatalf("%s: proto.Unmarshal: %v", name, err)
			}
			if !ok {
				t.Errorf("%s: the fast decoder handed the request to proto.Unmarshal", name)
				continue
			}
			if !proto.Equal(fast, want) || !proto.Equal(fast, req) {
				t.Errorf("%s: fast decoder gave\n%v\nwant\n%v", name, fast, want)
			}
		}
	}
}

// TestCodecRepeatedFields: protobuf merges a repeated message field, keeps the
// last of a repeated scalar and the last of two map entries with one key.
func TestCodecRepeatedFields(t *testing.T) {
	parts := []*authv3.CheckRequest{
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/a", Headers: map[string]string{"a": "1", "k": "first"}}}}},
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Headers: map[string]string{"b": "2", "k": "second"}}}}},
		{Attributes: &authv3.AttributeContext{RouteMetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"stepup": {Fields: map[string]*structpb.Value{"required_acr": structpb.NewStringValue("aal1")}}}}}},
		{Attributes: &authv3.AttributeContext{RouteMetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"stepup": {Fields: map[string]*structpb.Value{"max_age": structpb.NewNumberValue(300)}}}}}},
	}
	var b []byte
	for _, p := range parts {
		pb, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, pb...)
	}
	// A struct value given as a string, then as a struct twice (merged), and a
	// list given twice (appended).
	v := protowire.AppendTag(nil, 3, protowire.BytesType)
	v = protowire.AppendString(v, "replaced")
	for _, k := range []string{"x", "y"} {
		inner, _ := proto.Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{k: structpb.NewBoolValue(true)}})
		v = protowire.AppendTag(v, 5, protowire.BytesType)
		v = protowire.AppendBytes(v, inner)
	}
	for range 2 {
		list, _ := proto.Marshal(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNullValue()}})
		v = protowire.AppendTag(v, 6, protowire.BytesType)
		v = protowire.AppendBytes(v, list)
	}
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "odd")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, v)
	st := protowire.AppendTag(nil, 1, protowire.BytesType)
	st = protowire.AppendBytes(st, entry)
	mdEntry := protowire.AppendTag(nil, 1, protowire.BytesType)
	mdEntry = protowire.AppendString(mdEntry, "ns")
	mdEntry = protowire.AppendTag(mdEntry, 2, protowire.BytesType)
	mdEntry = protowire.AppendBytes(mdEntry, st)
	md := protowire.AppendTag(nil, 1, protowire.BytesType)
	md = protowire.AppendBytes(md, mdEntry)
	attrs := protowire.AppendTag(nil, 11, protowire.BytesType)
	attrs = protowire.AppendBytes(attrs, md)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, attrs)

	fast, ok, want, err := decodeBoth(t, b)
	if err != nil || !ok {
		t.Fatalf("proto: %v, fast path: %v", err, ok)
	}
	if !proto.Equal(fast, want) {
		t.Fatalf("fast decoder gave\n%v\nwant\n%v", fast, want)
	}
	if h := want.GetAttributes().GetRequest().GetHttp(); h.Method != "POST" || h.Path != "/a" || h.Headers["k"] != "second" || len(h.Headers) != 3 {
		t.Fatalf("the test's premise is wrong: %v", h)
	}
}

// TestCodecHandsOverTheRest: requests outside the fast decoder's fields go to
// proto.Unmarshal and come out identical, errors included.
func TestCodecHandsOverTheRest(t *testing.T) {
	typed := bench.Request("tok")
	anyv, err := anypb.New(structpb.NewStringValue("x"))
	if err != nil {
		t.Fatal(err)
	}
	typed.Attributes.RouteMetadataContext.TypedFilterMetadata = map[string]*anypb.Any{"stepup": anyv}
	pipe := bench.Request("tok")
	pipe.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/s"}}}
	good, err := proto.Marshal(bench.Request("tok"))
	if err != nil {
		t.Fatal(err)
	}
	unknown := protowire.AppendTag(bytes.Clone(good), 99, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 7)
	badUTF8 := bytes.Replace(bytes.Clone(good), []byte("app.example.com"), []byte("app.ex\xffmple.com"), 1)

	cases := map[string][]byte{"unknown field": unknown, "invalid UTF-8": badUTF8, "truncated": good[:len(good)-3]}
	for name, m := range map[string]*authv3.CheckRequest{"typed metadata": typed, "pipe address": pipe} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		cases[name] = b
	}
	for name, b := range cases {
		_, ok, want, wantErr := decodeBoth(t, b)
		if ok {
			t.Errorf("%s: the fast decoder accepted it", name)
		}
		got := &authv3.CheckRequest{}
		err := Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got)
		if (err == nil) != (wantErr == nil) {
			t.Errorf("%s: codec error %v, proto error %v", name, err, wantErr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Errorf("%s: codec gave\n%v\nwant\n%v", name, got, want)
		}
	}
}

// TestCodecKeepsNoBufferOfGRPC: the decoded strings must not point into the
// buffer grpc passed in, which grpc reuses once Unmarshal returns.
func TestCodecKeepsNoBufferOfGRPC(t *testing.T) {
	b, err := proto.Marshal(bench.Request("tok"))
	if err != nil {
		t.Fatal(err)
	}
	in := bytes.Clone(b)
	got := &authv3.CheckRequest{}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(in)}, got); err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 'X'
	}
	if want := bench.Request("tok"); !proto.Equal(got, want) {
		t.Fatalf("the request changed with grpc's buffer:\n%v", got)
	}
}

func TestCodecMarshal(t *testing.T) {
	resp := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: `Bearer error="invalid_token"`},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
			Body: `{"error":"unauthorized"}`,
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"reason": structpb.NewStringValue("token_invalid")}},
	}
	data, err := Codec{}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	got := &authv3.CheckResponse{}
	if err := proto.Unmarshal(data.Materialize(), got); err != nil {
		t.Fatal(err)
	}
	data.Free()
	if !proto.Equal(got, resp) {
		t.Fatalf("round trip gave\n%v\nwant\n%v", got, resp)
	}
	if _, err := (Codec{}).Marshal(42); err == nil {
		t.Error("marshalled an int")
	}
}

// FuzzCodecRequest holds the fast decoder to proto.Unmarshal on any input:
// both fail, or both succeed with equal messages.
func FuzzCodecRequest(f *testing.F) {
	for _, req := range codecRequests(f) {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := &authv3.CheckRequest{}
		err := unmarshalCheckRequest(bytes.Clone(b), got)
		want := &authv3.CheckRequest{}
		wantErr := proto.Unmarshal(b, want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("codec error %v, proto error %v", err, wantErr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatalf("codec gave\n%v\nwant\n%v", got, want)
		}
	})
}

// TestCodecMutations is FuzzCodecRequest's property over seeded random
// mutations of real requests, so every `go test` run checks it broadly.
func TestCodecMutations(t *testing.T) {
	var seeds [][]byte
	for _, req := range codecRequests(t) {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	iterations := 20000
	if testing.Short() {
		iterations = 2000
	}
	fast := 0
	for i := range iterations {
		b := bytes.Clone(seeds[rng.IntN(len(seeds))])
		for range 1 + rng.IntN(3) {
			if len(b) == 0 {
				break
			}
			p := rng.IntN(len(b))
			switch rng.IntN(6) {
			case 0: // flip bits
				b[p] ^= byte(1 << rng.IntN(8))
			case 1: // set a byte
				b[p] = byte(rng.IntN(256))
			case 2: // delete a run
				b = append(b[:p], b[min(len(b), p+1+rng.IntN(8)):]...)
			case 3: // truncate
				b = b[:p]
			case 4: // duplicate a run
				q := min(len(b), p+1+rng.IntN(64))
				b = append(b[:q], append(bytes.Clone(b[p:q]), b[q:]...)...)
			case 5: // a small varint where a length or tag was
				b[p] = byte(rng.IntN(16))
			}
		}
		got := &authv3.CheckRequest{}
		fastOK := fastDecode(bytes.Clone(b), got)
		err := unmarshalCheckRequest(bytes.Clone(b), got)
		want := &authv3.CheckRequest{}
		wantErr := proto.Unmarshal(b, want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("mutation %d: codec error %v, proto error %v\ninput %x", i, err, wantErr, b)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatalf("mutation %d: codec gave\n%v\nwant\n%v\ninput %x", i, got, want, b)
		}
		if fastOK {
			fast++
		}
	}
	t.Logf("%d of %d mutated requests decoded by the fast path", fast, iterations)
}

// fastDecode runs the fast decoder alone (no fallback).
func fastDecode(b []byte, m *authv3.CheckRequest) bool {
	d := dec{blk: &reqBlock{}}
	return d.decodeCheckRequest(b, m)
}
