package extauthz

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Codec is the gRPC codec of the ext_authz server (grpc.ForceServerCodecV2).
// It speaks the same protobuf wire format as grpc-go's default codec, faster on
// the one message that matters:
//
//   - CheckRequest is decoded by a hand-written decoder for the fields Envoy
//     sends (attributes: source and destination peers, request time and HTTP
//     request with headers or header_map, context extensions, metadata and
//     route metadata, TLS session). The message is copied once out of grpc's
//     pooled buffers and every string of the decoded request points into that
//     copy, which is never written again nor reused: one allocation instead of
//     one per string. Anything else — an unknown field, a field with an
//     unexpected wire type, a typed metadata Any, invalid UTF-8, deep nesting,
//     malformed input — is handed to proto.Unmarshal, so the result (or the
//     error) is always exactly what the default codec gives. FuzzCodecRequest
//     holds the two decoders to that.
//   - CheckResponse is encoded by a hand-written encoder of every field of
//     the messages it is made of (codec_response.go), the way vtprotobuf's
//     generated code does it: one size pass, then one pass writing back to
//     front into a buffer of exactly that size. A response holding anything
//     it does not write goes to proto.Marshal.
//   - Other messages with vtprotobuf marshalers (go-control-plane generates
//     them behind the `vtprotobuf` build tag) are marshalled with them when
//     the binary is built with that tag; every other message goes through
//     proto.Marshal, as with the default codec.
//
// The codec never keeps or reuses a message: a response may be shared by
// many concurrent marshals (the pre-built denials), which only read it.
type Codec struct{}

// Name is "proto": the codec replaces the default one for application/grpc.
func (Codec) Name() string { return "proto" }

// vtMarshaler is what go-control-plane's vtprotobuf code adds to its messages.
type vtMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

// Marshal serializes v.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if resp, ok := v.(*authv3.CheckResponse); ok {
		if size, ok := sizeCheckResponse(resp); ok {
			return marshalSized(size, func(b []byte) bool {
				w := backWriter{b: b, i: len(b)}
				putCheckResponse(&w, resp)
				return w.i == 0
			})
		}
	}
	if vt, ok := v.(vtMarshaler); ok {
		size := vt.SizeVT()
		if mem.IsBelowBufferPoolingThreshold(size) {
			buf := make([]byte, size)
			if _, err := vt.MarshalToSizedBufferVTStrict(buf); err != nil {
				return nil, err
			}
			return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
		}
		pool := mem.DefaultBufferPool()
		buf := pool.Get(size)
		if _, err := vt.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
			pool.Put(buf)
			return nil, err
		}
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	}
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("codec: cannot marshal %T, not a proto message", v)
	}
	// As grpc-go's codec: size once, then marshal with the cached size.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Unmarshal parses data into v.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if req, ok := v.(*authv3.CheckRequest); ok {
		// A private copy: grpc frees data's buffers when Unmarshal returns, and
		// the decoded strings point into this copy.
		b := make([]byte, data.Len())
		data.CopyTo(b)
		return unmarshalCheckRequest(b, req)
	}
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("codec: cannot unmarshal into %T, not a proto message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// marshalSized runs fill on a buffer of exactly size bytes, pooled when large.
func marshalSized(size int, fill func([]byte) bool) (mem.BufferSlice, error) {
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if !fill(buf) {
			return nil, errSizeMismatch
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if !fill((*buf)[:size]) {
		pool.Put(buf)
		return nil, errSizeMismatch
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// errSizeMismatch would mean a message changed while it was being marshalled.
var errSizeMismatch = errors.New("codec: the message changed while it was marshalled")

func messageOf(v any) proto.Message {
	switch m := v.(type) {
	case proto.Message:
		return m
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m)
	}
	return nil
}

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
// instead of one each; the decoder takes them in turn and allocates beyond.
// Like the strings, they are never reused for another request.
type reqBlock struct {
	attrs   authv3.AttributeContext
	peers   [2]authv3.AttributeContext_Peer
	addrs   [2]corev3.Address
	sockWs  [2]corev3.Address_SocketAddress
	socks   [2]corev3.SocketAddress
	ports   [2]corev3.SocketAddress_PortValue
	req     authv3.AttributeContext_Request
	time    timestamppb.Timestamp
	http    authv3.AttributeContext_HttpRequest
	mds     [2]corev3.Metadata
	structs [2]structpb.Struct
	values  [4]structpb.Value
	strs    [4]structpb.Value_StringValue
	nums    [2]structpb.Value_NumberValue

	nAttrs, nPeers, nAddrs, nSocks, nPorts, nReq, nTime, nHTTP, nMds, nStructs, nValues, nStrs, nNums int
}

// dec is one decoding of a CheckRequest.
type dec struct{ blk *reqBlock }

func (d *dec) attributes() *authv3.AttributeContext {
	if b := d.blk; b.nAttrs == 0 {
		b.nAttrs++
		return &b.attrs
	}
	return &authv3.AttributeContext{}
}

func (d *dec) peer() *authv3.AttributeContext_Peer {
	if b := d.blk; b.nPeers < len(b.peers) {
		b.nPeers++
		return &b.peers[b.nPeers-1]
	}
	return &authv3.AttributeContext_Peer{}
}

func (d *dec) address() *corev3.Address {
	if b := d.blk; b.nAddrs < len(b.addrs) {
		b.nAddrs++
		return &b.addrs[b.nAddrs-1]
	}
	return &corev3.Address{}
}

func (d *dec) socketAddress() *corev3.Address_SocketAddress {
	if b := d.blk; b.nSocks < len(b.socks) {
		b.nSocks++
		w := &b.sockWs[b.nSocks-1]
		w.SocketAddress = &b.socks[b.nSocks-1]
		return w
	}
	return &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{}}
}

func (d *dec) port(v uint32) *corev3.SocketAddress_PortValue {
	if b := d.blk; b.nPorts < len(b.ports) {
		b.nPorts++
		p := &b.ports[b.nPorts-1]
		p.PortValue = v
		return p
	}
	return &corev3.SocketAddress_PortValue{PortValue: v}
}

func (d *dec) request() *authv3.AttributeContext_Request {
	if b := d.blk; b.nReq == 0 {
		b.nReq++
		return &b.req
	}
	return &authv3.AttributeContext_Request{}
}

func (d *dec) timestamp() *timestamppb.Timestamp {
	if b := d.blk; b.nTime == 0 {
		b.nTime++
		return &b.time
	}
	return &timestamppb.Timestamp{}
}

func (d *dec) http() *authv3.AttributeContext_HttpRequest {
	if b := d.blk; b.nHTTP == 0 {
		b.nHTTP++
		return &b.http
	}
	return &authv3.AttributeContext_HttpRequest{}
}

func (d *dec) metadata() *corev3.Metadata {
	if b := d.blk; b.nMds < len(b.mds) {
		b.nMds++
		return &b.mds[b.nMds-1]
	}
	return &corev3.Metadata{}
}

func (d *dec) structValue() *structpb.Struct {
	if b := d.blk; b.nStructs < len(b.structs) {
		b.nStructs++
		return &b.structs[b.nStructs-1]
	}
	return &structpb.Struct{}
}

func (d *dec) value() *structpb.Value {
	if b := d.blk; b.nValues < len(b.values) {
		b.nValues++
		return &b.values[b.nValues-1]
	}
	return &structpb.Value{}
}

func (d *dec) stringValue(s string) *structpb.Value_StringValue {
	if b := d.blk; b.nStrs < len(b.strs) {
		b.nStrs++
		v := &b.strs[b.nStrs-1]
		v.StringValue = s
		return v
	}
	return &structpb.Value_StringValue{StringValue: s}
}

func (d *dec) number(f float64) *structpb.Value_NumberValue {
	if b := d.blk; b.nNums < len(b.nums) {
		b.nNums++
		v := &b.nums[b.nNums-1]
		v.NumberValue = f
		return v
	}
	return &structpb.Value_NumberValue{NumberValue: f}
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
		if !ok || num != 1 {
			return false
		}
		v, ok := r.bytes(typ)
		if !ok {
			return false
		}
		if m.Attributes == nil {
			m.Attributes = d.attributes()
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
		if num == 10 { // context_extensions
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
		case 1:
			if m.Source == nil {
				m.Source = d.peer()
			}
			ok = d.decodePeer(v, m.Source)
		case 2:
			if m.Destination == nil {
				m.Destination = d.peer()
			}
			ok = d.decodePeer(v, m.Destination)
		case 4:
			if m.Request == nil {
				m.Request = d.request()
			}
			ok = d.decodeRequest(v, m.Request)
		case 11:
			if m.MetadataContext == nil {
				m.MetadataContext = d.metadata()
			}
			ok = d.decodeMetadata(v, m.MetadataContext)
		case 12:
			if m.TlsSession == nil {
				m.TlsSession = &authv3.AttributeContext_TLSSession{}
			}
			ok = d.decodeTLSSession(v, m.TlsSession)
		case 13:
			if m.RouteMetadataContext == nil {
				m.RouteMetadataContext = d.metadata()
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
		case 1:
			v, ok := r.bytes(typ)
			if !ok {
				return false
			}
			if m.Address == nil {
				m.Address = d.address()
			}
			if !d.decodeAddress(v, m.Address) {
				return false
			}
		case 2:
			m.Service, ok = r.string(typ)
		case 3:
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
		case 4:
			m.Principal, ok = r.string(typ)
		case 5:
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
		if !ok || num != 1 { // only socket_address; pipes and internal addresses go to proto
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
		case 1:
			var v uint64
			v, ok = r.varint(typ)
			m.Protocol = corev3.SocketAddress_Protocol(int32(v))
		case 2:
			m.Address, ok = r.string(typ)
		case 3:
			var v uint64
			v, ok = r.varint(typ)
			m.PortSpecifier = d.port(uint32(v))
		case 4:
			var s string
			s, ok = r.string(typ)
			m.PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: s}
		case 5:
			m.ResolverName, ok = r.string(typ)
		case 6:
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
		case 1:
			if m.Time == nil {
				m.Time = d.timestamp()
			}
			ok = d.decodeTimestamp(v, m.Time)
		case 2:
			if m.Http == nil {
				m.Http = d.http()
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
		case 1:
			m.Seconds = int64(v)
		case 2:
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
		if num == 3 && typ == protowire.BytesType {
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
		case 1:
			m.Id, ok = r.string(typ)
		case 2:
			m.Method, ok = r.string(typ)
		case 3:
			var v []byte
			if v, ok = r.bytes(typ); !ok {
				return false
			}
			if m.Headers == nil {
				m.Headers = make(map[string]string, countHeaders(b))
			}
			ok = d.decodeStringEntry(v, m.Headers)
		case 4:
			m.Path, ok = r.string(typ)
		case 5:
			m.Host, ok = r.string(typ)
		case 6:
			m.Scheme, ok = r.string(typ)
		case 7:
			m.Query, ok = r.string(typ)
		case 8:
			m.Fragment, ok = r.string(typ)
		case 9:
			var v uint64
			v, ok = r.varint(typ)
			m.Size = int64(v)
		case 10:
			m.Protocol, ok = r.string(typ)
		case 11:
			m.Body, ok = r.string(typ)
		case 12:
			var v []byte
			v, ok = r.bytes(typ)
			m.RawBody = append(make([]byte, 0, len(v)), v...)
		case 13:
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
		if !ok || num != 1 {
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
		case 1:
			m.Key, ok = r.string(typ)
		case 2:
			m.Value, ok = r.string(typ)
		case 3:
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
		if !ok || num != 1 {
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
		case 1:
			k, ok = r.string(typ)
		case 2:
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
		if !ok || num != 1 { // typed_filter_metadata (Any) goes to proto
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
		s := d.structValue()
		er := reader{v}
		for len(er.b) > 0 {
			num, typ, ok := er.tag()
			if !ok {
				return false
			}
			switch num {
			case 1:
				if key, ok = er.string(typ); !ok {
					return false
				}
			case 2:
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
		if !ok || num != 1 {
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
		val := d.value()
		er := reader{v}
		for len(er.b) > 0 {
			num, typ, ok := er.tag()
			if !ok {
				return false
			}
			switch num {
			case 1:
				if key, ok = er.string(typ); !ok {
					return false
				}
			case 2:
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
		case 1:
			var v uint64
			if v, ok = r.varint(typ); !ok {
				return false
			}
			m.Kind = &structpb.Value_NullValue{NullValue: structpb.NullValue(int32(v))}
		case 2:
			if typ != protowire.Fixed64Type {
				return false
			}
			v, n := protowire.ConsumeFixed64(r.b)
			if n < 0 {
				return false
			}
			r.b = r.b[n:]
			m.Kind = d.number(math.Float64frombits(v))
		case 3:
			var s string
			if s, ok = r.string(typ); !ok {
				return false
			}
			m.Kind = d.stringValue(s)
		case 4:
			var v uint64
			if v, ok = r.varint(typ); !ok {
				return false
			}
			m.Kind = &structpb.Value_BoolValue{BoolValue: v != 0}
		case 5:
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
		case 6:
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
		if !ok || num != 1 {
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
