package bench

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// grpcSender sends Calls with grpc-go's own client, for cross-checking the lean
// HTTP/2 client (it costs the load generator several times more CPU per call).
type grpcSender struct {
	cc      *grpc.ClientConn
	timeout time.Duration
}

// DialGRPC returns a Sender using a grpc-go ClientConn to addr.
func DialGRPC(addr string, timeout time.Duration) (Sender, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &grpcSender{cc: cc, timeout: timeout}, nil
}

func (g *grpcSender) Send(c *Call) {
	c.reset()
	go func() {
		ctx := context.Background()
		if g.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, g.timeout)
			defer cancel()
		}
		var out []byte
		err := g.cc.Invoke(ctx, CheckMethod, rawMessage(c.Msg[5:]), &out, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			c.Err = err
		} else {
			c.Code, c.Err = CheckResponseCode(out)
		}
		c.Done(c)
	}()
}

func (g *grpcSender) Close() error { return g.cc.Close() }

// rawMessage is an already serialized message.
type rawMessage []byte

// rawCodec passes serialized messages through, so the load generator does not
// pay for protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(rawMessage)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*p = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
