package config

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// walker collects problems while the decoded document is walked by hand.
// Within a mapping, unknown keys are reported first (sorted), then known keys
// in schema order, so the output is stable and close to document order.
type walker struct {
	probs Problems
}

func (w *walker) add(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	w.probs = append(w.probs, msg)
}

// typeErr reports a value of the wrong type.
func (w *walker) typeErr(path, want string, v any) {
	w.add(path, "must be %s, got %s%s", want, describe(v), typeHint(v, want))
}

// join appends a mapping key to a path. Keys that are not plain identifiers
// are quoted in brackets so dots and colons inside them stay readable.
func join(path, key string) string {
	if !isIdent(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapKey is the path of an entry in a verbatim map.
func mapKey(path, key string) string { return fmt.Sprintf("%s[%q]", path, key) }

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// object returns v as a mapping, reporting a wrong type and every key that is
// not in known. It returns nil when v is not a mapping.
func (w *walker) object(path string, v any, known []string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		w.typeErr(path, "a mapping", v)
		return nil
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(known, k) {
			w.unknown(join(path, k), k, known)
		}
	}
	return m
}

func (w *walker) unknown(path, key string, known []string) {
	msg := "unknown key (known: " + strings.Join(known, ", ") + ")"
	if s := suggest(key, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	if key == "true" || key == "false" {
		msg += "; YAML reads an unquoted on/off/yes/no/y/n key as a boolean, quote it"
	}
	w.add(path, "%s", msg)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// str returns v as a string.
func (w *walker) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		w.typeErr(path, "a string", v)
	}
	return s, ok
}

// strList returns v as a list of strings, reporting every element that is not one.
func (w *walker) strList(path string, v any) ([]string, bool) {
	l, ok := v.([]any)
	if !ok {
		w.typeErr(path, "a list of strings", v)
		return nil, false
	}
	out := make([]string, 0, len(l))
	good := true
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			w.typeErr(index(path, i), "a string", e)
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

// strMap returns v as a verbatim map of strings: keys are kept exactly as
// written. Entries of the wrong type are reported and left out; check is
// called for every other entry, in key order, with the entry's path.
func (w *walker) strMap(path string, v any, check func(path, key, val string)) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		w.typeErr(path, "a mapping of strings", v)
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		s, ok := m[k].(string)
		if !ok {
			w.typeErr(mapKey(path, k), "a string", m[k])
			continue
		}
		out[k] = s
		check(mapKey(path, k), k, s)
	}
	return out
}

// duration accepts a Go duration ("30s", "5m") or a whole number of seconds
// (30 or "30").
func (w *walker) duration(path string, v any) (time.Duration, bool) {
	const want = `a duration like "30s"`
	switch x := v.(type) {
	case string:
		if isDigits(x) {
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil || n > math.MaxInt64/int64(time.Second) {
				w.add(path, "%q is too large", x)
				return 0, false
			}
			return time.Duration(n) * time.Second, true
		}
		d, err := time.ParseDuration(x)
		if err != nil {
			w.add(path, "%q is not %s", x, want)
			return 0, false
		}
		return d, true
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > float64(math.MaxInt64/int64(time.Second)) {
			w.add(path, "%s is not a whole number of seconds; write %s", formatNumber(x), want)
			return 0, false
		}
		return time.Duration(x) * time.Second, true
	}
	w.typeErr(path, want, v)
	return 0, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// describe names a decoded value for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", x)
	case float64:
		return "number " + formatNumber(x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func typeHint(v any, want string) string {
	switch v.(type) {
	case bool:
		return " (YAML reads unquoted yes/no/on/off/y/n as booleans; quote the value)"
	case float64:
		if strings.Contains(want, "string") || strings.Contains(want, "duration") {
			return " (quote it in YAML to make it a string)"
		}
	}
	return ""
}

func formatNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// suggest returns the known key closest to key, if it is a likely typo.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(strings.ToLower(key), k); d < bestD && d < len(k) {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the optimal string alignment distance: edits, with adjacent
// transpositions counting as one.
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
