// Package wire is the protobuf wire codec of the ext_authz gRPC server, and
// the switch between it and grpc-go's standard codec.
//
// The standard codec (proto.Marshal and proto.Unmarshal through reflection)
// was a third of a cached Check's CPU time; Codec does the same work by hand
// for the two messages of every Check. A hand-written fast path keeps its way
// back: ServerCodec(Proto) is grpc-go's own codec, chosen by serve's --codec
// flag (listen.codec, STEPUP_LISTEN_CODEC), and the fast path is held equal to
// the standard one by differential tests and the fuzz targets
// FuzzCodecRequest and FuzzCodecResponse, which CI runs.
package wire

import (
	"errors"
	"fmt"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// The names of the codecs the ext_authz server can speak protobuf with.
const (
	// Fast is Codec: CheckRequest and CheckResponse by hand, the rest as Proto.
	Fast = "fast"
	// Proto is grpc-go's standard codec (google.golang.org/grpc/encoding/proto):
	// the way back if the fast path is ever in doubt.
	Proto = "proto"
	// Default is what serve uses unless told otherwise.
	Default = Fast
)

// Names lists the codec names ServerCodec accepts.
var Names = []string{Fast, Proto}

// ServerCodec returns the codec called name: Codec for Fast, and for Proto
// the very codec grpc-go registers as its default.
func ServerCodec(name string) (encoding.CodecV2, error) {
	switch name {
	case Fast:
		return Codec{}, nil
	case Proto:
		if c := encoding.GetCodecV2(protoenc.Name); c != nil {
			return c, nil
		}
		return nil, errors.New("grpc-go's standard codec is not registered") // its package registers it in init
	}
	return nil, fmt.Errorf("codec %q: use one of %s", name, strings.Join(Names, ", "))
}

// ServerOption makes a gRPC server speak protobuf with the codec called name.
func ServerOption(name string) (grpc.ServerOption, error) {
	c, err := ServerCodec(name)
	if err != nil {
		return nil, err
	}
	return grpc.ForceServerCodecV2(c), nil
}

// Codec is the gRPC codec of the ext_authz server (grpc.ForceServerCodecV2).
// It speaks the same protobuf wire format as grpc-go's default codec, faster on
// the two messages that matter:
//
//   - CheckRequest is decoded by a hand-written decoder for the fields Envoy
//     sends (request.go: attributes, source and destination peers, request
//     time and HTTP request with headers or header_map, context extensions,
//     metadata and route metadata, TLS session). The message is copied once
//     out of grpc's pooled buffers and every string of the decoded request
//     points into that copy, which is never written again nor reused: one
//     allocation instead of one per string. Anything else — an unknown field,
//     a field with an unexpected wire type, a typed metadata Any, invalid
//     UTF-8, deep nesting, malformed input — is handed to proto.Unmarshal, so
//     the result (or the error) is always exactly what the default codec
//     gives. FuzzCodecRequest holds the two decoders to that.
//   - CheckResponse is encoded by a hand-written encoder of every field of
//     the messages it is made of (response.go), the way vtprotobuf's
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
func (Codec) Name() string { return protoenc.Name }

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
