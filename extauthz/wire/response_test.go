package wire

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestCodecResponseFields fails when a message the CheckResponse encoder
// walks gains or loses a field (a go-control-plane upgrade): the encoder must
// then learn it, or it would be dropped from responses silently.
func TestCodecResponseFields(t *testing.T) {
	for _, tc := range []struct {
		m      proto.Message
		fields []string // every field; the encoder writes them or hands the message to proto.Marshal
	}{
		{&authv3.CheckResponse{}, []string{"status", "denied_response", "ok_response", "error_response", "dynamic_metadata"}},
		{&rpcstatus.Status{}, []string{"code", "message", "details"}},
		{&authv3.DeniedHttpResponse{}, []string{"status", "headers", "body"}},
		{&typev3.HttpStatus{}, []string{"code"}},
		{&authv3.OkHttpResponse{}, []string{"headers", "headers_to_remove", "dynamic_metadata", "response_headers_to_add", "query_parameters_to_set", "query_parameters_to_remove"}},
		{&corev3.HeaderValueOption{}, []string{"header", "append", "append_action", "keep_empty_value"}},
		{&corev3.HeaderValue{}, []string{"key", "value", "raw_value"}},
		{&wrapperspb.BoolValue{}, []string{"value"}},
		{&structpb.Struct{}, []string{"fields"}},
		{&structpb.Value{}, []string{"null_value", "number_value", "string_value", "bool_value", "struct_value", "list_value"}},
		{&structpb.ListValue{}, []string{"values"}},
	} {
		fds := tc.m.ProtoReflect().Descriptor().Fields()
		var got []string
		for i := range fds.Len() {
			got = append(got, string(fds.Get(i).Name()))
		}
		slices.Sort(got)
		want := slices.Clone(tc.fields)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v; the encoder knows %v", tc.m.ProtoReflect().Descriptor().FullName(), got, want)
		}
	}
}

// randomResponse fills every field the encoder writes, with edge values.
func randomResponse(r *rand.Rand) *authv3.CheckResponse {
	strs := []string{"", "a", "x-stepup-sub", "ünïcode ✓", strings.Repeat("b", 200), `Bearer error="insufficient_user_authentication"`}
	str := func() string { return strs[r.IntN(len(strs))] }
	hdrs := func() []*corev3.HeaderValueOption {
		var out []*corev3.HeaderValueOption
		for range r.IntN(4) {
			h := &corev3.HeaderValueOption{AppendAction: corev3.HeaderValueOption_HeaderAppendAction(r.IntN(4)), KeepEmptyValue: r.IntN(2) == 0}
			if r.IntN(5) > 0 {
				h.Header = &corev3.HeaderValue{Key: str(), Value: str()}
				if r.IntN(3) == 0 {
					h.Header.RawValue = []byte{0, 1, 0xff}
				}
			}
			if r.IntN(3) == 0 {
				//lint:ignore SA1019 the encoder must write the deprecated field as proto.Marshal does.
				h.Append = wrapperspb.Bool(r.IntN(2) == 0)
			}
			out = append(out, h)
		}
		return out
	}
	strsOf := func() []string {
		var out []string
		for range r.IntN(4) {
			out = append(out, str())
		}
		return out
	}
	var value func(depth int) *structpb.Value
	var strct func(depth int) *structpb.Struct
	value = func(depth int) *structpb.Value {
		switch k := r.IntN(7); {
		case k == 0:
			return &structpb.Value{}
		case k == 1:
			return structpb.NewNullValue()
		case k == 2:
			return structpb.NewNumberValue([]float64{0, -1, 300, math.Inf(1), 1e300, 0.5}[r.IntN(6)])
		case k == 3:
			return structpb.NewStringValue(str())
		case k == 4:
			return structpb.NewBoolValue(r.IntN(2) == 0)
		case k == 5 && depth < 4:
			return structpb.NewStructValue(strct(depth + 1))
		case depth < 4:
			l := &structpb.ListValue{}
			for range r.IntN(3) {
				l.Values = append(l.Values, value(depth+1))
			}
			return structpb.NewListValue(l)
		}
		return structpb.NewStringValue("leaf")
	}
	strct = func(depth int) *structpb.Struct {
		s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for range r.IntN(4) {
			s.Fields[str()] = value(depth)
		}
		return s
	}
	resp := &authv3.CheckResponse{}
	if r.IntN(5) > 0 {
		resp.Status = &rpcstatus.Status{Code: []int32{0, 7, -1, 16, math.MaxInt32}[r.IntN(5)], Message: str()}
	}
	denied := func() *authv3.DeniedHttpResponse {
		d := &authv3.DeniedHttpResponse{Headers: hdrs(), Body: str()}
		if r.IntN(4) > 0 {
			d.Status = &typev3.HttpStatus{Code: []typev3.StatusCode{0, 401, 403, 503}[r.IntN(4)]}
		}
		return d
	}
	switch r.IntN(4) {
	case 1:
		resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied()}
	case 2:
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: hdrs(), HeadersToRemove: strsOf(), ResponseHeadersToAdd: hdrs(), QueryParametersToRemove: strsOf()}}
	case 3:
		resp.HttpResponse = &authv3.CheckResponse_ErrorResponse{ErrorResponse: denied()}
	}
	if r.IntN(4) > 0 {
		resp.DynamicMetadata = strct(0)
	}
	return resp
}

// TestCodecResponseRoundTrip: what the encoder writes is what proto.Marshal
// writes, up to field and map order: the same size, and it decodes to an
// equal message.
func TestCodecResponseRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 20000 {
		resp := randomResponse(r)
		size, ok := sizeCheckResponse(resp)
		if !ok {
			t.Fatalf("%d: the encoder refused %v", i, resp)
		}
		if want := proto.Size(resp); size != want {
			t.Fatalf("%d: size %d, proto.Size %d for %v", i, size, want, resp)
		}
		data, err := Codec{}.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		got := &authv3.CheckResponse{}
		if err := proto.Unmarshal(data.Materialize(), got); err != nil {
			t.Fatalf("%d: %v\n%v", i, err, resp)
		}
		if !proto.Equal(got, resp) {
			t.Fatalf("%d: decoded\n%v\nwant\n%v", i, got, resp)
		}
		data.Free()
	}
}

// TestCodecResponseHandsOverTheRest: responses with what the encoder does not
// write come out of proto.Marshal, errors included.
func TestCodecResponseHandsOverTheRest(t *testing.T) {
	anyv, err := anypb.New(structpb.NewStringValue("x"))
	if err != nil {
		t.Fatal(err)
	}
	withUnknown := &authv3.CheckResponse{}
	b := protowire.AppendTag(nil, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	if err := proto.Unmarshal(b, withUnknown); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		resp    *authv3.CheckResponse
		wantErr bool
	}{
		"status details": {&authv3.CheckResponse{Status: &rpcstatus.Status{Details: []*anypb.Any{anyv}}}, false},
		"query to set":   {&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{QueryParametersToSet: []*corev3.QueryParameter{{Key: "a"}}}}}, false},
		//lint:ignore SA1019 the deprecated field must still leave the fast path.
		"ok metadata":     {&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{DynamicMetadata: &structpb.Struct{}}}}, false},
		"unknown field":   {withUnknown, false},
		"nil header":      {&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Headers: []*corev3.HeaderValueOption{nil}}}}, false},
		"invalid UTF-8":   {&authv3.CheckResponse{Status: &rpcstatus.Status{Message: "\xff"}}, true},
		"invalid map key": {&authv3.CheckResponse{DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"\xff": structpb.NewNullValue()}}}, true},
	} {
		if _, ok := sizeCheckResponse(tc.resp); ok {
			t.Errorf("%s: the encoder took it", name)
		}
		data, err := Codec{}.Marshal(tc.resp)
		want, wantErr := proto.Marshal(tc.resp)
		if (err != nil) != (wantErr != nil) || (err != nil) != tc.wantErr {
			t.Errorf("%s: codec error %v, proto error %v", name, err, wantErr)
			continue
		}
		if err == nil && string(data.Materialize()) != string(want) {
			t.Errorf("%s: codec wrote %x, proto %x", name, data.Materialize(), want)
		}
	}
}

// FuzzCodecResponse holds the encoder to proto.Marshal on any CheckResponse
// proto.Unmarshal can produce: both fail, or both succeed with the same size
// and what the codec wrote decodes to an equal message.
func FuzzCodecResponse(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 16 {
		b, err := proto.Marshal(randomResponse(r))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resp := &authv3.CheckResponse{}
		if proto.Unmarshal(b, resp) != nil {
			return
		}
		data, err := Codec{}.Marshal(resp)
		want, wantErr := proto.Marshal(resp)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("codec error %v, proto error %v", err, wantErr)
		}
		if err != nil {
			return
		}
		defer data.Free()
		if data.Len() != len(want) {
			t.Fatalf("codec wrote %d bytes, proto %d, for %v", data.Len(), len(want), resp)
		}
		got := &authv3.CheckResponse{}
		if err := proto.Unmarshal(data.Materialize(), got); err != nil {
			t.Fatalf("what the codec wrote does not decode: %v", err)
		}
		if !proto.Equal(got, resp) {
			t.Fatalf("codec round trip gave\n%v\nwant\n%v", got, resp)
		}
	})
}
