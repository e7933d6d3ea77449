package wire

import (
	"math"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The CheckResponse encoder. It writes the protobuf wire format of every field
// of the messages a CheckResponse is made of, as vtprotobuf's generated code
// would: one size pass, then the fields written back to front into a buffer of
// exactly that size. A response holding what it does not write — unknown
// fields, status details, OkHttpResponse's deprecated dynamic_metadata or its
// query_parameters_to_set, nil elements, invalid UTF-8 (an error for
// proto.Marshal) — is left to proto.Marshal. TestCodecResponseFields fails
// when go-control-plane adds a field, so that none can be skipped silently,
// and TestFieldNumbers holds the names below to the descriptors
// (envoy/service/auth/v3/external_auth.proto, google/rpc/status.proto,
// envoy/type/v3/http_status.proto, envoy/config/core/v3/base.proto,
// google/protobuf/wrappers.proto; the rest are shared with request.go).
const (
	respStatus          protowire.Number = 1 // CheckResponse.status
	respDenied          protowire.Number = 2 // CheckResponse.denied_response
	respOK              protowire.Number = 3 // CheckResponse.ok_response
	respDynamicMetadata protowire.Number = 4 // CheckResponse.dynamic_metadata
	respError           protowire.Number = 5 // CheckResponse.error_response

	statusCode    protowire.Number = 1 // google.rpc.Status.code
	statusMessage protowire.Number = 2 // google.rpc.Status.message

	httpStatusCode protowire.Number = 1 // HttpStatus.code

	deniedStatus  protowire.Number = 1 // DeniedHttpResponse.status
	deniedHeaders protowire.Number = 2 // DeniedHttpResponse.headers
	deniedBody    protowire.Number = 3 // DeniedHttpResponse.body

	okHeaders                 protowire.Number = 2 // OkHttpResponse.headers
	okHeadersToRemove         protowire.Number = 5 // OkHttpResponse.headers_to_remove
	okResponseHeadersToAdd    protowire.Number = 6 // OkHttpResponse.response_headers_to_add
	okQueryParametersToRemove protowire.Number = 8 // OkHttpResponse.query_parameters_to_remove

	optionHeader         protowire.Number = 1 // HeaderValueOption.header
	optionAppend         protowire.Number = 2 // HeaderValueOption.append
	optionAppendAction   protowire.Number = 3 // HeaderValueOption.append_action
	optionKeepEmptyValue protowire.Number = 4 // HeaderValueOption.keep_empty_value

	boolValue protowire.Number = 1 // BoolValue.value
)

// sizeCheckResponse is the encoded size of m; ok is false when the encoder
// does not handle m.
func sizeCheckResponse(m *authv3.CheckResponse) (n int, ok bool) {
	if hasUnknown(m) {
		return 0, false
	}
	if m.Status != nil {
		s, ok := sizeStatus(m.Status)
		if !ok {
			return 0, false
		}
		n += sizeMsg(respStatus, s)
	}
	switch r := m.HttpResponse.(type) {
	case nil:
	case *authv3.CheckResponse_DeniedResponse:
		s, ok := sizeDenied(r.DeniedResponse)
		if !ok {
			return 0, false
		}
		n += sizeMsg(respDenied, s)
	case *authv3.CheckResponse_OkResponse:
		s, ok := sizeOK(r.OkResponse)
		if !ok {
			return 0, false
		}
		n += sizeMsg(respOK, s)
	case *authv3.CheckResponse_ErrorResponse:
		s, ok := sizeDenied(r.ErrorResponse)
		if !ok {
			return 0, false
		}
		n += sizeMsg(respError, s)
	default:
		return 0, false
	}
	if m.DynamicMetadata != nil {
		s, ok := sizeStruct(m.DynamicMetadata)
		if !ok {
			return 0, false
		}
		n += sizeMsg(respDynamicMetadata, s)
	}
	return n, true
}

// putCheckResponse writes m (sized by sizeCheckResponse) at the end of w.
func putCheckResponse(w *backWriter, m *authv3.CheckResponse) {
	if m.DynamicMetadata != nil {
		end := w.i
		putStruct(w, m.DynamicMetadata)
		w.msg(respDynamicMetadata, end)
	}
	switch r := m.HttpResponse.(type) {
	case *authv3.CheckResponse_ErrorResponse:
		end := w.i
		putDenied(w, r.ErrorResponse)
		w.msg(respError, end)
	case *authv3.CheckResponse_OkResponse:
		end := w.i
		putOK(w, r.OkResponse)
		w.msg(respOK, end)
	case *authv3.CheckResponse_DeniedResponse:
		end := w.i
		putDenied(w, r.DeniedResponse)
		w.msg(respDenied, end)
	}
	if m.Status != nil {
		end := w.i
		putStatus(w, m.Status)
		w.msg(respStatus, end)
	}
}

func hasUnknown(m proto.Message) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }

func sizeMsg(num protowire.Number, size int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(size)
}

func sizeString(num protowire.Number, s string) (int, bool) {
	if s == "" {
		return 0, true
	}
	if !utf8.ValidString(s) {
		return 0, false // proto.Marshal reports it
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s)), true
}

func sizeVarint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

// int32 values are sign-extended to 64 bits on the wire.
func i32(v int32) uint64 { return uint64(int64(v)) }

func sizeStatus(m *rpcstatus.Status) (int, bool) {
	if len(m.Details) > 0 || hasUnknown(m) {
		return 0, false
	}
	s, ok := sizeString(statusMessage, m.Message)
	return sizeVarint(statusCode, i32(m.Code)) + s, ok
}

func putStatus(w *backWriter, m *rpcstatus.Status) {
	w.str(statusMessage, m.Message)
	w.varint(statusCode, i32(m.Code))
}

func sizeHTTPStatus(m *typev3.HttpStatus) (int, bool) {
	if hasUnknown(m) {
		return 0, false
	}
	return sizeVarint(httpStatusCode, i32(int32(m.Code))), true
}

func sizeDenied(m *authv3.DeniedHttpResponse) (int, bool) {
	if m == nil || hasUnknown(m) {
		return 0, false
	}
	n := 0
	if m.Status != nil {
		s, ok := sizeHTTPStatus(m.Status)
		if !ok {
			return 0, false
		}
		n += sizeMsg(deniedStatus, s)
	}
	h, ok := sizeHeaders(deniedHeaders, m.Headers)
	if !ok {
		return 0, false
	}
	b, ok := sizeString(deniedBody, m.Body)
	return n + h + b, ok
}

func putDenied(w *backWriter, m *authv3.DeniedHttpResponse) {
	w.str(deniedBody, m.Body)
	putHeaders(w, 2, m.Headers)
	if m.Status != nil {
		end := w.i
		w.varint(httpStatusCode, i32(int32(m.Status.Code)))
		w.msg(deniedStatus, end)
	}
}

func sizeOK(m *authv3.OkHttpResponse) (int, bool) {
	//lint:ignore SA1019 a response with the deprecated ok_response.dynamic_metadata (Envoy still reads it) goes to proto.Marshal.
	if m == nil || m.DynamicMetadata != nil || len(m.QueryParametersToSet) > 0 || hasUnknown(m) {
		return 0, false
	}
	h, ok1 := sizeHeaders(okHeaders, m.Headers)
	r, ok2 := sizeStrings(okHeadersToRemove, m.HeadersToRemove)
	a, ok3 := sizeHeaders(okResponseHeadersToAdd, m.ResponseHeadersToAdd)
	q, ok4 := sizeStrings(okQueryParametersToRemove, m.QueryParametersToRemove)
	return h + r + a + q, ok1 && ok2 && ok3 && ok4
}

func putOK(w *backWriter, m *authv3.OkHttpResponse) {
	putStrings(w, 8, m.QueryParametersToRemove)
	putHeaders(w, 6, m.ResponseHeadersToAdd)
	putStrings(w, 5, m.HeadersToRemove)
	putHeaders(w, 2, m.Headers)
}

func sizeStrings(num protowire.Number, ss []string) (int, bool) {
	n := 0
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return 0, false
		}
		// Repeated strings are written even when empty.
		n += protowire.SizeTag(num) + protowire.SizeBytes(len(s))
	}
	return n, true
}

func putStrings(w *backWriter, num protowire.Number, ss []string) {
	for i := len(ss) - 1; i >= 0; i-- {
		w.bytes(ss[i])
		w.uvarint(uint64(len(ss[i])))
		w.tag(num, protowire.BytesType)
	}
}

func sizeHeaders(num protowire.Number, hs []*corev3.HeaderValueOption) (int, bool) {
	n := 0
	for _, h := range hs {
		s, ok := sizeHeaderOption(h)
		if !ok {
			return 0, false
		}
		n += sizeMsg(num, s)
	}
	return n, true
}

func putHeaders(w *backWriter, num protowire.Number, hs []*corev3.HeaderValueOption) {
	for i := len(hs) - 1; i >= 0; i-- {
		end := w.i
		putHeaderOption(w, hs[i])
		w.msg(num, end)
	}
}

func sizeHeaderOption(m *corev3.HeaderValueOption) (int, bool) {
	if m == nil || hasUnknown(m) {
		return 0, false
	}
	n := sizeVarint(optionAppendAction, uint64(int64(m.AppendAction)))
	if m.KeepEmptyValue {
		n += protowire.SizeTag(optionKeepEmptyValue) + 1
	}
	if m.Header != nil {
		s, ok := sizeHeaderValue(m.Header)
		if !ok {
			return 0, false
		}
		n += sizeMsg(optionHeader, s)
	}
	//lint:ignore SA1019 the deprecated append BoolValue is still on the wire (Envoy honours it); written like any field.
	if a := m.Append; a != nil {
		if hasUnknown(a) {
			return 0, false
		}
		s := 0
		if a.Value {
			s = protowire.SizeTag(boolValue) + 1
		}
		n += sizeMsg(optionAppend, s)
	}
	return n, true
}

func putHeaderOption(w *backWriter, m *corev3.HeaderValueOption) {
	if m.KeepEmptyValue {
		w.uvarint(1)
		w.tag(optionKeepEmptyValue, protowire.VarintType)
	}
	w.varint(optionAppendAction, uint64(int64(m.AppendAction)))
	//lint:ignore SA1019 the deprecated append BoolValue is still on the wire (Envoy honours it); written like any field.
	if a := m.Append; a != nil {
		end := w.i
		if a.Value {
			w.uvarint(1)
			w.tag(boolValue, protowire.VarintType)
		}
		w.msg(optionAppend, end)
	}
	if m.Header != nil {
		end := w.i
		putHeaderValue(w, m.Header)
		w.msg(optionHeader, end)
	}
}

func sizeHeaderValue(m *corev3.HeaderValue) (int, bool) {
	if hasUnknown(m) {
		return 0, false
	}
	k, ok1 := sizeString(headerKey, m.Key)
	v, ok2 := sizeString(headerValue, m.Value)
	n := k + v
	if len(m.RawValue) > 0 {
		n += protowire.SizeTag(headerRawValue) + protowire.SizeBytes(len(m.RawValue))
	}
	return n, ok1 && ok2
}

func putHeaderValue(w *backWriter, m *corev3.HeaderValue) {
	if len(m.RawValue) > 0 {
		w.raw(m.RawValue)
		w.uvarint(uint64(len(m.RawValue)))
		w.tag(headerRawValue, protowire.BytesType)
	}
	w.str(headerValue, m.Value)
	w.str(headerKey, m.Key)
}

// maxStructDepth bounds the nesting the encoder follows; deeper values go to
// proto.Marshal.
const maxStructDepth = 32

func sizeStruct(m *structpb.Struct) (int, bool) { return sizeStructDepth(m, 0) }

func sizeStructDepth(m *structpb.Struct, depth int) (int, bool) {
	if depth > maxStructDepth || hasUnknown(m) {
		return 0, false
	}
	n := 0
	for k, v := range m.Fields {
		if v == nil || !utf8.ValidString(k) {
			return 0, false
		}
		vs, ok := sizeValue(v, depth+1)
		if !ok {
			return 0, false
		}
		// A map entry: key (1) and value (2), both always written.
		entry := protowire.SizeTag(mapKey) + protowire.SizeBytes(len(k)) + sizeMsg(mapValue, vs)
		n += sizeMsg(structFields, entry)
	}
	return n, true
}

func putStruct(w *backWriter, m *structpb.Struct) {
	for k, v := range m.Fields {
		end := w.i
		ve := w.i
		putValue(w, v)
		w.msg(mapValue, ve)
		w.bytes(k)
		w.uvarint(uint64(len(k)))
		w.tag(mapKey, protowire.BytesType)
		w.msg(structFields, end)
	}
}

func sizeValue(m *structpb.Value, depth int) (int, bool) {
	if depth > maxStructDepth || hasUnknown(m) {
		return 0, false
	}
	switch k := m.Kind.(type) {
	case nil:
		return 0, true
	case *structpb.Value_NullValue:
		// A oneof member is written even when it holds its zero value.
		return protowire.SizeTag(valueNull) + protowire.SizeVarint(uint64(int64(k.NullValue))), true
	case *structpb.Value_NumberValue:
		return protowire.SizeTag(valueNumber) + 8, true
	case *structpb.Value_StringValue:
		if !utf8.ValidString(k.StringValue) {
			return 0, false
		}
		return protowire.SizeTag(valueString) + protowire.SizeBytes(len(k.StringValue)), true
	case *structpb.Value_BoolValue:
		return protowire.SizeTag(valueBool) + 1, true
	case *structpb.Value_StructValue:
		if k.StructValue == nil {
			return 0, false
		}
		s, ok := sizeStructDepth(k.StructValue, depth+1)
		return sizeMsg(valueStruct, s), ok
	case *structpb.Value_ListValue:
		if k.ListValue == nil || hasUnknown(k.ListValue) {
			return 0, false
		}
		n := 0
		for _, v := range k.ListValue.Values {
			if v == nil {
				return 0, false
			}
			s, ok := sizeValue(v, depth+1)
			if !ok {
				return 0, false
			}
			n += sizeMsg(listValues, s)
		}
		return sizeMsg(valueList, n), true
	}
	return 0, false
}

func putValue(w *backWriter, m *structpb.Value) {
	switch k := m.Kind.(type) {
	case *structpb.Value_NullValue:
		w.uvarint(uint64(int64(k.NullValue)))
		w.tag(valueNull, protowire.VarintType)
	case *structpb.Value_NumberValue:
		w.fixed64(math.Float64bits(k.NumberValue))
		w.tag(valueNumber, protowire.Fixed64Type)
	case *structpb.Value_StringValue:
		w.bytes(k.StringValue)
		w.uvarint(uint64(len(k.StringValue)))
		w.tag(valueString, protowire.BytesType)
	case *structpb.Value_BoolValue:
		if k.BoolValue {
			w.uvarint(1)
		} else {
			w.uvarint(0)
		}
		w.tag(valueBool, protowire.VarintType)
	case *structpb.Value_StructValue:
		end := w.i
		putStruct(w, k.StructValue)
		w.msg(valueStruct, end)
	case *structpb.Value_ListValue:
		end := w.i
		vs := k.ListValue.Values
		for i := len(vs) - 1; i >= 0; i-- {
			ve := w.i
			putValue(w, vs[i])
			w.msg(listValues, ve)
		}
		w.msg(valueList, end)
	}
}

// backWriter fills b from the end: a message's length is known once its
// fields are written, and its tag and length go in front of them.
type backWriter struct {
	b []byte
	i int // b[i:] is written
}

func (w *backWriter) raw(p []byte) {
	w.i -= len(p)
	copy(w.b[w.i:], p)
}

func (w *backWriter) bytes(s string) {
	w.i -= len(s)
	copy(w.b[w.i:], s)
}

func (w *backWriter) uvarint(v uint64) {
	if v < 0x80 { // tags, small lengths and enums: most varints
		w.i--
		w.b[w.i] = byte(v)
		return
	}
	n := protowire.SizeVarint(v)
	w.i -= n
	protowire.AppendVarint(w.b[w.i:w.i], v)
}

func (w *backWriter) fixed64(v uint64) {
	w.i -= 8
	protowire.AppendFixed64(w.b[w.i:w.i], v)
}

func (w *backWriter) tag(num protowire.Number, typ protowire.Type) {
	w.uvarint(protowire.EncodeTag(num, typ))
}

// varint writes a scalar field, left out when zero (proto3).
func (w *backWriter) varint(num protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	w.uvarint(v)
	w.tag(num, protowire.VarintType)
}

// str writes a string field, left out when empty (proto3).
func (w *backWriter) str(num protowire.Number, s string) {
	if s == "" {
		return
	}
	w.bytes(s)
	w.uvarint(uint64(len(s)))
	w.tag(num, protowire.BytesType)
}

// msg puts the tag and length in front of a message written since end.
func (w *backWriter) msg(num protowire.Number, end int) {
	w.uvarint(uint64(end - w.i))
	w.tag(num, protowire.BytesType)
}
