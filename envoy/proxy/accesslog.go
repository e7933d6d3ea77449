package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// defaultAccessLogFormat is Envoy's default format (access log docs,
// "Default format string").
const defaultAccessLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// accessLogger is one HCM access_log entry. Lines go to Options.Logger, not
// to the stdout, stderr or file the config names: the proxy is embedded in
// `stepup-authz dev` and in tests.
type accessLogger struct {
	name  string
	parts []logPart
}

// logPart is a literal, or a command operator with its argument and optional
// maximum length (%NAME(arg):Z%).
type logPart struct {
	lit    string
	op     string
	arg    string
	maxLen int
}

var commandRE = regexp.MustCompile(`^%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::([0-9]+))?%`)

// knownOperators are the command operators the proxy implements.
var knownOperators = map[string]bool{
	"START_TIME": true, "REQ": true, "RESP": true, "RESPONSE_CODE": true, "RESPONSE_FLAGS": true,
	"RESPONSE_CODE_DETAILS": true, "ROUTE_NAME": true, "PROTOCOL": true, "DURATION": true,
	"BYTES_RECEIVED": true, "BYTES_SENT": true, "UPSTREAM_HOST": true, "UPSTREAM_CLUSTER": true,
	"DOWNSTREAM_REMOTE_ADDRESS": true, "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": true,
	"DOWNSTREAM_LOCAL_ADDRESS": true, "DYNAMIC_METADATA": true, "STREAM_ID": true,
	"DOWNSTREAM_PEER_FINGERPRINT_256": true,
}

func (p *Proxy) buildAccessLog(path string, al *accesslogv3.AccessLog) (*accessLogger, error) {
	if err := only(path, al, "name", "typed_config"); err != nil {
		return nil, err
	}
	tp := join(path, "typed_config")
	m, err := unpack(tp, al.GetTypedConfig())
	if err != nil {
		return nil, err
	}
	var lf *corev3.SubstitutionFormatString
	switch c := m.(type) {
	case *streamv3.StdoutAccessLog:
		if err := only(tp, c, "log_format"); err != nil {
			return nil, err
		}
		lf = c.GetLogFormat()
	case *streamv3.StderrAccessLog:
		if err := only(tp, c, "log_format"); err != nil {
			return nil, err
		}
		lf = c.GetLogFormat()
	case *filev3.FileAccessLog:
		if err := only(tp, c, "path", "log_format"); err != nil {
			return nil, err
		}
		lf = c.GetLogFormat()
	default:
		return nil, unsupported(tp, fmt.Sprintf("access logger %s; supported: stdout, stderr, file", al.GetTypedConfig().GetTypeUrl()))
	}
	format := defaultAccessLogFormat
	if lf != nil {
		fp := join(tp, "log_format")
		if err := only(fp, lf, "text_format", "text_format_source"); err != nil {
			return nil, err
		}
		switch {
		case lf.GetTextFormatSource() != nil:
			src := lf.GetTextFormatSource()
			if err := only(join(fp, "text_format_source"), src, "inline_string"); err != nil {
				return nil, err
			}
			format = src.GetInlineString()
		default:
			//lint:ignore SA1019 text_format is deprecated for text_format_source but Envoy still accepts it, so configs may carry it.
			format = lf.GetTextFormat()
		}
	}
	l := &accessLogger{name: al.GetName(), parts: p.parseFormat(path, format)}
	return l, nil
}

// parseFormat splits a text format into literals and command operators. An
// operator the proxy does not implement prints "-" and is warned about once,
// at load.
func (p *Proxy) parseFormat(path, format string) []logPart {
	var parts []logPart
	var lit strings.Builder
	for i := 0; i < len(format); {
		if format[i] != '%' {
			lit.WriteByte(format[i])
			i++
			continue
		}
		if strings.HasPrefix(format[i:], "%%") {
			lit.WriteByte('%')
			i += 2
			continue
		}
		m := commandRE.FindStringSubmatch(format[i:])
		if m == nil {
			lit.WriteByte('%')
			i++
			continue
		}
		if lit.Len() > 0 {
			parts = append(parts, logPart{lit: lit.String()})
			lit.Reset()
		}
		part := logPart{op: m[1], arg: m[2]}
		if m[3] != "" {
			part.maxLen, _ = strconv.Atoi(m[3])
		}
		if !knownOperators[part.op] {
			p.warnOnce("accesslog:"+part.op, "envoy config: access log operator not implemented by the development proxy; it prints \"-\"", "path", path, "operator", "%"+part.op+"%")
		}
		parts = append(parts, part)
		i += len(m[0])
	}
	if lit.Len() > 0 {
		parts = append(parts, logPart{lit: lit.String()})
	}
	return parts
}

func (l *accessLogger) format(s *stream, now time.Time) string {
	var b strings.Builder
	for _, pt := range l.parts {
		if pt.op == "" {
			b.WriteString(pt.lit)
			continue
		}
		v := pt.value(s, now)
		if pt.maxLen > 0 && len(v) > pt.maxLen {
			v = v[:pt.maxLen]
		}
		b.WriteString(v)
	}
	return b.String()
}

func orDash(v string, ok bool) string {
	if !ok || v == "" {
		return "-"
	}
	return v
}

func (pt logPart) value(s *stream, now time.Time) string {
	switch pt.op {
	case "START_TIME":
		if pt.arg == "" {
			return s.start.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		return strftime(s.start, pt.arg)
	case "REQ", "RESP":
		h := s.headers
		if pt.op == "RESP" {
			h = s.respHeaders
		}
		if h == nil {
			return "-"
		}
		main, alt, _ := strings.Cut(pt.arg, "?")
		if v, ok := h.get(main); ok {
			return v
		}
		if alt != "" {
			return orDash(h.get(alt))
		}
		return "-"
	case "RESPONSE_CODE":
		return strconv.Itoa(s.status)
	case "RESPONSE_FLAGS":
		return orDash(strings.Join(s.flags, ","), true)
	case "RESPONSE_CODE_DETAILS":
		return orDash(s.details, true)
	case "ROUTE_NAME":
		if s.route == nil {
			return "-"
		}
		return orDash(s.route.name, true)
	case "PROTOCOL":
		return s.protocol
	case "DURATION":
		return strconv.FormatInt(now.Sub(s.start).Milliseconds(), 10)
	case "BYTES_RECEIVED":
		return strconv.FormatInt(s.bytesReceived(), 10)
	case "BYTES_SENT":
		return strconv.FormatInt(s.bytesSent, 10)
	case "UPSTREAM_HOST":
		return orDash(s.upstreamHost, true)
	case "UPSTREAM_CLUSTER":
		if s.route == nil {
			return "-"
		}
		return s.route.cluster
	case "DOWNSTREAM_REMOTE_ADDRESS":
		if s.remote == nil {
			return "-"
		}
		return s.remote.String()
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		if s.remote == nil {
			return "-"
		}
		host, _, err := net.SplitHostPort(s.remote.String())
		return orDash(host, err == nil)
	case "DOWNSTREAM_LOCAL_ADDRESS":
		if s.local == nil {
			return "-"
		}
		return s.local.String()
	case "STREAM_ID":
		return strconv.FormatUint(s.id, 10)
	case "DOWNSTREAM_PEER_FINGERPRINT_256":
		// The hex SHA-256 of the client certificate's DER
		// (sha256PeerCertificateDigest), "-" without one.
		if s.tls == nil || len(s.tls.PeerCertificates) == 0 {
			return "-"
		}
		sum := sha256.Sum256(s.tls.PeerCertificates[0].Raw)
		return hex.EncodeToString(sum[:])
	case "DYNAMIC_METADATA":
		return dynamicMetadata(s, pt.arg)
	}
	return "-"
}

// dynamicMetadata formats %DYNAMIC_METADATA(NAMESPACE:KEY:...)%: a string
// value prints as is, anything else as JSON; a missing value prints "-".
func dynamicMetadata(s *stream, arg string) string {
	path := strings.Split(arg, ":")
	st, ok := s.metadata[path[0]]
	if !ok {
		return "-"
	}
	v := structpb.NewStructValue(st)
	for _, k := range path[1:] {
		next, ok := v.GetStructValue().GetFields()[k]
		if !ok {
			return "-"
		}
		v = next
	}
	if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
		return sv.StringValue
	}
	b, err := json.Marshal(v.AsInterface())
	if err != nil {
		return "-"
	}
	return string(b)
}

// strftime supports the specifiers Envoy users commonly put in
// %START_TIME(...)%; others are copied literally.
func strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'Y':
			b.WriteString(t.Format("2006"))
		case 'm':
			b.WriteString(t.Format("01"))
		case 'd':
			b.WriteString(t.Format("02"))
		case 'H':
			b.WriteString(t.Format("15"))
		case 'M':
			b.WriteString(t.Format("04"))
		case 'S':
			b.WriteString(t.Format("05"))
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'E':
			if strings.HasPrefix(f[i:], "E3S") {
				b.WriteString(t.Format("05.000"))
				i += 2
			} else {
				b.WriteString("%E")
			}
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// writeAccessLogs writes one line per configured access log for s.
func (p *Proxy) writeAccessLogs(s *stream) {
	now := time.Now()
	for _, l := range p.hcm.accessLogs {
		line := strings.TrimRight(l.format(s, now), "\n")
		p.log.Info("access",
			"log", line,
			"method", s.headers.value(":method"),
			"path", s.headers.value(":path"),
			"status", s.status,
			"decision", dynamicMetadata(s, extAuthzNamespace+":decision"),
			"reason", dynamicMetadata(s, extAuthzNamespace+":reason"),
		)
	}
}

// countingReader counts the request body bytes read (%BYTES_RECEIVED%).
type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

func (s *stream) bytesReceived() int64 {
	if s.body == nil {
		return 0
	}
	return s.body.n
}
