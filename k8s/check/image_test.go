package check

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"debug/gosym"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// caBundle is where distroless (and Debian) keep the CA bundle, and where Go's
// crypto/x509 looks first on Linux.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// dockerfile is what the image test needs from ../../Dockerfile.
type dockerfile struct {
	finalFrom  string
	binary     string // where the final stage copies the binary
	user       string
	entrypoint []string
	cmd        []string
	build      string // the go build RUN line of the build stage
}

func parseDockerfile(t *testing.T, file string) dockerfile {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	var lines []string
	cont := ""
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cont += s + " "
			continue
		}
		lines = append(lines, cont+l)
		cont = ""
	}
	jsonArray := func(s string) []string {
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("Dockerfile: %q must be an exec-form JSON array (no shell in the image): %v", s, err)
		}
		return out
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			f := strings.Fields(rest)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform") })
			d.finalFrom, d.binary, d.user, d.entrypoint, d.cmd = f[0], "", "", nil, nil
		case "COPY":
			if f := strings.Fields(rest); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				d.binary = f[2]
			}
		case "USER":
			d.user = rest
		case "ENTRYPOINT":
			d.entrypoint = jsonArray(rest)
		case "CMD":
			d.cmd = jsonArray(rest)
		case "RUN":
			if strings.Contains(rest, "go build") {
				d.build = rest
			}
		}
	}
	return d
}

// TestImage builds, without a container engine, the image the Dockerfile
// describes (as ko does: the static binary and a CA bundle as layers, the
// Dockerfile's USER, ENTRYPOINT and CMD as config), writes it as an OCI
// layout, reads it back and checks it: non-root, the entrypoint is
// stepup-authz and runs, the CA bundle is where Go looks for it, no shell.
// The base image is not pulled (no network): distroless/static adds
// /etc/passwd, tzdata and its own CA bundle to the same layout.
func TestImage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	df := parseDockerfile(t, "../../Dockerfile")
	if df.finalFrom != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("Dockerfile: final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot (static, CA certificates, uid 65532)", df.finalFrom)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-tags serveronly", "-trimpath", "-X main.version=", "./cmd/stepup-authz"} {
		if !strings.Contains(df.build, want) {
			t.Errorf("Dockerfile: the go build step lacks %q: %s", want, df.build)
		}
	}
	if len(df.entrypoint) != 1 || df.entrypoint[0] != df.binary {
		t.Fatalf("Dockerfile: ENTRYPOINT %v, want [%q] (the copied binary)", df.entrypoint, df.binary)
	}
	uid := checkUser(t, df.user)

	ca, err := os.ReadFile(caBundle)
	if err != nil {
		t.Skipf("this machine has no CA bundle to put in the image: %v", err)
	}

	// The binary, built the way the Dockerfile builds it.
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "stepup-authz")
	const version = "v0.0.0-k8s-check"
	build := exec.Command("go", "build", "-tags", "serveronly", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/stepup-authz")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img,
		tarLayer(t, map[string]tarFile{caBundle: {ca, 0o644}}),
		tarLayer(t, map[string]tarFile{df.binary: {exe, 0o755}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.User = df.user
	cf.Config.Entrypoint = df.entrypoint
	cf.Config.Cmd = df.cmd
	cf.Config.ExposedPorts = map[string]struct{}{"9191/tcp": {}, "9192/tcp": {}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(tmp, "oci")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}

	// Read it back from disk, as a registry or a runtime would get it.
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %v, %d manifests", err, len(im.Manifests))
	}
	got, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	gcf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if gcf.Config.User != df.user {
		t.Errorf("config User = %q, want %q", gcf.Config.User, df.user)
	}
	if !slices.Equal(gcf.Config.Entrypoint, []string{df.binary}) {
		t.Errorf("config Entrypoint = %v, want [%s]", gcf.Config.Entrypoint, df.binary)
	}
	if len(gcf.Config.Cmd) == 0 || gcf.Config.Cmd[0] != "serve" {
		t.Errorf("config Cmd = %v, want serve --config ...", gcf.Config.Cmd)
	}

	files := extract(t, got)
	if f, ok := files[strings.TrimPrefix(caBundle, "/")]; !ok {
		t.Errorf("no %s in the image: an https JWKS could not be fetched", caBundle)
	} else if !x509.NewCertPool().AppendCertsFromPEM(f.data) {
		t.Errorf("%s holds no certificate", caBundle)
	}
	for _, sh := range []string{"bin/sh", "bin/bash", "bin/busybox"} {
		if _, ok := files[sh]; ok {
			t.Errorf("the image has a shell: /%s", sh)
		}
	}
	entry, ok := files[strings.TrimPrefix(df.binary, "/")]
	if !ok {
		t.Fatalf("the entrypoint %s is not in the image", df.binary)
	}
	if entry.mode&0o111 == 0 {
		t.Errorf("%s is not executable (mode %o)", df.binary, entry.mode)
	}

	// The entrypoint, taken out of the image, is a static stepup-authz.
	out := filepath.Join(tmp, "from-image")
	if err := os.WriteFile(out, entry.data, 0o755); err != nil {
		t.Fatal(err)
	}
	checkStatic(t, out)
	if b, err := exec.Command(out, "version").CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "stepup-authz "+version {
		t.Errorf("%s version: %v: %q, want \"stepup-authz %s\"", df.binary, err, b, version)
	}

	checkServerOnly(t, out)

	// Also as a docker-loadable tarball (docker load -i), read back.
	tb := filepath.Join(tmp, "image.tar")
	if err := tarball.WriteToFile(tb, nil, got); err == nil {
		if _, err := tarball.ImageFromPath(tb, nil); err != nil {
			t.Errorf("read back %s: %v", tb, err)
		}
	}

	checkDeploymentMatchesImage(t, uid, df)
	validateConfigMaps(t, out)
}

// checkUser returns the numeric uid of a USER uid:gid line and insists it is
// not root. Numeric, so Kubernetes' runAsNonRoot can verify it without
// reading /etc/passwd.
func checkUser(t *testing.T, user string) int64 {
	t.Helper()
	u, g, ok := strings.Cut(user, ":")
	uid, err1 := strconv.ParseInt(u, 10, 64)
	_, err2 := strconv.ParseInt(g, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("Dockerfile: USER %q, want numeric uid:gid (runAsNonRoot cannot check a name)", user)
	}
	if uid == 0 {
		t.Fatalf("Dockerfile: USER %q is root", user)
	}
	return uid
}

// checkStatic fails when the binary needs a dynamic loader: distroless/static
// has no libc.
func checkStatic(t *testing.T, file string) {
	t.Helper()
	f, err := elf.Open(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (has an ELF interpreter): build with CGO_ENABLED=0", file)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", file, libs)
	}
}

// checkServerOnly proves the image's binary is the server only: dev (a
// token-minting identity provider) and bench say they are not built in, and
// their packages are not in the binary's function table (.gopclntab, which
// -s -w keeps). The server's own packages are looked for too, so that the
// absence means something.
func checkServerOnly(t *testing.T, bin string) {
	t.Helper()
	// With an unknown flag the real commands would refuse at once; the bare ones
	// would start and not return, so they come second.
	for _, args := range [][]string{{"dev", "--no-such-flag"}, {"bench", "--no-such-flag"}, {"dev"}, {"bench"}} {
		cmd := exec.Command(bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		want := `stepup-authz: "` + args[0] + `" is not built into this binary (built with -tags serveronly); use a full build: go install ./cmd/stepup-authz`
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.TrimSpace(stderr.String()) != want {
			t.Fatalf("image binary %v: %v, stdout %q, stderr %q; want exit 2 and %q", args, err, stdout.String(), stderr.String(), want)
		}
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		t.Fatalf("%s: no .gopclntab or .text section", bin)
	}
	data, err := pcln.Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		t.Fatalf("%s: function table: %v", bin, err)
	}
	// A method's package name can carry the interface it implements as a suffix.
	has := func(p string) bool {
		return slices.ContainsFunc(tab.Funcs, func(fn gosym.Func) bool {
			q := fn.PackageName()
			return q == p || strings.HasPrefix(q, p+".") || strings.HasPrefix(q, p+"/")
		})
	}
	const mod = "github.com/stepup-authz/stepup-authz/"
	for _, p := range []string{mod + "policy", mod + "extauthz"} {
		if !has(p) {
			t.Errorf("image binary: %s not found in its function table; the check for dev-only packages would prove nothing", p)
		}
	}
	for _, p := range []string{mod + "internal/devidp", mod + "internal/bench"} {
		if has(p) {
			t.Errorf("image binary: %s is compiled in; the image must carry the server only (-tags serveronly)", p)
		}
	}
}

// checkDeploymentMatchesImage ties k8s/base to the image: the pod runs as the
// image's user, and uses the image's entrypoint with the Dockerfile's command.
func checkDeploymentMatchesImage(t *testing.T, uid int64, df dockerfile) {
	t.Helper()
	r, err := RenderDir(filesys.MakeFsOnDisk(), "..", "base")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range r.Objects {
		Decode(o)
		d, ok := o.Typed.(*appsv1.Deployment)
		if !ok {
			continue
		}
		pod := d.Spec.Template.Spec
		if u := pod.SecurityContext.RunAsUser; u == nil || *u != uid {
			t.Errorf("Deployment runAsUser %v, but the image's USER is %d", u, uid)
		}
		c := pod.Containers[0]
		if len(c.Command) > 0 {
			t.Errorf("Deployment sets command %v: the image's entrypoint %v would not run", c.Command, df.entrypoint)
		}
		if !slices.Equal(c.Args, df.cmd) {
			t.Errorf("Deployment args %v differ from the Dockerfile's CMD %v", c.Args, df.cmd)
		}
	}
}

// validateConfigMaps runs `stepup-authz validate` (the binary from the
// image) on the config (every .yaml key) every rendered ConfigMap carries.
func validateConfigMaps(t *testing.T, bin string) {
	t.Helper()
	tr, err := Load(filesys.MakeFsOnDisk(), "..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range tr.Renders {
		for _, o := range r.Objects {
			cm, ok := o.Typed.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			for key, data := range cm.Data {
				if !strings.HasSuffix(key, ".yaml") {
					continue // not a config: k8s/monitoring's Grafana dashboard (JSON)
				}
				file := filepath.Join(t.TempDir(), key)
				if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
				n++
				if out, err := exec.Command(bin, "validate", "--config", file).CombinedOutput(); err != nil {
					t.Errorf("%s: %s data[%s]: stepup-authz validate: %v\n%s", r.Dir, o.ID(), key, err, out)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no ConfigMap config found to validate")
	}
}

type tarFile struct {
	data []byte
	mode int64
}

func tarLayer(t *testing.T, files map[string]tarFile) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, name := range sortedKeys(files) {
		rel := strings.TrimPrefix(name, "/")
		for d := filepath.Dir(rel); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedKeys(dirs) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range sortedKeys(files) {
		f := files[name]
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(name, "/"), Mode: f.mode, Size: int64(len(f.data)), Uid: 0, Gid: 0}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// extract flattens the image's layers into path -> file.
func extract(t *testing.T, img v1.Image) map[string]tarFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]tarFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(hdr.Name, "/")] = tarFile{data, hdr.Mode}
	}
	return files
}
