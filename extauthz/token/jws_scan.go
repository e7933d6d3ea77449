package token

import (
	"encoding/json"
	"unicode/utf8"
)

// A scanner for the JSON that JOSE headers and JWT payloads almost always are:
// one flat object whose member names and string values have no escapes, whose
// values are strings, numbers, true, false, null or arrays of those, with no
// repeated name. For such an object it gives exactly what json.Unmarshal into
// map[string]json.RawMessage gives (each value's bytes as written), without
// reflection. Anything else — an escape, a nested object, invalid UTF-8 in a
// string, a repeated name, any syntax error — makes it answer false, and the
// caller uses encoding/json. TestDecodeObjectFast and FuzzDecodeObject hold
// it to the token-by-token decoder.

// scanFlatObject splits the flat object b into its members.
func scanFlatObject(b []byte) (map[string]json.RawMessage, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	m := make(map[string]json.RawMessage, 16)
	if i < len(b) && b[i] == '}' {
		return m, skipSpace(b, i+1) == len(b)
	}
	for {
		end, ok := scanPlainString(b, i)
		if !ok {
			return nil, false
		}
		name := string(b[i+1 : end-1])
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return nil, false
		}
		start := skipSpace(b, i+1)
		if end, ok = scanFlatValue(b, start, true); !ok {
			return nil, false
		}
		if _, dup := m[name]; dup {
			return nil, false
		}
		m[name] = json.RawMessage(b[start:end:end])
		if i = skipSpace(b, end); i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return m, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

// scanPlainStrings reads a flat JSON array of plain strings (raw is a whole
// value, as scanFlatObject gives it).
func scanPlainStrings(raw []byte) ([]string, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	out := []string{}
	i := skipSpace(raw, 1)
	if i < len(raw) && raw[i] == ']' {
		return out, i+1 == len(raw)
	}
	for {
		end, ok := scanPlainString(raw, i)
		if !ok {
			return nil, false
		}
		out = append(out, string(raw[i+1:end-1]))
		if i = skipSpace(raw, end); i >= len(raw) {
			return nil, false
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case ']':
			return out, i+1 == len(raw)
		default:
			return nil, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanPlainString returns the end (after the closing quote) of the string at
// b[i], which must have no escape, no control character and be valid UTF-8.
func scanPlainString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, ascii || utf8.Valid(b[i+1:j])
		case c == '\\' || c < 0x20:
			return 0, false
		case c >= 0x80:
			ascii = false
		}
	}
	return 0, false
}

// scanFlatValue returns the end of the value at b[i]: a plain string, a
// number, true, false, null, or (when arrays is set) an array of those.
func scanFlatValue(b []byte, i int, arrays bool) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		return scanPlainString(b, i)
	case c == '-' || ('0' <= c && c <= '9'):
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '[' && arrays:
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			end, ok := scanFlatValue(b, i, false)
			if !ok {
				return 0, false
			}
			if i = skipSpace(b, end); i >= len(b) {
				return 0, false
			}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
			case ']':
				return i + 1, true
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// scanNumber follows RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) (int, bool) {
	digits := func(j int) int {
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		return j
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(i + 1)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}
