package proxy

import (
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// headerMap is an Envoy-style header map: an ordered list of entries with
// lower-case keys, pseudo-headers (":method", ":path", ...) first, repeats kept
// as separate entries (envoy/http/header_map.h).
type headerMap struct {
	entries []headerEntry
}

type headerEntry struct {
	key, value string
}

func newHeaderMap() *headerMap { return &headerMap{} }

// get returns the first value of key.
func (h *headerMap) get(key string) (string, bool) {
	key = strings.ToLower(key)
	for _, e := range h.entries {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// value returns the first value of key, or "".
func (h *headerMap) value(key string) string {
	v, _ := h.get(key)
	return v
}

func (h *headerMap) has(key string) bool {
	_, ok := h.get(key)
	return ok
}

// joined returns every value of key joined with ",", as Envoy's
// HeaderUtility::getAllOfHeaderAsString does for matching and for the
// CheckRequest headers map.
func (h *headerMap) joined(key string) (string, bool) {
	key = strings.ToLower(key)
	var vs []string
	for _, e := range h.entries {
		if e.key == key {
			vs = append(vs, e.value)
		}
	}
	if len(vs) == 0 {
		return "", false
	}
	return strings.Join(vs, ","), true
}

// add appends a new entry (HeaderMap::addCopy).
func (h *headerMap) add(key, value string) {
	h.entries = append(h.entries, headerEntry{strings.ToLower(key), value})
}

// set replaces every entry of key with one entry holding value, keeping the
// position of the first one (HeaderMap::setCopy).
func (h *headerMap) set(key, value string) {
	key = strings.ToLower(key)
	i := slices.IndexFunc(h.entries, func(e headerEntry) bool { return e.key == key })
	if i < 0 {
		h.add(key, value)
		return
	}
	h.entries[i].value = value
	h.entries = slices.Concat(h.entries[:i+1], slices.DeleteFunc(slices.Clone(h.entries[i+1:]), func(e headerEntry) bool { return e.key == key }))
}

// appendValue joins value onto the first entry of key with ",", or adds it
// (HeaderMap::appendCopy).
func (h *headerMap) appendValue(key, value string) {
	key = strings.ToLower(key)
	for i, e := range h.entries {
		if e.key == key {
			if e.value == "" {
				h.entries[i].value = value
			} else {
				h.entries[i].value = e.value + "," + value
			}
			return
		}
	}
	h.add(key, value)
}

// remove deletes every entry of key.
func (h *headerMap) remove(key string) {
	key = strings.ToLower(key)
	h.entries = slices.DeleteFunc(h.entries, func(e headerEntry) bool { return e.key == key })
}

// keys returns the distinct keys in order of first appearance.
func (h *headerMap) keys() []string {
	var ks []string
	for _, e := range h.entries {
		if !slices.Contains(ks, e.key) {
			ks = append(ks, e.key)
		}
	}
	return ks
}

func (h *headerMap) clone() *headerMap {
	return &headerMap{entries: slices.Clone(h.entries)}
}

// httpHeader converts the regular (non-pseudo) entries to an http.Header.
func (h *headerMap) httpHeader() http.Header {
	out := http.Header{}
	for _, e := range h.entries {
		if strings.HasPrefix(e.key, ":") {
			continue
		}
		out.Add(e.key, e.value)
	}
	return out
}

// fromHTTPHeader appends every header of hs, keys lower-cased. Go's net/http
// does not keep the order in which different headers arrived, so keys are
// sorted to keep the result deterministic; the values of one key keep their
// order.
func (h *headerMap) fromHTTPHeader(hs http.Header) {
	keys := make([]string, 0, len(hs))
	for k := range hs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	for _, k := range keys {
		for _, v := range hs[k] {
			h.add(k, v)
		}
	}
}

// isPseudo reports whether key is an HTTP/2-style pseudo-header.
func isPseudo(key string) bool { return strings.HasPrefix(key, ":") }

// isRemovableHeader follows Envoy's HeaderUtility::isRemovableHeader: neither
// pseudo-headers nor Host may be removed, as that would make the request
// malformed.
func isRemovableHeader(key string) bool {
	key = strings.ToLower(key)
	return key != "" && !isPseudo(key) && key != "host"
}

// sanitizeUTF8 replaces every byte that is not part of valid UTF-8 with '!', as
// Envoy's MessageUtil::sanitizeUtf8String does before putting header values in
// a proto string field.
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte('!')
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether value has no NUL, CR or LF (Envoy's
// HeaderUtility::headerValueIsValid).
func validHeaderValue(value string) bool {
	return !strings.ContainsAny(value, "\x00\r\n")
}
