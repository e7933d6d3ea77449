// Package envoy checks Envoy v3 bootstrap YAML the way Envoy would load it,
// without an Envoy binary, plus the stepup-authz specific rules that Envoy's
// own validation cannot see (fail-open, unknown clusters, per-route keys that
// match no filter, unstripped identity headers, ...).
//
// Validation follows ENVOY.md §5: YAML → JSON (strict: duplicate keys fail),
// protojson into bootstrapv3.Bootstrap (unknown fields and wrong types fail),
// PGV ValidateAll on the bootstrap, and ValidateAll on every message packed in
// a google.protobuf.Any, which PGV never looks into.
package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"
)

// DefaultNamespace is the route metadata namespace stepup-authz reads unless
// configured otherwise (CONTRACT.md, metadata_namespace).
const DefaultNamespace = "stepup"

// Problem is one finding, with a location path like
// static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1].typed_config.grpc_service.envoy_grpc.cluster_name
type Problem struct {
	Path, Message string
	// Warning marks a finding that leaves the bootstrap valid (Options.WarnPolicy);
	// the caller prints it but does not count it as a problem.
	Warning bool
}

// String returns "path: message", or just the message when there is no path.
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Options for the stepup-specific cross checks.
type Options struct {
	// Namespace is the metadata namespace stepup-authz reads (default "stepup").
	Namespace string
	// CheckPolicy validates one route's stepup metadata (a plain map from the
	// Struct); nil skips the check.
	CheckPolicy func(map[string]any) error
	// WarnPolicy, when set, is asked about one route's stepup metadata that
	// CheckPolicy accepted, for findings that leave it valid (a max_age that no
	// token of the configured issuers can meet); each becomes a Problem with
	// Warning set. nil asks nothing.
	WarnPolicy func(map[string]any) []string
	// WarnExtensions is WarnPolicy for the context extensions CheckExtensions
	// accepted.
	WarnExtensions func(map[string]string) []string
	// CheckExtensions validates one ExtAuthzPerRoute's
	// check_settings.context_extensions; nil skips the check.
	CheckExtensions func(map[string]string) error
	// ReadsXFCC is set when the server reads client certificates from
	// x-forwarded-client-cert (mtls.certificate_from: xfcc): an HCM that
	// passes a client's own copy of that header on is then a problem.
	ReadsXFCC bool
}

func (o Options) namespace() string {
	if o.Namespace == "" {
		return DefaultNamespace
	}
	return o.Namespace
}

// ValidateBootstrap loads YAML strictly into bootstrapv3.Bootstrap and returns
// every problem found. The bootstrap is nil when the YAML could not be decoded
// (then the single decode error is the only problem: protojson stops at the
// first one).
func ValidateBootstrap(yaml []byte, opts Options) (*bootstrapv3.Bootstrap, []Problem) {
	return validateBootstrap(yaml, opts, 0)
}

// validateBootstrap is ValidateBootstrap for YAML that starts lineOffset lines
// into a larger file, so YAML error line numbers point into that file.
func validateBootstrap(src []byte, opts Options, lineOffset int) (*bootstrapv3.Bootstrap, []Problem) {
	js, err := yaml.YAMLToJSONStrict(src)
	if err != nil {
		if p, ok := duplicateKey(src, lineOffset); ok {
			return nil, []Problem{p}
		}
		return nil, []Problem{{Message: yamlError(err, lineOffset)}}
	}
	switch t := bytes.TrimSpace(js); {
	case len(t) == 0 || string(t) == "null":
		return nil, []Problem{{Message: "empty document: not an Envoy bootstrap"}}
	case t[0] != '{':
		return nil, []Problem{{Message: "the top level must be a mapping (an Envoy bootstrap), not a list or a scalar"}}
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		return nil, []Problem{decodeProblem(js, err)}
	}

	var problems []Problem
	problems = append(problems, pgvProblems(b.ProtoReflect().Descriptor(), "", b.ValidateAll())...)
	problems = append(problems, anyProblems(b)...)
	sortProblems(problems)
	problems = append(problems, crossCheck(b, opts)...)
	return b, dedupe(problems)
}

// anyProblems runs ValidateAll on every message packed in an Any, wherever it
// is nested. protorange expands resolvable Anys while walking, so an Any inside
// an Any (a route's typed_per_filter_config inside the HCM's typed_config) is
// reached without recursing by hand, and each message is validated once.
func anyProblems(b *bootstrapv3.Bootstrap) []Problem {
	var problems []Problem
	_ = protorange.Options{Stable: true}.Range(b.ProtoReflect(), func(v protopath.Values) error {
		last := v.Index(-1)
		if last.Step.Kind() != protopath.AnyExpandStep {
			return nil
		}
		m := last.Value.Message()
		validator, ok := m.Interface().(interface{ ValidateAll() error })
		if !ok {
			return nil
		}
		problems = append(problems, pgvProblems(m.Descriptor(), protoPath(v.Path), validator.ValidateAll())...)
		return nil
	}, nil)
	return problems
}

// pgvError is the shape of every protoc-gen-validate error type.
type pgvError interface {
	error
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

// pgvMultiError is the shape of the errors ValidateAll returns.
type pgvMultiError interface {
	error
	AllErrors() []error
}

// pgvProblems flattens a PGV error tree ("embedded message failed validation |
// caused by: ...") into one problem per innermost cause, each with the full
// path from the message it was reported on.
func pgvProblems(md protoreflect.MessageDescriptor, path string, err error) []Problem {
	if err == nil {
		return nil
	}
	var out []Problem
	var walk func(md protoreflect.MessageDescriptor, path string, err error)
	walk = func(md protoreflect.MessageDescriptor, path string, err error) {
		switch e := err.(type) {
		case pgvMultiError:
			for _, sub := range e.AllErrors() {
				walk(md, path, sub)
			}
		case pgvError:
			p, next := pgvStep(md, path, e.Field())
			cause := e.Cause()
			if _, ok := cause.(pgvMultiError); ok {
				walk(next, p, cause)
				return
			}
			if _, ok := cause.(pgvError); ok {
				walk(next, p, cause)
				return
			}
			msg := e.Reason()
			if e.Key() {
				msg = "map key: " + msg
			}
			if cause != nil {
				msg += ": " + cause.Error()
			}
			out = append(out, Problem{Path: p, Message: msg})
		default:
			out = append(out, Problem{Path: path, Message: err.Error()})
		}
	}
	walk(md, path, err)
	return out
}

var (
	// protojson prefixes "proto: " or, to discourage string matching,
	// "proto:\u00a0"; positions are "(line L:C)" in the generated JSON.
	protoPrefix = regexp.MustCompile(`^proto:[\s\x{00a0}]+`)
	jsonPos     = regexp.MustCompile(`\s*\(line (\d+):(\d+)\):?\s*`)
	unknownKey  = regexp.MustCompile(`^unknown field "([^"]*)"$`)
	unknownType = regexp.MustCompile(`^unable to resolve "([^"]*)": "not found"$`)
	yamlLine    = regexp.MustCompile(`line (\d+)`)
)

// decodeProblem turns a protojson error into a problem that names the key it
// is about. protojson's "(line 1:N)" points into single-line JSON with sorted
// keys, which is meaningless to the user, so it is replaced by the path of the
// key or value at that position.
func decodeProblem(js []byte, err error) Problem {
	msg := protoPrefix.ReplaceAllString(err.Error(), "")
	var path string
	if m := jsonPos.FindStringSubmatchIndex(msg); m != nil {
		line, _ := strconv.Atoi(msg[m[2]:m[3]])
		col, _ := strconv.Atoi(msg[m[4]:m[5]])
		steps := jsonPathAt(js, byteOffset(js, line, col))
		path = formatJSONPath(steps)
		sep := ": "
		if m[0] == 0 || m[1] == len(msg) {
			sep = ""
		}
		msg = strings.TrimSpace(msg[:m[0]] + sep + msg[m[1]:])
		if u := unknownType.FindStringSubmatch(msg); u != nil {
			msg = fmt.Sprintf("unknown extension type %q: misspelled, or not one of the extensions this validator links in", u[1])
		}
		if u := unknownKey.FindStringSubmatch(msg); u != nil {
			if md, ok := messageAt(js, steps[:max(len(steps)-1, 0)]); ok {
				msg = fmt.Sprintf("unknown field %q in %s", u[1], md.FullName())
				if s := suggest(md, u[1]); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
			}
		}
	}
	return Problem{Path: path, Message: msg}
}

// messageAt resolves the message type of the JSON object at steps, following
// "@type" through Anys. ok is false where the path leaves typed messages
// (Struct, an unresolvable Any, ...).
func messageAt(js []byte, steps []jsonStep) (protoreflect.MessageDescriptor, bool) {
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, false
	}
	md := (&bootstrapv3.Bootstrap{}).ProtoReflect().Descriptor()
	node := doc
	for i := 0; i < len(steps); i++ {
		md = expandAny(md, node)
		if md == nil {
			return nil, false
		}
		obj, ok := node.(map[string]any)
		if !ok || steps[i].index >= 0 {
			return nil, false
		}
		fd := fieldByJSONKey(md, steps[i].key)
		if fd == nil {
			return nil, false
		}
		node = obj[steps[i].key]
		switch {
		case fd.IsMap():
			if i+1 >= len(steps) {
				return nil, false
			}
			i++
			m, _ := node.(map[string]any)
			node = m[steps[i].key]
			md = fd.MapValue().Message()
		case fd.IsList():
			if i+1 >= len(steps) || steps[i+1].index < 0 {
				return nil, false
			}
			i++
			l, _ := node.([]any)
			if steps[i].index >= len(l) {
				return nil, false
			}
			node = l[steps[i].index]
			md = fd.Message()
		default:
			md = fd.Message()
		}
		if md == nil {
			return nil, false
		}
	}
	md = expandAny(md, node)
	return md, md != nil
}

// expandAny returns the packed type when md is google.protobuf.Any, else md.
func expandAny(md protoreflect.MessageDescriptor, node any) protoreflect.MessageDescriptor {
	if md == nil || md.FullName() != "google.protobuf.Any" {
		return md
	}
	obj, _ := node.(map[string]any)
	url, _ := obj["@type"].(string)
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return nil
	}
	return mt.Descriptor()
}

func fieldByJSONKey(md protoreflect.MessageDescriptor, k string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByName(protoreflect.Name(k)); fd != nil {
		return fd
	}
	return md.Fields().ByJSONName(k)
}

// suggest returns the field of md closest to the misspelled name, if any is
// close enough to be a likely typo.
func suggest(md protoreflect.MessageDescriptor, name string) string {
	best, bestDist := "", 3
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		for _, cand := range []string{string(fd.Name()), fd.JSONName()} {
			if d := editDistance(strings.ToLower(name), strings.ToLower(cand)); d < bestDist {
				best, bestDist = string(fd.Name()), d
			}
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// yamlError cleans up a sigs.k8s.io/yaml error ("error converting YAML to
// JSON: yaml: unmarshal errors:\n  line 5: key \"admin\" already set in map")
// into one line, with line numbers shifted into the enclosing file.
func yamlError(err error, lineOffset int) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.Replace(msg, "yaml: unmarshal errors:\n", "yaml: ", 1)
	fields := strings.Fields(msg)
	msg = strings.Join(fields, " ")
	if lineOffset != 0 {
		msg = yamlLine.ReplaceAllStringFunc(msg, func(s string) string {
			n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
			return "line " + strconv.Itoa(n+lineOffset)
		})
	}
	return msg
}

// sortProblems orders problems by path, comparing list indexes as numbers, so
// the output is stable although PGV walks Go maps in random order.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if c := naturalCompare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
}

func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, _ := strconv.Atoi(a[:da])
			nb, _ := strconv.Atoi(b[:db])
			if na != nb {
				return na - nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

func dedupe(ps []Problem) []Problem {
	seen := make(map[Problem]bool, len(ps))
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
