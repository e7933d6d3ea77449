package check

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Object is one rendered Kubernetes object: its JSON as kustomize emitted it
// and, when it decoded, its typed form (*appsv1.Deployment, ...).
type Object struct {
	Kind, Namespace, Name string
	JSON                  []byte
	Typed                 any
}

// ID is Kind/namespace/name (Kind/name for cluster-scoped or namespace-less objects).
func (o *Object) ID() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + "/" + o.Namespace + "/" + o.Name
}

// Render is one kustomization's output.
type Render struct {
	Dir     string // relative to the k8s root, e.g. "overlays/istio"
	Objects []*Object
}

// Family is the top of Dir ("base", "overlays/istio"): renders in one family
// describe one deployment, so references are resolved within it.
func (r *Render) Family() string {
	parts := strings.Split(r.Dir, "/")
	if len(parts) >= 2 && parts[0] == "overlays" {
		return parts[0] + "/" + parts[1]
	}
	return parts[0]
}

// Kustomizations lists the directories under root (relative, slash
// separated, sorted) that hold a kustomization.yaml.
func Kustomizations(fsys filesys.FileSystem, root string) ([]string, error) {
	var dirs []string
	err := fsys.Walk(root, func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() && p != root && info.Name() == "check" {
			return fs.SkipDir // the Go module with these checks
		}
		if !info.IsDir() && info.Name() == "kustomization.yaml" {
			rel := strings.TrimPrefix(strings.TrimPrefix(path.Dir(p), root), "/")
			dirs = append(dirs, rel)
		}
		return nil
	})
	slices.Sort(dirs)
	return dirs, err
}

// RenderDir runs kustomize on root/dir as `kustomize build` does (default
// options: load restrictions to the kustomization's root, no plugins).
func RenderDir(fsys filesys.FileSystem, root, dir string) (*Render, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(fsys, path.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("%s: kustomize build: %w", dir, err)
	}
	r := &Render{Dir: dir}
	for _, res := range m.Resources() {
		js, err := res.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", dir, res.CurId(), err)
		}
		r.Objects = append(r.Objects, &Object{
			Kind: res.GetKind(), Namespace: res.GetNamespace(), Name: res.GetName(), JSON: js,
		})
	}
	return r, nil
}
