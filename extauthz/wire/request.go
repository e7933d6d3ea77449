package wire

import (
	"math"
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The CheckRequest decoder: the fields Envoy's ext_authz filter fills, by
// hand. Every field number it reads is named below after its proto field
// (envoy/service/auth/v3/external_auth.proto and attribute_context.proto,
// envoy/config/core/v3/address.proto, base.proto, google/protobuf/struct.proto
// and timestamp.proto); TestFieldNumbers holds each name to the descriptor.
const (
	checkRequestAttributes protowire.Number = 1 // CheckRequest.attributes

	attrsSource               protowire.Number = 1  // AttributeContext.source
	attrsDestination          protowire.Number = 2  // AttributeContext.destination
	attrsRequest              protowire.Number = 4  // AttributeContext.request
	attrsContextExtensions    protowire.Number = 10 // AttributeContext.context_extensions
	attrsMetadataContext      protowire.Number = 11 // AttributeContext.metadata_context
	attrsTLSSession           protowire.Number = 12 // AttributeContext.tls_session
	attrsRouteMetadataContext protowire.Number = 13 // AttributeContext.route_metadata_context

	peerAddress     protowire.Number = 1 // AttributeContext.Peer.address
	peerService     protowire.Number = 2 // AttributeContext.Peer.service
	peerLabels      protowire.Number = 3 // AttributeContext.Peer.labels
	peerPrincipal   protowire.Number = 4 // AttributeContext.Peer.principal
	peerCertificate protowire.Number = 5 // AttributeContext.Peer.certificate

	addressSocketAddress protowire.Number = 1 // Address.socket_address

	socketProtocol     protowire.Number = 1 // SocketAddress.protocol
	socketAddress      protowire.Number = 2 // SocketAddress.address
	socketPortValue    protowire.Number = 3 // SocketAddress.port_value
	socketNamedPort    protowire.Number = 4 // SocketAddress.named_port
	socketResolverName protowire.Number = 5 // SocketAddress.resolver_name
	socketIpv4Compat   protowire.Number = 6 // SocketAddress.ipv4_compat

	requestTime protowire.Number = 1 // AttributeContext.Request.time
	requestHTTP protowire.Number = 2 // AttributeContext.Request.http

	timestampSeconds protowire.Number = 1 // Timestamp.seconds
	timestampNanos   protowire.Number = 2 // Timestamp.nanos

	httpID        protowire.Number = 1  // AttributeContext.HttpRequest.id
	httpMethod    protowire.Number = 2  // AttributeContext.HttpRequest.method
	httpHeaders   protowire.Number = 3  // AttributeContext.HttpRequest.headers
	httpPath      protowire.Number = 4  // AttributeContext.HttpRequest.path
	httpHost      protowire.Number = 5  // AttributeContext.HttpRequest.host
	httpScheme    protowire.Number = 6  // AttributeContext.HttpRequest.scheme
	httpQuery     protowire.Number = 7  // AttributeContext.HttpRequest.query
	httpFragment  protowire.Number = 8  // AttributeContext.HttpRequest.fragment
	httpSize      protowire.Number = 9  // AttributeContext.HttpRequest.size
	httpProtocol  protowire.Number = 10 // AttributeContext.HttpRequest.protocol
	httpBody      protowire.Number = 11 // AttributeContext.HttpRequest.body
	httpRawBody   protowire.Number = 12 // AttributeContext.HttpRequest.raw_body
	httpHeaderMap protowire.Number = 13 // AttributeContext.HttpRequest.header_map

	headerMapHeaders protowire.Number = 1 // HeaderMap.headers

	tlsSNI protowire.Number = 1 // AttributeContext.TLSSession.sni

	metadataFilterMetadata protowire.Number = 1 // Metadata.filter_metadata

	structFields protowire.Number = 1 // Struct.fields

	listValues protowire.Number = 1 // ListValue.values

	// A map field is a repeated message of two fields (protobuf encoding,
	// "Maps").
	mapKey   protowire.Number = 1
	mapValue protowire.Number = 2
)

// Field numbers the CheckRequest decoder shares with the CheckResponse
// encoder (response.go).
const (
	headerKey      protowire.Number = 1 // HeaderValue.key
	headerValue    protowire.Number = 2 // HeaderValue.value
	headerRawValue protowire.Number = 3 // HeaderValue.raw_value

	valueNull   protowire.Number = 1 // Value.null_value
	valueNumber protowire.Number = 2 // Value.number_value
	valueString protowire.Number = 3 // Value.string_value
	valueBool   protowire.Number = 4 // Value.bool_value
	valueStruct protowire.Number = 5 // Value.struct_value
	valueList   protowire.Number = 6 // Value.list_value
)

// unmarshalCheckRequest decodes b (which the request keeps: never modify it)
// into req, falling back to proto.Unmarshal for anything the fast decoder
// does not handle.
func unmarshalCheckRequest(b []byte, req *authv3.CheckRequest) error {
	req.Reset()
	d := dec{blk: &reqBlock{}}
	if d.decodeCheckRequest(b, req) {
		return nil
	}
	req.Reset()
	return proto.Unmarshal(b, req)
}

// reqBlock holds the messages of a typical CheckRequest in one allocation
// instead of one each; the decoder takes them in turn (take) and allocates
// beyond. Like the strings, they are never reused for another request.
type reqBlock struct {
	attrs   [1]authv3.AttributeContext
	peers   [2]authv3.AttributeContext_Peer
	addrs   [2]corev3.Address
	sockWs  [2]corev3.Address_SocketAddress
	socks   [2]corev3.SocketAddress
	ports   [2]corev3.SocketAddress_PortValue
	req     [1]authv3.AttributeContext_Request
	time    [1]timestamppb.Timestamp
	http    [1]authv3.AttributeContext_HttpRequest
	mds     [2]corev3.Metadata
	structs [2]structpb.Struct
	values  [4]structpb.Value
	strs    [4]structpb.Value_StringValue
	nums    [2]structpb.Value_NumberValue

	nAttrs, nPeers, nAddrs, nSockWs, nSocks, nPorts, nReq, nTime, nHTTP, nMds, nStructs, nValues, nStrs, nNums int
}

// take hands out the elements of one of the block's arrays in turn (*used
// counts them), then new values: a request larger than the typical one still
// decodes, at one allocation per extra message.
func take[T any](arr []T, used *int) *T {
	if *used < len(arr) {
		*used++
		return &arr[*used-1]
	}
	return new(T)
}

// dec is one decoding of a CheckRequest.
type dec struct{ blk *reqBlock }

func (d *dec) socketAddress() *corev3.Address_SocketAddress {
	b := d.blk
	w := take(b.sockWs[:], &b.nSockWs)
	w.SocketAddress = take(b.socks[:], &b.nSocks)
	return w
}

func (d *dec) port(v uint32) *corev3.SocketAddress_PortValue {
	p := take(d.blk.ports[:], &d.blk.nPorts)
	p.PortValue = v
	return p
}

func (d *dec) stringValue(s string) *structpb.Value_StringValue {
	v := take(d.blk.strs[:], &d.blk.nStrs)
	v.StringValue = s
	return v
}

func (d *dec) number(f float64) *structpb.Value_NumberValue {
	v := take(d.blk.nums[:], &d.blk.nNums)
	v.NumberValue = f
	return v
}

// maxDepth bounds Struct/ListValue nesting in the fast decoder; deeper values
// go to proto.Unmarshal, which has its own limit.
const maxDepth = 32

// str returns b as a string sharing b's memory. b must never change.
func str(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", true
	}
	if !utf8.Valid(b) {
		return "", false // proto3 strings must be UTF-8: proto.Unmarshal reports it
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}

// reader walks the fields of one message; its methods report false on
// malformed input or an unexpected wire type.
type reader struct{ b []byte }

func (r *reader) tag() (protowire.Number, protowire.Type, bool) {
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		return 0, 0, false
	}
	r.b = r.b[n:]
	return num, typ, true
}

func (r *reader) bytes(typ protowire.Type) ([]byte, bool) {
	if typ != protowire.BytesType {
		return nil, false
	}
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		return nil, false
	}
	r.b = r.b[n:]
	return v, true
}

func (r *reader) string(typ protowire.Type) (string, bool) {
	v, ok := r.bytes(typ)
	if !ok {
		return "", false
	}
	return str(v)
}

func (r *reader) varint(typ protowire.Type) (uint64, bool) {
	if typ != protowire.VarintType {
		return 0, false
	}
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		return 0, false
	}
	r.b = r.b[n:]
	return v, true
}

func (d *dec) decodeCheckRequest(b []byte, m *authv3.CheckRequest) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok || num != checkRequestAttributes {
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		if m.Attributes == nil {
			m.Attributes = take(d.blk.attrs[:], &d.blk.nAttrs)
		}
		if !d.decodeAttributes(v, m.Attributes) {
			return false
		}
	}
	return true
}

func (d *dec) decodeAttributes(b []byte, m *authv3.AttributeContext) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		if num == attrsContextExtensions {
			v, ok := r.bytes(typ)
			if !ok {
				return false
			}
			if m.ContextExtensions == nil {
				m.ContextExtensions = make(map[string]string, 4)
			}
			if !d.decodeStringEntry(v, m.ContextExtensions) {
				return false
			}
			continue
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		switch num {
		case attrsSource:
			if m.Source == nil {
				m.Source = take(d.blk.peers[:], &d.blk.nPeers)
			}
			ok = d.decodePeer(v, m.Source)
		case attrsDestination:
			if m.Destination == nil {
				m.Destination = take(d.blk.peers[:], &d.blk.nPeers)
			}
			ok = d.decodePeer(v, m.Destination)
		case attrsRequest:
			if m.Request == nil {
				m.Request = take(d.blk.req[:], &d.blk.nReq)
			}
			ok = d.decodeRequest(v, m.Request)
		case attrsMetadataContext:
			if m.MetadataContext == nil {
				m.MetadataContext = take(d.blk.mds[:], &d.blk.nMds)
			}
			ok = d.decodeMetadata(v, m.MetadataContext)
		case attrsTLSSession:
			if m.TlsSession == nil {
				m.TlsSession = &authv3.AttributeContext_TLSSession{}
			}
			ok = d.decodeTLSSession(v, m.TlsSession)
		case attrsRouteMetadataContext:
			if m.RouteMetadataContext == nil {
				m.RouteMetadataContext = take(d.blk.mds[:], &d.blk.nMds)
			}
			ok = d.decodeMetadata(v, m.RouteMetadataContext)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *dec) decodePeer(b []byte, m *authv3.AttributeContext_Peer) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		switch num {
		case peerAddress:
			v, ok := r.bytes(typ)
			if !ok {
				return false
			}
			if m.Address == nil {
				m.Address = take(d.blk.addrs[:], &d.blk.nAddrs)
			}
			if !d.decodeAddress(v, m.Address) {
				return false
			}
		case peerService:
			m.Service, ok = r.string(typ)
		case peerLabels:
			v, ok := r.bytes(typ)
			if !ok {
				return false
			}
			if m.Labels == nil {
				m.Labels = make(map[string]string, 2)
			}
			if !d.decodeStringEntry(v, m.Labels) {
				return false
			}
		case peerPrincipal:
			m.Principal, ok = r.string(typ)
		case peerCertificate:
			m.Certificate, ok = r.string(typ)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *dec) decodeAddress(b []byte, m *corev3.Address) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok || num != addressSocketAddress { // pipes and internal addresses go to proto
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		sa, isSocket := m.Address.(*corev3.Address_SocketAddress)
		if !isSocket || sa.SocketAddress == nil {
			sa = d.socketAddress()
			m.Address = sa
		}
		if !d.decodeSocketAddress(v, sa.SocketAddress) {
			return false
		}
	}
	return true
}

func (d *dec) decodeSocketAddress(b []byte, m *corev3.SocketAddress) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		switch num {
		case socketProtocol:
			var v uint64
			v, ok = r.varint(typ)
			m.Protocol = corev3.SocketAddress_Protocol(int32(v))
		case socketAddress:
			m.Address, ok = r.string(typ)
		case socketPortValue:
			var v uint64
			v, ok = r.varint(typ)
			m.PortSpecifier = d.port(uint32(v))
		case socketNamedPort:
			var s string
			s, ok = r.string(typ)
			m.PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: s}
		case socketResolverName:
			m.ResolverName, ok = r.string(typ)
		case socketIpv4Compat:
			var v uint64
			v, ok = r.varint(typ)
			m.Ipv4Compat = v != 0
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *dec) decodeRequest(b []byte, m *authv3.AttributeContext_Request) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		switch num {
		case requestTime:
			if m.Time == nil {
				m.Time = take(d.blk.time[:], &d.blk.nTime)
			}
			ok = d.decodeTimestamp(v, m.Time)
		case requestHTTP:
			if m.Http == nil {
				m.Http = take(d.blk.http[:], &d.blk.nHTTP)
			}
			ok = d.decodeHTTP(v, m.Http)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *dec) decodeTimestamp(b []byte, m *timestamppb.Timestamp) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		v, ok := r.varint(typ)
		if !ok {
			return false
		}
		switch num {
		case timestampSeconds:
			m.Seconds = int64(v)
		case timestampNanos:
			m.Nanos = int32(v)
		default:
			return false
		}
	}
	return true
}

// countHeaders counts the headers map entries of an HttpRequest, to size the
// map once; it stops at the first malformed field (the decoder then bails).
func countHeaders(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		if num == httpHeaders && typ == protowire.BytesType {
			n++
		}
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return n
		}
		b = b[l:]
	}
	return n
}

func (d *dec) decodeHTTP(b []byte, m *authv3.AttributeContext_HttpRequest) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		switch num {
		case httpID:
			m.Id, ok = r.string(typ)
		case httpMethod:
			m.Method, ok = r.string(typ)
		case httpHeaders:
			var v []byte
			if v, ok = r.bytes(typ); !ok {
				return false
			}
			if m.Headers == nil {
				m.Headers = make(map[string]string, countHeaders(b))
			}
			ok = d.decodeStringEntry(v, m.Headers)
		case httpPath:
			m.Path, ok = r.string(typ)
		case httpHost:
			m.Host, ok = r.string(typ)
		case httpScheme:
			m.Scheme, ok = r.string(typ)
		case httpQuery:
			m.Query, ok = r.string(typ)
		case httpFragment:
			m.Fragment, ok = r.string(typ)
		case httpSize:
			var v uint64
			v, ok = r.varint(typ)
			m.Size = int64(v)
		case httpProtocol:
			m.Protocol, ok = r.string(typ)
		case httpBody:
			m.Body, ok = r.string(typ)
		case httpRawBody:
			var v []byte
			v, ok = r.bytes(typ)
			m.RawBody = append(make([]byte, 0, len(v)), v...)
		case httpHeaderMap:
			var v []byte
			if v, ok = r.bytes(typ); !ok {
				return false
			}
			if m.HeaderMap == nil {
				m.HeaderMap = &corev3.HeaderMap{}
			}
			ok = d.decodeHeaderMap(v, m.HeaderMap)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *dec) decodeHeaderMap(b []byte, m *corev3.HeaderMap) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok || num != headerMapHeaders {
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		hv := &corev3.HeaderValue{}
		if !d.decodeHeaderValue(v, hv) {
			return false
		}
		m.Headers = append(m.Headers, hv)
	}
	return true
}

func (d *dec) decodeHeaderValue(b []byte, m *corev3.HeaderValue) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		switch num {
		case headerKey:
			m.Key, ok = r.string(typ)
		case headerValue:
			m.Value, ok = r.string(typ)
		case headerRawValue:
			var v []byte
			v, ok = r.bytes(typ)
			// A copy: bytes fields are mutable, strings of the request are not.
			m.RawValue = append(make([]byte, 0, len(v)), v...)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *dec) decodeTLSSession(b []byte, m *authv3.AttributeContext_TLSSession) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok || num != tlsSNI {
			return false
		}
		if m.Sni, ok = r.string(typ); !ok {
			return false
		}
	}
	return true
}

// decodeStringEntry decodes one map<string, string> entry into m; as protobuf
// does, a later entry with the same key replaces an earlier one, and a
// missing key or value is "".
func (d *dec) decodeStringEntry(b []byte, m map[string]string) bool {
	var k, v string
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		switch num {
		case mapKey:
			k, ok = r.string(typ)
		case mapValue:
			v, ok = r.string(typ)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	m[k] = v
	return true
}

func (d *dec) decodeMetadata(b []byte, m *corev3.Metadata) bool {
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok || num != metadataFilterMetadata { // typed_filter_metadata (Any) goes to proto
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		if m.FilterMetadata == nil {
			m.FilterMetadata = make(map[string]*structpb.Struct, 1)
		}
		var key string
		s := take(d.blk.structs[:], &d.blk.nStructs)
		er := reader{v}
		for len(er.b) > 0 {
			num, typ, ok := er.tag()
			if !ok {
				return false
			}
			switch num {
			case mapKey:
				if key, ok = er.string(typ); !ok {
					return false
				}
			case mapValue:
				sv, ok := er.bytes(typ)
				if !ok || !d.decodeStruct(sv, s, 1) {
					return false
				}
			default:
				return false
			}
		}
		m.FilterMetadata[key] = s
	}
	return true
}

func (d *dec) decodeStruct(b []byte, m *structpb.Struct, depth int) bool {
	if depth > maxDepth {
		return false
	}
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok || num != structFields {
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		if m.Fields == nil {
			m.Fields = make(map[string]*structpb.Value, 4)
		}
		var key string
		val := take(d.blk.values[:], &d.blk.nValues)
		er := reader{v}
		for len(er.b) > 0 {
			num, typ, ok := er.tag()
			if !ok {
				return false
			}
			switch num {
			case mapKey:
				if key, ok = er.string(typ); !ok {
					return false
				}
			case mapValue:
				vv, ok := er.bytes(typ)
				if !ok || !d.decodeValue(vv, val, depth+1) {
					return false
				}
			default:
				return false
			}
		}
		m.Fields[key] = val
	}
	return true
}

func (d *dec) decodeValue(b []byte, m *structpb.Value, depth int) bool {
	if depth > maxDepth {
		return false
	}
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok {
			return false
		}
		switch num {
		case valueNull:
			var v uint64
			if v, ok = r.varint(typ); !ok {
				return false
			}
			m.Kind = &structpb.Value_NullValue{NullValue: structpb.NullValue(int32(v))}
		case valueNumber:
			if typ != protowire.Fixed64Type {
				return false
			}
			v, n := protowire.ConsumeFixed64(r.b)
			if n < 0 {
				return false
			}
			r.b = r.b[n:]
			m.Kind = d.number(math.Float64frombits(v))
		case valueString:
			var s string
			if s, ok = r.string(typ); !ok {
				return false
			}
			m.Kind = d.stringValue(s)
		case valueBool:
			var v uint64
			if v, ok = r.varint(typ); !ok {
				return false
			}
			m.Kind = &structpb.Value_BoolValue{BoolValue: v != 0}
		case valueStruct:
			v, ok := r.bytes(typ)
			if !ok {
				return false
			}
			sv, same := m.Kind.(*structpb.Value_StructValue)
			if !same || sv.StructValue == nil {
				sv = &structpb.Value_StructValue{StructValue: &structpb.Struct{}}
				m.Kind = sv
			}
			if !d.decodeStruct(v, sv.StructValue, depth+1) {
				return false
			}
		case valueList:
			v, ok := r.bytes(typ)
			if !ok {
				return false
			}
			lv, same := m.Kind.(*structpb.Value_ListValue)
			if !same || lv.ListValue == nil {
				lv = &structpb.Value_ListValue{ListValue: &structpb.ListValue{}}
				m.Kind = lv
			}
			if !d.decodeList(v, lv.ListValue, depth+1) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (d *dec) decodeList(b []byte, m *structpb.ListValue, depth int) bool {
	if depth > maxDepth {
		return false
	}
	r := reader{b}
	for len(r.b) > 0 {
		num, typ, ok := r.tag()
		if !ok || num != listValues {
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		val := &structpb.Value{}
		if !d.decodeValue(v, val, depth+1) {
			return false
		}
		m.Values = append(m.Values, val)
	}
	return true
}
