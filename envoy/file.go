package envoy

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// ValidateFile validates the Envoy bootstrap(s) in a YAML file.
//
// A file with one document is validated as a bootstrap. In a file with several
// documents (a kustomize build, a Helm render), each document that looks like a
// bootstrap (has static_resources) is validated, and so is each ConfigMap data
// value whose key ends in .yaml (or .yml) and that looks like one. Problem paths
// then start with the document (documents[2].static_resources...) or the
// ConfigMap key (ConfigMap/envoy.data["envoy.yaml"].static_resources...), and
// YAML line numbers count from the top of the file.
//
// The error is for a file that cannot be read or that holds no bootstrap at all.
func ValidateFile(path string, opts Options) ([]Problem, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	docs := splitDocuments(src)
	if len(docs) == 1 && !isConfigMap(docs[0].node) {
		_, problems := validateBootstrap(docs[0].src, opts, docs[0].line)
		return problems, nil
	}

	var problems []Problem
	found := 0
	for i, d := range docs {
		docPath := index("documents", i)
		if d.err != nil {
			problems = append(problems, Problem{Path: docPath, Message: yamlError(d.err, d.line)})
			found++
			continue
		}
		if hasKey(d.node, "static_resources") {
			found++
			_, ps := validateBootstrap(d.src, opts, d.line)
			problems = append(problems, prefix(docPath, ps)...)
			continue
		}
		if !isConfigMap(d.node) {
			continue
		}
		cmPath := "ConfigMap/" + configMapName(d.node)
		data := mapValue(d.node, "data")
		if data == nil || data.Kind != yamlv3.MappingNode {
			continue
		}
		for j := 0; j+1 < len(data.Content); j += 2 {
			k, v := data.Content[j], data.Content[j+1]
			if !strings.HasSuffix(k.Value, ".yaml") && !strings.HasSuffix(k.Value, ".yml") {
				continue
			}
			var inner yamlv3.Node
			if yamlv3.Unmarshal([]byte(v.Value), &inner) != nil || !hasKey(documentRoot(&inner), "static_resources") {
				continue
			}
			found++
			offset := 0
			if v.Style&(yamlv3.LiteralStyle|yamlv3.FoldedStyle) != 0 {
				// Block scalar: its content starts on the line after "key: |".
				offset = d.line + v.Line
			}
			_, ps := validateBootstrap([]byte(v.Value), opts, offset)
			problems = append(problems, prefix(key(field(cmPath, "data"), k.Value), ps)...)
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("%s: no Envoy bootstrap found (a YAML document with static_resources, or a ConfigMap data key ending in .yaml that holds one)", path)
	}
	return problems, nil
}

// document is one YAML document of a file, with the number of lines before it.
type document struct {
	src  []byte
	line int
	node *yamlv3.Node // the root mapping, or nil
	err  error
}

// splitDocuments splits a YAML stream at "---" lines, keeping each document's
// original text (so duplicate-key detection and line numbers still work) and
// dropping documents that hold nothing but comments.
func splitDocuments(src []byte) []document {
	var docs []document
	lines := bytes.SplitAfter(src, []byte("\n"))
	start, startLine := 0, 0
	flush := func(end, next int) {
		d := document{src: bytes.Join(lines[start:end], nil), line: startLine}
		start, startLine = next, next
		var n yamlv3.Node
		if err := yamlv3.Unmarshal(d.src, &n); err != nil {
			d.err = err
		} else if n.Kind == 0 {
			return // empty or comments only
		} else {
			d.node = documentRoot(&n)
		}
		docs = append(docs, d)
	}
	for i, l := range lines {
		t := strings.TrimRight(string(l), " \t\r\n")
		if t == "---" || strings.HasPrefix(t, "--- ") || t == "..." {
			flush(i, i+1)
		}
	}
	flush(len(lines), len(lines))
	if len(docs) == 0 {
		// Nothing but comments: validate it anyway, to report why.
		docs = append(docs, document{src: src})
	}
	return docs
}

func documentRoot(n *yamlv3.Node) *yamlv3.Node {
	if n.Kind == yamlv3.DocumentNode && len(n.Content) == 1 {
		return n.Content[0]
	}
	return n
}

func mapValue(n *yamlv3.Node, k string) *yamlv3.Node {
	if n == nil || n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == k {
			return n.Content[i+1]
		}
	}
	return nil
}

func hasKey(n *yamlv3.Node, k string) bool { return mapValue(n, k) != nil }

func isConfigMap(n *yamlv3.Node) bool {
	kind := mapValue(n, "kind")
	return kind != nil && kind.Value == "ConfigMap"
}

func configMapName(n *yamlv3.Node) string {
	meta := mapValue(n, "metadata")
	name := "unnamed"
	if v := mapValue(meta, "name"); v != nil {
		name = v.Value
	}
	if ns := mapValue(meta, "namespace"); ns != nil && ns.Value != "" {
		return ns.Value + "/" + name
	}
	return name
}

func prefix(p string, ps []Problem) []Problem {
	for i := range ps {
		switch {
		case ps[i].Path == "":
			ps[i].Path = p
		case strings.HasPrefix(ps[i].Path, "["):
			ps[i].Path = p + ps[i].Path
		default:
			ps[i].Path = p + "." + ps[i].Path
		}
	}
	return ps
}

// duplicateKey finds the first key set twice in one YAML mapping, which
// YAMLToJSONStrict refuses without saying where in the tree it is.
func duplicateKey(src []byte, lineOffset int) (Problem, bool) {
	var n yamlv3.Node
	if yamlv3.Unmarshal(src, &n) != nil {
		return Problem{}, false
	}
	var walk func(n *yamlv3.Node, path string) (Problem, bool)
	walk = func(n *yamlv3.Node, path string) (Problem, bool) {
		switch n.Kind {
		case yamlv3.DocumentNode:
			for _, c := range n.Content {
				if p, ok := walk(c, path); ok {
					return p, ok
				}
			}
		case yamlv3.MappingNode:
			seen := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				kp := key(path, k.Value)
				if first, dup := seen[k.Value]; dup {
					return Problem{Path: kp, Message: fmt.Sprintf("duplicate key %q (lines %d and %d): YAML would silently keep only one value", k.Value, first+lineOffset, k.Line+lineOffset)}, true
				}
				seen[k.Value] = k.Line
				if p, ok := walk(n.Content[i+1], kp); ok {
					return p, ok
				}
			}
		case yamlv3.SequenceNode:
			for i, c := range n.Content {
				if p, ok := walk(c, index(path, i)); ok {
					return p, ok
				}
			}
		}
		return Problem{}, false
	}
	return walk(&n, "")
}
