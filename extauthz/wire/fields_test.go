package wire

import (
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestFieldNumbers holds every named field number of the decoder and the
// encoder to the field of that name in the generated descriptors.
func TestFieldNumbers(t *testing.T) {
	for _, tc := range []struct {
		m     proto.Message
		field protoreflect.Name
		num   protowire.Number
	}{
		{&authv3.CheckRequest{}, "attributes", checkRequestAttributes},

		{&authv3.AttributeContext{}, "source", attrsSource},
		{&authv3.AttributeContext{}, "destination", attrsDestination},
		{&authv3.AttributeContext{}, "request", attrsRequest},
		{&authv3.AttributeContext{}, "context_extensions", attrsContextExtensions},
		{&authv3.AttributeContext{}, "metadata_context", attrsMetadataContext},
		{&authv3.AttributeContext{}, "tls_session", attrsTLSSession},
		{&authv3.AttributeContext{}, "route_metadata_context", attrsRouteMetadataContext},

		{&authv3.AttributeContext_Peer{}, "address", peerAddress},
		{&authv3.AttributeContext_Peer{}, "service", peerService},
		{&authv3.AttributeContext_Peer{}, "labels", peerLabels},
		{&authv3.AttributeContext_Peer{}, "principal", peerPrincipal},
		{&authv3.AttributeContext_Peer{}, "certificate", peerCertificate},

		{&corev3.Address{}, "socket_address", addressSocketAddress},

		{&corev3.SocketAddress{}, "protocol", socketProtocol},
		{&corev3.SocketAddress{}, "address", socketAddress},
		{&corev3.SocketAddress{}, "port_value", socketPortValue},
		{&corev3.SocketAddress{}, "named_port", socketNamedPort},
		{&corev3.SocketAddress{}, "resolver_name", socketResolverName},
		{&corev3.SocketAddress{}, "ipv4_compat", socketIpv4Compat},

		{&authv3.AttributeContext_Request{}, "time", requestTime},
		{&authv3.AttributeContext_Request{}, "http", requestHTTP},

		{&timestamppb.Timestamp{}, "seconds", timestampSeconds},
		{&timestamppb.Timestamp{}, "nanos", timestampNanos},

		{&authv3.AttributeContext_HttpRequest{}, "id", httpID},
		{&authv3.AttributeContext_HttpRequest{}, "method", httpMethod},
		{&authv3.AttributeContext_HttpRequest{}, "headers", httpHeaders},
		{&authv3.AttributeContext_HttpRequest{}, "path", httpPath},
		{&authv3.AttributeContext_HttpRequest{}, "host", httpHost},
		{&authv3.AttributeContext_HttpRequest{}, "scheme", httpScheme},
		{&authv3.AttributeContext_HttpRequest{}, "query", httpQuery},
		{&authv3.AttributeContext_HttpRequest{}, "fragment", httpFragment},
		{&authv3.AttributeContext_HttpRequest{}, "size", httpSize},
		{&authv3.AttributeContext_HttpRequest{}, "protocol", httpProtocol},
		{&authv3.AttributeContext_HttpRequest{}, "body", httpBody},
		{&authv3.AttributeContext_HttpRequest{}, "raw_body", httpRawBody},
		{&authv3.AttributeContext_HttpRequest{}, "header_map", httpHeaderMap},

		{&corev3.HeaderMap{}, "headers", headerMapHeaders},

		{&corev3.HeaderValue{}, "key", headerKey},
		{&corev3.HeaderValue{}, "value", headerValue},
		{&corev3.HeaderValue{}, "raw_value", headerRawValue},

		{&authv3.AttributeContext_TLSSession{}, "sni", tlsSNI},

		{&corev3.Metadata{}, "filter_metadata", metadataFilterMetadata},

		{&structpb.Struct{}, "fields", structFields},

		{&structpb.Value{}, "null_value", valueNull},
		{&structpb.Value{}, "number_value", valueNumber},
		{&structpb.Value{}, "string_value", valueString},
		{&structpb.Value{}, "bool_value", valueBool},
		{&structpb.Value{}, "struct_value", valueStruct},
		{&structpb.Value{}, "list_value", valueList},

		{&structpb.ListValue{}, "values", listValues},

		{&authv3.CheckResponse{}, "status", respStatus},
		{&authv3.CheckResponse{}, "denied_response", respDenied},
		{&authv3.CheckResponse{}, "ok_response", respOK},
		{&authv3.CheckResponse{}, "dynamic_metadata", respDynamicMetadata},
		{&authv3.CheckResponse{}, "error_response", respError},

		{&rpcstatus.Status{}, "code", statusCode},
		{&rpcstatus.Status{}, "message", statusMessage},

		{&typev3.HttpStatus{}, "code", httpStatusCode},

		{&authv3.DeniedHttpResponse{}, "status", deniedStatus},
		{&authv3.DeniedHttpResponse{}, "headers", deniedHeaders},
		{&authv3.DeniedHttpResponse{}, "body", deniedBody},

		{&authv3.OkHttpResponse{}, "headers", okHeaders},
		{&authv3.OkHttpResponse{}, "headers_to_remove", okHeadersToRemove},
		{&authv3.OkHttpResponse{}, "response_headers_to_add", okResponseHeadersToAdd},
		{&authv3.OkHttpResponse{}, "query_parameters_to_remove", okQueryParametersToRemove},

		{&corev3.HeaderValueOption{}, "header", optionHeader},
		{&corev3.HeaderValueOption{}, "append", optionAppend},
		{&corev3.HeaderValueOption{}, "append_action", optionAppendAction},
		{&corev3.HeaderValueOption{}, "keep_empty_value", optionKeepEmptyValue},

		{&wrapperspb.BoolValue{}, "value", boolValue},
	} {
		md := tc.m.ProtoReflect().Descriptor()
		fd := md.Fields().ByName(tc.field)
		if fd == nil {
			t.Errorf("%s has no field %s", md.FullName(), tc.field)
			continue
		}
		if fd.Number() != tc.num {
			t.Errorf("%s.%s is field %d; the codec names it %d", md.FullName(), tc.field, fd.Number(), tc.num)
		}
	}
	// Every map the codec walks has key 1 and value 2.
	for _, fd := range []protoreflect.FieldDescriptor{
		(&authv3.AttributeContext{}).ProtoReflect().Descriptor().Fields().ByNumber(attrsContextExtensions),
		(&authv3.AttributeContext_Peer{}).ProtoReflect().Descriptor().Fields().ByNumber(peerLabels),
		(&authv3.AttributeContext_HttpRequest{}).ProtoReflect().Descriptor().Fields().ByNumber(httpHeaders),
		(&corev3.Metadata{}).ProtoReflect().Descriptor().Fields().ByNumber(metadataFilterMetadata),
		(&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByNumber(structFields),
	} {
		if !fd.IsMap() || fd.MapKey().Number() != mapKey || fd.MapValue().Number() != mapValue {
			t.Errorf("%s is not a map of key %d and value %d", fd.FullName(), mapKey, mapValue)
		}
	}
}

// TestCodecRequestFields fails when a message the CheckRequest decoder walks
// gains or loses a field (a go-control-plane upgrade). A field the decoder
// does not know sends the whole request to proto.Unmarshal: still correct, but
// at the cost of both decoders, so a new field Envoy fills must be learnt.
func TestCodecRequestFields(t *testing.T) {
	for _, tc := range []struct {
		m      proto.Message
		fields []string // every field: the decoder reads them, or hands the request to proto.Unmarshal (marked "proto:")
	}{
		{&authv3.CheckRequest{}, []string{"attributes"}},
		{&authv3.AttributeContext{}, []string{"source", "destination", "request", "context_extensions", "metadata_context", "route_metadata_context", "tls_session"}},
		{&authv3.AttributeContext_Peer{}, []string{"address", "service", "labels", "principal", "certificate"}},
		{&authv3.AttributeContext_Request{}, []string{"time", "http"}},
		{&authv3.AttributeContext_HttpRequest{}, []string{"id", "method", "headers", "header_map", "path", "host", "scheme", "query", "fragment", "size", "protocol", "body", "raw_body"}},
		{&authv3.AttributeContext_TLSSession{}, []string{"sni"}},
		// Envoy's ext_authz filter sends peers as socket addresses.
		{&corev3.Address{}, []string{"socket_address", "proto:pipe", "proto:envoy_internal_address"}},
		{&corev3.SocketAddress{}, []string{"protocol", "address", "port_value", "named_port", "resolver_name", "ipv4_compat", "proto:network_namespace_filepath"}},
		// Typed metadata (Any) is left to proto.Unmarshal.
		{&corev3.Metadata{}, []string{"filter_metadata", "proto:typed_filter_metadata"}},
		{&corev3.HeaderMap{}, []string{"headers"}},
		{&corev3.HeaderValue{}, []string{"key", "value", "raw_value"}},
		{&timestamppb.Timestamp{}, []string{"seconds", "nanos"}},
		{&structpb.Struct{}, []string{"fields"}},
		{&structpb.Value{}, []string{"null_value", "number_value", "string_value", "bool_value", "struct_value", "list_value"}},
		{&structpb.ListValue{}, []string{"values"}},
	} {
		fds := tc.m.ProtoReflect().Descriptor().Fields()
		var got []string
		for i := range fds.Len() {
			got = append(got, string(fds.Get(i).Name()))
		}
		var want []string
		for _, f := range tc.fields {
			want = append(want, strings.TrimPrefix(f, "proto:"))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v; the decoder knows %v", tc.m.ProtoReflect().Descriptor().FullName(), got, want)
		}
	}
}
