package proxy

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// compileRegex compiles an Envoy RegexMatcher (RE2, Go's regexp syntax) so
// that it must match the whole input, as Envoy's safe_regex does.
func compileRegex(path string, rm *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if err := only(path, rm, "regex", "google_re2"); err != nil {
		return nil, err
	}
	//lint:ignore SA1019 google_re2.max_program_size is deprecated but still changes what Envoy accepts, so setting it is refused, not ignored.
	if rm.GetGoogleRe2().GetMaxProgramSize() != nil {
		return nil, unsupported(path+".google_re2.max_program_size", "")
	}
	re, err := regexp.Compile(`^(?:` + rm.GetRegex() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %w", path, err)
	}
	return re, nil
}

// stringMatcher is envoy.type.matcher.v3.StringMatcher
// (source/common/common/matchers.cc, StringMatcherImpl).
type stringMatcher struct {
	exact, prefix, suffix, contains *string
	re                              *regexp.Regexp
	ignoreCase                      bool
}

func newStringMatcher(path string, m *matcherv3.StringMatcher) (*stringMatcher, error) {
	if err := only(path, m, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return nil, err
	}
	sm := &stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.exact = &p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.prefix = &p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.suffix = &p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.contains = &p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		if m.GetIgnoreCase() {
			// matchers.cc: "ignore_case has no effect for safe_regex" and is rejected.
			return nil, fmt.Errorf("%s.ignore_case: has no effect for safe_regex; Envoy rejects it", path)
		}
		re, err := compileRegex(path+".safe_regex", p.SafeRegex)
		if err != nil {
			return nil, err
		}
		sm.re = re
	default:
		// exact: "" is a valid matcher for the empty string.
		empty := ""
		sm.exact = &empty
	}
	return sm, nil
}

func (m *stringMatcher) match(v string) bool {
	eq := func(a, b string) bool {
		if m.ignoreCase {
			return strings.EqualFold(a, b)
		}
		return a == b
	}
	lower := func(s string) string {
		if m.ignoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	switch {
	case m.exact != nil:
		return eq(v, *m.exact)
	case m.prefix != nil:
		return strings.HasPrefix(lower(v), lower(*m.prefix))
	case m.suffix != nil:
		return strings.HasSuffix(lower(v), lower(*m.suffix))
	case m.contains != nil:
		return strings.Contains(lower(v), lower(*m.contains))
	case m.re != nil:
		return m.re.MatchString(v)
	}
	return false
}

// listMatcher is a ListStringMatcher: any pattern matches.
type listMatcher []*stringMatcher

func newListMatcher(path string, l *matcherv3.ListStringMatcher) (listMatcher, error) {
	if l == nil {
		return nil, nil
	}
	if err := only(path, l, "patterns"); err != nil {
		return nil, err
	}
	var out listMatcher
	for i, p := range l.GetPatterns() {
		m, err := newStringMatcher(fmt.Sprintf("%s.patterns[%d]", path, i), p)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (l listMatcher) match(v string) bool {
	for _, m := range l {
		if m.match(v) {
			return true
		}
	}
	return false
}

// headerMatcher is config.route.v3.HeaderMatcher
// (source/common/http/header_utility.cc, HeaderUtility::matchHeaders).
type headerMatcher struct {
	name          string
	present       *bool
	str           *stringMatcher
	invert        bool
	missingAsEmpt bool
}

func newHeaderMatcher(path string, hm *routev3.HeaderMatcher) (*headerMatcher, error) {
	if err := only(path, hm, "name", "exact_match", "safe_regex_match", "present_match", "prefix_match",
		"suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"); err != nil {
		return nil, err
	}
	m := &headerMatcher{name: strings.ToLower(hm.GetName()), invert: hm.GetInvertMatch(), missingAsEmpt: hm.GetTreatMissingHeaderAsEmpty()}
	var sm matcherv3.StringMatcher
	// exact/prefix/suffix/contains/safe_regex_match are deprecated for string_match but
	// Envoy still accepts them; each maps onto the StringMatcher it stands for.
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		//lint:ignore SA1019 still accepted by Envoy (see above).
		sm.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		//lint:ignore SA1019 still accepted by Envoy (see above).
		sm.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		//lint:ignore SA1019 still accepted by Envoy (see above).
		sm.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		//lint:ignore SA1019 still accepted by Envoy (see above).
		sm.MatchPattern = &matcherv3.StringMatcher_Contains{Contains: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		//lint:ignore SA1019 still accepted by Envoy (see above).
		sm.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}
	case *routev3.HeaderMatcher_StringMatch:
		str, err := newStringMatcher(path+".string_match", s.StringMatch)
		if err != nil {
			return nil, err
		}
		m.str = str
		return m, nil
	case *routev3.HeaderMatcher_PresentMatch:
		p := s.PresentMatch
		m.present = &p
		return m, nil
	default:
		// No specifier: the header must be present (HeaderMatchType::Present).
		p := true
		m.present = &p
		return m, nil
	}
	str, err := newStringMatcher(path, &sm)
	if err != nil {
		return nil, err
	}
	m.str = str
	return m, nil
}

func (m *headerMatcher) match(h *headerMap) bool {
	v, ok := h.joined(m.name)
	if m.present != nil {
		return (ok == *m.present) != m.invert
	}
	if !ok {
		if !m.missingAsEmpt {
			// "the header matcher rule ... will be ignored so it will not match",
			// inverted or not.
			return false
		}
		v = ""
	}
	return m.str.match(v) != m.invert
}

// routeMatch is config.route.v3.RouteMatch, as used by routes and by
// jwt_authn rules (source/common/router/config_impl.cc).
type routeMatch struct {
	prefix, path, separated *string
	re                      *regexp.Regexp
	caseSensitive           bool
	headers                 []*headerMatcher
}

func newRouteMatch(path string, rm *routev3.RouteMatch) (*routeMatch, error) {
	if rm == nil {
		return nil, fmt.Errorf("%s: a match is required", path)
	}
	if err := only(path, rm, "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers"); err != nil {
		return nil, err
	}
	m := &routeMatch{caseSensitive: rm.GetCaseSensitive() == nil || rm.GetCaseSensitive().GetValue()}
	switch p := rm.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		m.prefix = &p.Prefix
	case *routev3.RouteMatch_Path:
		m.path = &p.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		m.separated = &p.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		// RouteMatch.case_sensitive: "Ignored for safe_regex matching."
		re, err := compileRegex(path+".safe_regex", p.SafeRegex)
		if err != nil {
			return nil, err
		}
		m.re = re
	default:
		return nil, fmt.Errorf("%s: one of prefix, path, path_separated_prefix or safe_regex is required", path)
	}
	for i, hm := range rm.GetHeaders() {
		h, err := newHeaderMatcher(fmt.Sprintf("%s.headers[%d]", path, i), hm)
		if err != nil {
			return nil, err
		}
		m.headers = append(m.headers, h)
	}
	return m, nil
}

// match tests the request headers. Path specifiers compare the path without
// its query string (config_impl.cc sanitizePathBeforePathMatching); headers
// matchers see pseudo-headers such as ":method".
func (m *routeMatch) match(h *headerMap) bool {
	p, _ := splitQuery(h.value(":path"))
	cmpPrefix := func(s, prefix string) bool {
		if m.caseSensitive {
			return strings.HasPrefix(s, prefix)
		}
		return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
	}
	ok := false
	switch {
	case m.prefix != nil:
		ok = cmpPrefix(p, *m.prefix)
	case m.path != nil:
		ok = p == *m.path || !m.caseSensitive && strings.EqualFold(p, *m.path)
	case m.separated != nil:
		// path_separated_prefix: the prefix must be followed by the end of the
		// path or by '/'.
		ok = cmpPrefix(p, *m.separated) && (len(p) == len(*m.separated) || p[len(*m.separated)] == '/')
	case m.re != nil:
		ok = m.re.MatchString(p)
	}
	if !ok {
		return false
	}
	for _, hm := range m.headers {
		if !hm.match(h) {
			return false
		}
	}
	return true
}
