package check

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// TestShippedManifests renders every kustomization under k8s/ and expects no
// finding at all.
func TestShippedManifests(t *testing.T) {
	problems, err := Check(filesys.MakeFsOnDisk(), "..")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestEveryOverlayRenders pins the set of kustomizations, so an overlay that
// stops being found (renamed, kustomization.yaml deleted) is noticed, and
// checks each decodes into typed objects only.
func TestEveryOverlayRenders(t *testing.T) {
	want := []string{
		"base",
		"monitoring",
		"overlays/envoy-gateway",
		"overlays/envoy-gateway/app",
		"overlays/istio",
		"overlays/istio/app",
		"overlays/istio/gateway",
		"overlays/istio/gateway-mtls",
		"overlays/istio/gateway-route-metadata",
	}
	tr, err := Load(filesys.MakeFsOnDisk(), "..")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range tr.Renders {
		got = append(got, r.Dir)
		if len(r.Objects) == 0 {
			t.Errorf("%s renders nothing", r.Dir)
		}
		for _, o := range r.Objects {
			if o.Typed == nil {
				t.Errorf("%s: %s did not decode", r.Dir, o.ID())
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("rendered %v, want %v", got, want)
	}
	for _, f := range tr.Findings() {
		t.Error(f)
	}
}

// TestKubectlAgrees renders every kustomization with `kubectl kustomize`
// too, where kubectl is installed, and expects the same objects: what the
// tests check is what `kubectl apply -k` would send.
func TestKubectlAgrees(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	dirs, err := Kustomizations(filesys.MakeFsOnDisk(), "..")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		r, err := RenderDir(filesys.MakeFsOnDisk(), "..", dir)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(kubectl, "kustomize", filepath.Join("..", dir)).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", dir, err)
		}
		// kubectl's kustomize sorts by kind (legacy order); compare by identity.
		id := func(v map[string]any) string {
			md, _ := v["metadata"].(map[string]any)
			return fmt.Sprint(v["apiVersion"], "/", v["kind"], "/", md["namespace"], "/", md["name"])
		}
		theirs := map[string]any{}
		for _, doc := range strings.Split(string(out), "\n---\n") {
			var v map[string]any
			if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
				t.Fatal(err)
			}
			theirs[id(v)] = v
		}
		ours := map[string]any{}
		for _, o := range r.Objects {
			var v map[string]any
			if err := json.Unmarshal(o.JSON, &v); err != nil {
				t.Fatal(err)
			}
			ours[id(v)] = v
		}
		if !reflect.DeepEqual(ours, theirs) {
			t.Errorf("%s: kubectl kustomize renders differently from the kustomize library", dir)
		}
	}
}

// TestReadmeQuotesEnvoyCluster keeps the README's plain-Envoy step and the
// checked cluster file the same text.
func TestReadmeQuotesEnvoyCluster(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := os.ReadFile(filepath.Join("..", EnvoyClusterFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(cluster)) {
		t.Errorf("README.md does not quote k8s/%s verbatim", EnvoyClusterFile)
	}
}
