package proxy

import (
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// pathAction is the outcome of ConnectionManagerUtility::maybeNormalizePath.
type pathAction int

const (
	pathContinue pathAction = iota
	pathReject              // 400, empty body
	pathRedirect            // 307 to the normalised path
)

// normalizePath follows ConnectionManagerUtility::maybeNormalizePath
// (source/common/http/conn_manager_utility.cc), in its order:
//  1. a fragment ('#') is rejected (runtime flag http_reject_path_with_fragment,
//     on by default);
//  2. path_with_escaped_slashes_action: %2F, %2f, %5C, %5c are unescaped, then
//     REJECT_REQUEST rejects and UNESCAPE_AND_REDIRECT redirects (after the
//     steps below) when any was found; KEEP_UNCHANGED (also Envoy's
//     IMPLEMENTATION_SPECIFIC_DEFAULT) leaves them;
//  3. normalize_path: PathUtil::canonicalPath (RFC 3986 via Chromium's URL
//     canonicaliser), on the path only, the query string kept as is;
//  4. merge_slashes: PathUtil::mergeSlashes, after normalisation "to catch
//     potential edge cases with percent encoding".
func normalizePath(path string, normalize, merge bool, escaped hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction) (string, pathAction) {
	if strings.Contains(path, "#") {
		return path, pathReject
	}
	action := pathContinue
	switch escaped {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
	default:
		var found bool
		path, found = unescapeSlashes(path)
		if found {
			switch escaped {
			case hcmv3.HttpConnectionManager_REJECT_REQUEST:
				return path, pathReject
			case hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
				action = pathRedirect
			}
		}
	}
	if normalize {
		var ok bool
		if path, ok = canonicalPath(path); !ok {
			return path, pathReject
		}
	}
	if merge {
		path = mergeSlashes(path)
	}
	return path, action
}

// splitQuery splits :path into the path and the query suffix (with its '?').
func splitQuery(path string) (string, string) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return path[:i], path[i:]
	}
	return path, ""
}

// unescapeSlashes follows PathUtil::unescapeSlashes: in the path part only,
// %2F/%2f become '/' and %5C/%5c become '\'; it reports whether any was found.
func unescapeSlashes(path string) (string, bool) {
	p, q := splitQuery(path)
	if !strings.Contains(p, "%") {
		return path, false
	}
	r := strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", `\`, "%5c", `\`)
	u := r.Replace(p)
	return u + q, u != p
}

// mergeSlashes follows PathUtil::mergeSlashes: on the path part only, runs of
// '/' become one, a leading and a trailing slash are kept.
func mergeSlashes(path string) string {
	p, q := splitQuery(path)
	if !strings.Contains(p, "//") {
		return path
	}
	var prefix, suffix string
	if strings.HasPrefix(p, "/") {
		prefix = "/"
	}
	if strings.HasSuffix(p, "/") {
		suffix = "/"
	}
	var segs []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	return prefix + strings.Join(segs, "/") + suffix + q
}

// Character classes of Chromium's kPathCharLookup table, as snapshotted in
// Envoy (source/common/chromium_url/url_canon_path.cc).
const (
	pcPass     = 0
	pcSpecial  = 1
	pcEscape   = 2 | pcSpecial
	pcUnescape = 4
	pcInvalid  = 8 | pcSpecial
)

var pathCharLookup = func() [256]byte {
	var t [256]byte
	t[0] = pcInvalid
	for c := 1; c < 0x20; c++ {
		t[c] = pcEscape
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = pcEscape
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = pcUnescape
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = pcUnescape
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = pcUnescape
	}
	for _, c := range " \"#%<>?^`{|}\x7f" {
		t[c] = pcEscape
	}
	t['-'], t['_'], t['~'] = pcUnescape, pcUnescape, pcUnescape
	t['.'] = pcSpecial
	// '!', '$', '&', '\'', '(', ')', '*', '+', ',', '/', ':', ';', '=', '@',
	// '[' and ']' pass through; '\\' is special-cased in canonicalizePath.
	t['\\'] = pcEscape
	return t
}()

// canonicalPath follows PathUtil::canonicalPath: Chromium's CanonicalizePath
// on the path part (the query string is appended unchanged). It resolves "."
// and ".." segments (also written %2e), turns '\' into '/', decodes escaped
// unreserved characters (%41 -> A), escapes characters that must not appear
// raw, and fails on NUL.
func canonicalPath(path string) (string, bool) {
	p, q := splitQuery(path)
	out, ok := canonicalizePath(p)
	return out + q, ok
}

func canonicalizePath(spec string) (string, bool) {
	out := make([]byte, 0, len(spec)+1)
	if spec == "" {
		return "/", true
	}
	if spec[0] != '/' && spec[0] != '\\' {
		out = append(out, '/')
	}
	ok := true
	lastInvalidPercent := -1 << 30
	end := len(spec)
	for i := 0; i < end; i++ {
		c := spec[i]
		flags := pathCharLookup[c]
		if flags&pcSpecial == 0 {
			out = append(out, c)
			continue
		}
		if dotLen := isDot(spec, i, end); dotLen > 0 {
			if len(out) > 0 && out[len(out)-1] == '/' {
				consumed, disp := classifyAfterDot(spec, i+dotLen, end)
				switch disp {
				case notADirectory:
					out = append(out, '.')
					i += dotLen - 1
				case directoryCur:
					i += dotLen + consumed - 1
				case directoryUp:
					out = backUpToPreviousSlash(out)
					i += dotLen + consumed - 1
				}
			} else {
				out = append(out, '.')
				i += dotLen - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			if v, ok2 := decodeEscaped(spec, i, end); ok2 {
				i += 2
				uflags := pathCharLookup[v]
				if uflags&pcUnescape != 0 {
					out = append(out, v)
					if lastInvalidPercent >= len(out)-3 {
						out = checkForNestedEscapes(spec, i+1, end, lastInvalidPercent, out)
					}
				} else {
					out = append(out, '%', spec[i-1], spec[i])
					if uflags&pcInvalid == pcInvalid {
						ok = false
					}
				}
			} else {
				lastInvalidPercent = len(out)
				out = append(out, '%')
			}
		case flags == pcInvalid:
			out = appendEscaped(out, c)
			ok = false
		case flags&pcEscape == pcEscape:
			out = appendEscaped(out, c)
		}
	}
	return string(out), ok
}

type dotDisposition int

const (
	notADirectory dotDisposition = iota
	directoryCur
	directoryUp
)

// isDot returns the length of a dot at spec[i] ("." or "%2e"), or 0.
func isDot(spec string, i, end int) int {
	if spec[i] == '.' {
		return 1
	}
	if spec[i] == '%' && i+3 <= end && spec[i+1] == '2' && (spec[i+2] == 'e' || spec[i+2] == 'E') {
		return 3
	}
	return 0
}

func isURLSlash(c byte) bool { return c == '/' || c == '\\' }

func classifyAfterDot(spec string, afterDot, end int) (int, dotDisposition) {
	if afterDot == end {
		return 0, directoryCur
	}
	if isURLSlash(spec[afterDot]) {
		return 1, directoryCur
	}
	if second := isDot(spec, afterDot, end); second > 0 {
		after := afterDot + second
		if after == end {
			return second, directoryUp
		}
		if isURLSlash(spec[after]) {
			return second + 1, directoryUp
		}
	}
	return 0, notADirectory
}

// backUpToPreviousSlash drops the last segment of out, which ends with '/',
// never going above the first slash.
func backUpToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for out[i] != '/' && i > 0 {
		i--
	}
	return out[:i+1]
}

func decodeEscaped(spec string, i, end int) (byte, bool) {
	if i+2 >= end {
		return 0, false
	}
	hi, ok1 := unhex(spec[i+1])
	lo, ok2 := unhex(spec[i+2])
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<4 | lo, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func appendEscaped(out []byte, c byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	return append(out, '%', hexDigits[c>>4], hexDigits[c&0xf])
}

// checkForNestedEscapes follows Chromium's CheckForNestedEscapes: an invalid
// escape like "%%30" must not turn into a valid one ("%0") once the inner
// escape is decoded, so the earlier '%' is re-escaped as "%25".
func checkForNestedEscapes(spec string, next, end, lastInvalidPercent int, out []byte) []byte {
	length := len(out)
	lastUnescaped := out[length-1]
	appendNext := lastInvalidPercent == length-2
	if appendNext {
		if next == end || spec[next] >= 0x80 {
			return out
		}
		out = append(out, spec[next])
	}
	if _, ok := decodeEscaped(string(out), lastInvalidPercent, len(out)); ok {
		if !appendNext {
			out = append(out, out[lastInvalidPercent+1])
		}
		out[lastInvalidPercent+1] = '2'
		out[lastInvalidPercent+2] = '5'
		out = append(out, lastUnescaped)
	} else if appendNext {
		out = out[:length]
	}
	return out
}
