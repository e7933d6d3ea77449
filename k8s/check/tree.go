package check

import (
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/stepup-authz/stepup-authz/extauthz/config"
)

// Finding is a problem in one render's object, or in one file.
type Finding struct {
	Where string // "overlays/istio: Deployment/stepup/stepup-authz", or a file path
	Problem
}

func (f Finding) String() string { return f.Where + ": " + f.Problem.String() }

// Tree is every kustomization under a k8s/ root, rendered and decoded.
type Tree struct {
	fsys    filesys.FileSystem
	root    string
	Renders []*Render

	findings []Finding
	// servers holds, per family, the stepup-authz config its ConfigMap
	// carries (nil when it does not parse).
	servers map[string]*config.Config
}

// Check renders and checks every kustomization under root and returns every
// finding, one line each, in a stable order. The error is for a tree that
// could not be walked at all.
func Check(fsys filesys.FileSystem, root string) ([]string, error) {
	t, err := Load(fsys, root)
	if err != nil {
		return nil, err
	}
	t.checkAll()
	out := make([]string, len(t.findings))
	for i, f := range t.findings {
		out[i] = f.String()
	}
	return out, nil
}

// Load renders and strictly decodes every kustomization under root.
func Load(fsys filesys.FileSystem, root string) (*Tree, error) {
	dirs, err := Kustomizations(fsys, root)
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%s: no kustomization.yaml found", root)
	}
	t := &Tree{fsys: fsys, root: root, servers: map[string]*config.Config{}}
	for _, dir := range dirs {
		r, err := RenderDir(fsys, root, dir)
		if err != nil {
			t.findings = append(t.findings, Finding{Where: dir, Problem: Problem{Message: strings.TrimPrefix(err.Error(), dir+": ")}})
			continue
		}
		t.Renders = append(t.Renders, r)
		for _, o := range r.Objects {
			for _, p := range Decode(o) {
				t.add(r, o, p.Path, "%s", p.Message)
			}
		}
	}
	return t, nil
}

// Findings are the problems found so far.
func (t *Tree) Findings() []Finding { return slices.Clone(t.findings) }

func (t *Tree) checkAll() {
	for _, r := range t.Renders {
		t.checkWorkloads(r)
	}
	t.checkIstio()
	t.checkEnvoyGateway()
	t.checkEnvoyCluster()
	t.checkMonitoring()
}

func (t *Tree) add(r *Render, o *Object, path, format string, args ...any) {
	where := r.Dir
	if o != nil {
		where += ": " + o.ID()
	}
	t.findings = append(t.findings, Finding{Where: where, Problem: Problem{Path: path, Message: fmt.Sprintf(format, args...)}})
}

func (t *Tree) addFile(file, path, format string, args ...any) {
	t.findings = append(t.findings, Finding{Where: file, Problem: Problem{Path: path, Message: fmt.Sprintf(format, args...)}})
}

// family returns the renders of one family, the family's own directory first.
func (t *Tree) family(name string) []*Render {
	var out []*Render
	for _, r := range t.Renders {
		if r.Family() == name {
			out = append(out, r)
		}
	}
	return out
}

// server returns the render of a family that deploys stepup-authz (the one
// whose directory is the family's).
func (t *Tree) server(family string) *Render {
	for _, r := range t.Renders {
		if r.Dir == family {
			return r
		}
	}
	return nil
}

// undecoded reports whether an object of kind in r failed to decode; checks
// that would only repeat that failure as "selects nothing" stay quiet.
func undecoded(r *Render, kind string) bool {
	for _, o := range r.Objects {
		if o.Kind == kind && o.Typed == nil {
			return true
		}
	}
	return false
}

// objects returns the decoded objects of type T in r.
func objects[T any](r *Render) []*typed[T] {
	var out []*typed[T]
	for _, o := range r.Objects {
		if v, ok := o.Typed.(T); ok {
			out = append(out, &typed[T]{o, v})
		}
	}
	return out
}

type typed[T any] struct {
	*Object
	V T
}
