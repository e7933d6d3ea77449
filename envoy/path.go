package envoy

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Paths name a place in the YAML the way a user reads it: proto field names
// joined by dots, list indexes in brackets, map keys after a dot when they are
// plain words (filter_metadata.stepup) and quoted in brackets otherwise
// (typed_per_filter_config["envoy.filters.http.ext_authz"]). The Any wrapper
// is invisible: typed_config.http_filters[1], not typed_config.(type).http_filters[1].

// field appends a field name to a path.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// index appends a list index to a path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// key appends a map key to a path.
func key(path, k string) string {
	if plainKey(k) {
		return field(path, k)
	}
	return path + "[" + strconv.Quote(k) + "]"
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case (r >= '0' && r <= '9') || r == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// protoPath formats a protorange path, leaving out the root and Any expansions.
func protoPath(p protopath.Path) string {
	var s string
	for _, step := range p {
		switch step.Kind() {
		case protopath.FieldAccessStep:
			s = field(s, string(step.FieldDescriptor().Name()))
		case protopath.ListIndexStep:
			s = index(s, step.ListIndex())
		case protopath.MapIndexStep:
			s = key(s, step.MapIndex().String())
		}
	}
	return s
}

// pgvStep resolves one PGV error's Field() ("StatPrefix", "Listeners[0]",
// "TypedPerFilterConfig[envoy.filters.http.cors]", or a oneof name such as
// "PortSpecifier") against the message it was reported on. It returns the
// path with the step appended and the message descriptor the step leads to
// (nil when the step ends at a scalar, a oneof or an unresolvable name).
func pgvStep(md protoreflect.MessageDescriptor, path, goField string) (string, protoreflect.MessageDescriptor) {
	name, sub, hasSub := goField, "", false
	if i := strings.IndexByte(goField, '['); i > 0 && strings.HasSuffix(goField, "]") {
		name, sub, hasSub = goField[:i], goField[i+1:len(goField)-1], true
	}
	if md != nil {
		want := foldName(name)
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			if foldName(string(fd.Name())) != want {
				continue
			}
			p := field(path, string(fd.Name()))
			switch {
			case fd.IsMap():
				if hasSub {
					p = key(p, sub)
				}
				return p, fd.MapValue().Message()
			case fd.IsList():
				if hasSub {
					p += "[" + sub + "]"
				}
				return p, fd.Message()
			default:
				return p, fd.Message()
			}
		}
		oneofs := md.Oneofs()
		for i := 0; i < oneofs.Len(); i++ {
			if od := oneofs.Get(i); foldName(string(od.Name())) == want {
				return field(path, string(od.Name())), nil
			}
		}
	}
	// Unknown to the descriptor: spell the Go name in snake case.
	p := field(path, snake(name))
	if hasSub {
		p += "[" + sub + "]"
	}
	return p, nil
}

// foldName makes proto names (http2_protocol_options) and PGV's Go names
// (Http2ProtocolOptions) comparable.
func foldName(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// jsonPathAt returns the path of the innermost key or value that starts at or
// before byte offset off in the compact JSON that YAMLToJSON produced, with
// the keys exactly as the user wrote them.
func jsonPathAt(js []byte, off int) []jsonStep {
	l := &jsonLocator{b: js, target: off}
	l.value(0, nil)
	return l.best
}

// jsonStep is one element of a JSON path: an object key or an array index.
type jsonStep struct {
	key   string
	index int // -1 for keys
}

func formatJSONPath(steps []jsonStep) string {
	var s string
	for _, st := range steps {
		if st.index >= 0 {
			s = index(s, st.index)
		} else {
			s = key(s, st.key)
		}
	}
	return s
}

type jsonLocator struct {
	b      []byte
	target int
	best   []jsonStep
}

func (l *jsonLocator) mark(start int, path []jsonStep) {
	if start <= l.target {
		l.best = append([]jsonStep(nil), path...)
	}
}

// value scans the JSON value at i and returns the offset just past it.
func (l *jsonLocator) value(i int, path []jsonStep) int {
	i = l.space(i)
	if i >= len(l.b) || i > l.target {
		return len(l.b)
	}
	l.mark(i, path)
	switch l.b[i] {
	case '{':
		i = l.space(i + 1)
		if i < len(l.b) && l.b[i] == '}' {
			return i + 1
		}
		for i < len(l.b) {
			i = l.space(i)
			start := i
			end := l.str(i)
			var k string
			if err := json.Unmarshal(l.b[start:end], &k); err != nil {
				return len(l.b)
			}
			p := append(path[:len(path):len(path)], jsonStep{key: k, index: -1})
			if start > l.target {
				return len(l.b)
			}
			l.mark(start, p)
			i = l.space(end)
			if i >= len(l.b) || l.b[i] != ':' {
				return len(l.b)
			}
			i = l.value(i+1, p)
			i = l.space(i)
			if i >= len(l.b) {
				return i
			}
			if l.b[i] == '}' {
				return i + 1
			}
			i++ // ','
		}
		return i
	case '[':
		i = l.space(i + 1)
		if i < len(l.b) && l.b[i] == ']' {
			return i + 1
		}
		for n := 0; i < len(l.b); n++ {
			p := append(path[:len(path):len(path)], jsonStep{index: n})
			i = l.value(i, p)
			i = l.space(i)
			if i >= len(l.b) {
				return i
			}
			if l.b[i] == ']' {
				return i + 1
			}
			i++ // ','
		}
		return i
	case '"':
		return l.str(i)
	default:
		for i < len(l.b) && !strings.ContainsRune(",]} \t\r\n", rune(l.b[i])) {
			i++
		}
		return i
	}
}

// str returns the offset just past the string starting at i.
func (l *jsonLocator) str(i int) int {
	if i >= len(l.b) || l.b[i] != '"' {
		return len(l.b)
	}
	for i++; i < len(l.b); i++ {
		switch l.b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

func (l *jsonLocator) space(i int) int {
	for i < len(l.b) && strings.ContainsRune(" \t\r\n", rune(l.b[i])) {
		i++
	}
	return i
}

// byteOffset turns protojson's 1-based line and rune column into a byte offset.
func byteOffset(js []byte, line, col int) int {
	off := 0
	for ; line > 1 && off < len(js); off++ {
		if js[off] == '\n' {
			line--
		}
	}
	for ; col > 1 && off < len(js); col-- {
		_, n := utf8.DecodeRune(js[off:])
		off += n
	}
	return off
}
