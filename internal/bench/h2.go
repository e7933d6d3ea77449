package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
)

// CheckMethod is the gRPC method of envoy.service.auth.v3.Authorization/Check.
const CheckMethod = "/envoy.service.auth.v3.Authorization/Check"

// Call is one unary gRPC call with a pre-encoded request. A Call belongs to one
// Sender at a time; Done runs when it completes (on the Sender's reader
// goroutine) and may send the Call again.
type Call struct {
	// Msg is the request, already framed for gRPC (see Frame).
	Msg []byte
	// Start is when the call was due: latency is measured from it, so an open
	// loop that falls behind schedule counts the wait (no coordinated omission).
	Start time.Time
	// Expect is the CheckResponse status code the caller expects, or -1 for any.
	Expect int32
	// Done is called once the call completed or failed.
	Done func(*Call)

	// Err is a transport or gRPC failure; nil when the server answered with
	// grpc-status 0.
	Err error
	// Code is the answered CheckResponse's status.code (-1 when absent).
	Code int32

	id         uint32
	httpStatus string
	grpcStatus string
	grpcMsg    string
	resp       []byte
}

func (c *Call) reset() {
	c.Err, c.Code, c.id = nil, -1, 0
	c.httpStatus, c.grpcStatus, c.grpcMsg = "", "", ""
	c.resp = c.resp[:0]
}

// Frame prefixes a serialized message with gRPC's 5-byte length prefix
// (uncompressed).
func Frame(msg []byte) []byte {
	out := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:5], uint32(len(msg)))
	copy(out[5:], msg)
	return out
}

// ConnError is a failure of the connection itself (not of one call): calls
// that fail with it should not be sent again on the same Sender.
type ConnError struct{ Err error }

func (e *ConnError) Error() string { return "connection: " + e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// Sender sends Calls asynchronously.
type Sender interface {
	Send(c *Call)
	Close() error
}

// h2Conn is a minimal HTTP/2 client for unary gRPC calls: one connection, one
// writer goroutine that batches frames into few syscalls, one reader goroutine.
// It exists because a load generator built on grpc-go's client spends about as
// much CPU per call as the server under test; pinned to one core against a
// server on another, it would measure itself. It honours HTTP/2 flow control,
// the peer's SETTINGS (initial window, max concurrent streams, max frame size),
// answers PING and SETTINGS, and fails every open call on GOAWAY or a
// connection error.
type h2Conn struct {
	nc       net.Conn
	bw       *bufio.Writer
	fr       *http2.Framer
	hdrBlock []byte

	sendq chan *Call
	ctrlq chan ctrl
	wake  chan struct{} // the writer waits on it for window or a stream slot
	done  chan struct{}

	mu          sync.Mutex
	streams     map[uint32]*Call
	nextID      uint32
	sendWin     int64 // connection-level send window
	streamWin   int64 // the peer's initial stream window
	maxStreams  int
	maxFrame    int
	active      int
	err         error
	closeOnce   sync.Once
	recvPending int // received DATA bytes not yet returned to the peer's window
}

type ctrl struct {
	kind byte // 's' settings ack, 'p' ping ack, 'w' window update
	ping [8]byte
	incr uint32
}

const (
	ourWindow      = 1 << 30
	windowRefill   = 1 << 28
	defaultWindow  = 65535
	defaultMaxSize = 16384
)

// DialH2 connects to addr (plaintext HTTP/2, as Envoy talks to ext_authz) and
// returns a Sender. maxInflight bounds the calls queued at once; timeout, when
// positive, is sent as grpc-timeout as Envoy does.
func DialH2(addr string, maxInflight int, timeout time.Duration) (Sender, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &h2Conn{
		nc:         nc,
		bw:         bufio.NewWriterSize(nc, 64<<10),
		sendq:      make(chan *Call, maxInflight+1),
		ctrlq:      make(chan ctrl, 64),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		streams:    make(map[uint32]*Call, maxInflight),
		nextID:     1,
		sendWin:    defaultWindow,
		streamWin:  defaultWindow,
		maxStreams: 1 << 30,
		maxFrame:   defaultMaxSize,
	}
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(nc, 64<<10))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(64<<10, nil)
	c.fr.MaxHeaderListSize = 1 << 20

	// A stateless header block: "sensitive" fields are never added to the HPACK
	// dynamic table, so the same bytes are valid for every request.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fields := [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", CheckMethod}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "stepup-authz-bench"},
	}
	if timeout > 0 {
		fields = append(fields, [2]string{"grpc-timeout", strconv.FormatInt(timeout.Milliseconds(), 10) + "m"})
	}
	for _, f := range fields {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true}); err != nil {
			nc.Close()
			return nil, err
		}
	}
	c.hdrBlock = hb.Bytes()

	if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: ourWindow},
	); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.fr.WriteWindowUpdate(0, ourWindow-defaultWindow); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		nc.Close()
		return nil, err
	}
	go c.readLoop()
	go c.writeLoop()
	return c, nil
}

// Send queues c; it never blocks while fewer than maxInflight calls are queued.
func (h *h2Conn) Send(c *Call) {
	c.reset()
	select {
	case <-h.done:
		c.Err = h.failure()
		c.Done(c)
		return
	default:
	}
	h.sendq <- c
}

// Close closes the connection; open calls fail.
func (h *h2Conn) Close() error {
	h.fail(errors.New("connection closed by the load generator"))
	return nil
}

func (h *h2Conn) failure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// fail closes the connection once and completes every open call with err.
func (h *h2Conn) fail(err error) {
	h.closeOnce.Do(func() {
		err = &ConnError{Err: err}
		h.mu.Lock()
		h.err = err
		open := h.streams
		h.streams = map[uint32]*Call{}
		h.mu.Unlock()
		close(h.done)
		h.nc.Close()
		for _, c := range open {
			c.Err = err
			c.Done(c)
		}
	})
}

func (h *h2Conn) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *h2Conn) writeLoop() {
	for {
		select {
		case <-h.done:
			h.drainQueue()
			return
		case ct := <-h.ctrlq:
			if err := h.writeCtrl(ct); err != nil {
				h.fail(err)
				continue
			}
		case c := <-h.sendq:
			if err := h.writeCall(c); err != nil {
				h.fail(err)
				continue
			}
		}
		if len(h.sendq) == 0 && len(h.ctrlq) == 0 {
			if err := h.bw.Flush(); err != nil {
				h.fail(err)
			}
		}
	}
}

// drainQueue fails calls still queued after the connection ended.
func (h *h2Conn) drainQueue() {
	for {
		select {
		case c := <-h.sendq:
			c.Err = h.failure()
			c.Done(c)
		default:
			return
		}
	}
}

func (h *h2Conn) writeCtrl(ct ctrl) error {
	switch ct.kind {
	case 's':
		return h.fr.WriteSettingsAck()
	case 'p':
		return h.fr.WritePing(true, ct.ping)
	default:
		return h.fr.WriteWindowUpdate(0, ct.incr)
	}
}

// writeCall waits for flow-control window and a stream slot, registers the
// stream and writes HEADERS and DATA.
func (h *h2Conn) writeCall(c *Call) error {
	n := int64(len(c.Msg))
	for {
		h.mu.Lock()
		if h.err != nil {
			h.mu.Unlock()
			return h.err
		}
		if n > h.streamWin {
			h.mu.Unlock()
			return fmt.Errorf("request of %d bytes exceeds the server's stream window %d", n, h.streamWin)
		}
		if h.sendWin >= n && h.active < h.maxStreams {
			h.sendWin -= n
			h.active++
			c.id = h.nextID
			h.nextID += 2
			h.streams[c.id] = c
			maxFrame := h.maxFrame
			h.mu.Unlock()
			if c.id > 1<<31-1 {
				return errors.New("stream ids exhausted")
			}
			if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: c.id, BlockFragment: h.hdrBlock, EndHeaders: true}); err != nil {
				return err
			}
			msg := c.Msg
			for len(msg) > maxFrame {
				if err := h.fr.WriteData(c.id, false, msg[:maxFrame]); err != nil {
					return err
				}
				msg = msg[maxFrame:]
			}
			return h.fr.WriteData(c.id, true, msg)
		}
		h.mu.Unlock()
		// Blocked on the peer: flush what is buffered, keep answering control
		// frames, and wait for a WINDOW_UPDATE or a finished stream.
		if err := h.bw.Flush(); err != nil {
			return err
		}
		select {
		case <-h.wake:
		case ct := <-h.ctrlq:
			if err := h.writeCtrl(ct); err != nil {
				return err
			}
			if err := h.bw.Flush(); err != nil {
				return err
			}
		case <-h.done:
			return h.failure()
		}
	}
}

func (h *h2Conn) readLoop() {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.fail(fmt.Errorf("read: %w", err))
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			c := h.stream(f.StreamID)
			if c == nil {
				continue
			}
			for _, hf := range f.Fields {
				switch hf.Name {
				case ":status":
					c.httpStatus = hf.Value
				case "grpc-status":
					c.grpcStatus = hf.Value
				case "grpc-message":
					c.grpcMsg = hf.Value
				}
			}
			if f.StreamEnded() {
				h.finish(c, nil)
			}
		case *http2.DataFrame:
			h.recvPending += int(f.Length)
			if h.recvPending >= windowRefill {
				h.ctrlq <- ctrl{kind: 'w', incr: uint32(h.recvPending)}
				h.recvPending = 0
			}
			c := h.stream(f.StreamID)
			if c == nil {
				continue
			}
			c.resp = append(c.resp, f.Data()...)
			if f.StreamEnded() {
				h.finish(c, nil)
			}
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			h.mu.Lock()
			_ = f.ForeachSetting(func(s http2.Setting) error {
				switch s.ID {
				case http2.SettingInitialWindowSize:
					h.streamWin = int64(s.Val)
				case http2.SettingMaxConcurrentStreams:
					h.maxStreams = int(s.Val)
				case http2.SettingMaxFrameSize:
					h.maxFrame = int(s.Val)
				}
				return nil
			})
			h.mu.Unlock()
			h.signal()
			h.ctrlq <- ctrl{kind: 's'}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.ctrlq <- ctrl{kind: 'p', ping: f.Data}
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				h.mu.Lock()
				h.sendWin += int64(f.Increment)
				h.mu.Unlock()
				h.signal()
			}
		case *http2.RSTStreamFrame:
			if c := h.stream(f.StreamID); c != nil {
				h.finish(c, fmt.Errorf("stream reset by the server: %v", f.ErrCode))
			}
		case *http2.GoAwayFrame:
			h.fail(fmt.Errorf("server sent GOAWAY (%v, %q)", f.ErrCode, f.DebugData()))
			return
		}
	}
}

func (h *h2Conn) stream(id uint32) *Call {
	h.mu.Lock()
	c := h.streams[id]
	h.mu.Unlock()
	return c
}

// finish completes c: the stream ended (err nil) or was reset.
func (h *h2Conn) finish(c *Call, err error) {
	h.mu.Lock()
	if h.streams[c.id] != c {
		h.mu.Unlock()
		return
	}
	delete(h.streams, c.id)
	h.active--
	h.mu.Unlock()
	h.signal()
	switch {
	case err != nil:
		c.Err = err
	case c.httpStatus != "200":
		c.Err = fmt.Errorf("HTTP status %q", c.httpStatus)
	case c.grpcStatus != "0":
		c.Err = fmt.Errorf("grpc-status %s: %s", c.grpcStatus, c.grpcMsg)
	default:
		c.Code, c.Err = responseCode(c.resp)
	}
	c.Done(c)
}

// responseCode reads CheckResponse.status.code from a framed response.
func responseCode(framed []byte) (int32, error) {
	if len(framed) < 5 {
		return -1, errors.New("response without a message")
	}
	if framed[0] != 0 {
		return -1, errors.New("compressed response")
	}
	n := binary.BigEndian.Uint32(framed[1:5])
	if int(n) != len(framed)-5 {
		return -1, fmt.Errorf("response of %d bytes, prefix says %d", len(framed)-5, n)
	}
	return CheckResponseCode(framed[5:])
}

// CheckResponseCode returns status.code of a serialized CheckResponse, -1 when
// status is absent (which Envoy reads as OK).
func CheckResponseCode(b []byte) (int32, error) {
	code := int32(-1)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return -1, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			st, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return -1, protowire.ParseError(n)
			}
			b = b[n:]
			if code < 0 {
				code = 0
			}
			for len(st) > 0 {
				snum, styp, m := protowire.ConsumeTag(st)
				if m < 0 {
					return -1, protowire.ParseError(m)
				}
				st = st[m:]
				if snum == 1 && styp == protowire.VarintType {
					v, m := protowire.ConsumeVarint(st)
					if m < 0 {
						return -1, protowire.ParseError(m)
					}
					code = int32(v)
					st = st[m:]
					continue
				}
				m = protowire.ConsumeFieldValue(snum, styp, st)
				if m < 0 {
					return -1, protowire.ParseError(m)
				}
				st = st[m:]
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return -1, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return code, nil
}
