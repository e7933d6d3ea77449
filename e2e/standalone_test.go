package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// TestStandaloneServerAsTheREADMESays follows README's "Run the server on its
// own" over the real binary: the playground (dev), a server from
// examples/config.yaml, the README's CheckRequest JSON sent the way grpcurl
// sends it (service and message types learnt by gRPC server reflection, the
// JSON decoded against them), then the playground restarted with
// --authz-addr in front of that server. Only the ports differ from the
// README (free ones, so that parallel runs do not collide), and the test
// checks that it changed every one of them in the example config.
func TestStandaloneServerAsTheREADMESays(t *testing.T) {
	idpAddr, proxyAddr, appAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	grpcAddr, adminAddr := freeAddr(t), freeAddr(t)
	src, err := os.ReadFile("../examples/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(src)
	for from, to := range map[string]string{"127.0.0.1:8080": idpAddr, "127.0.0.1:9291": grpcAddr, "127.0.0.1:9292": adminAddr} {
		if !strings.Contains(cfg, from) {
			t.Fatalf("examples/config.yaml no longer uses %s; README and this test follow it", from)
		}
		cfg = strings.ReplaceAll(cfg, from, to)
	}
	cfgPath := writeFile(t, "config.yaml", cfg)
	checkJSON := readmeCheckRequest(t)

	// 1. The playground, for its identity provider (dev's own server on free ports too).
	playground := []string{"dev", "--idp-addr", idpAddr, "--proxy-addr", proxyAddr, "--app-addr", appAddr}
	dev1 := startProcess(t, "dev", append(playground, "--grpc-addr", freeAddr(t), "--admin-addr", freeAddr(t))...)
	dev1.waitOutput(t, "Ctrl-C stops everything")

	// 2. go run ./cmd/stepup-authz serve --config examples/config.yaml
	srv := startProcess(t, "serve", "serve", "--config", cfgPath)
	srv.waitOutput(t, "jwks keys loaded")
	waitFor(t, "serve's /readyz to answer 200", func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// 3. grpcurl list, and the README's Check with an aal1 then an aal2 token.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	services, check := reflect(t, conn, "envoy.service.auth.v3.Authorization", "Check")
	for _, want := range []string{"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(services, want) {
			t.Errorf("reflection lists %v, without %s", services, want)
		}
	}
	token := func(acr string) string {
		code, stdout, stderr := run(t, nil, "dev", "token", "--idp", "http://"+idpAddr, "--acr", acr)
		if code != 0 {
			t.Fatalf("dev token: exit %d: %s", code, stderr)
		}
		return strings.TrimSpace(stdout)
	}
	resp := invoke(t, conn, check, strings.ReplaceAll(checkJSON, "$TOKEN", token("aal1")))
	dr := resp.GetDeniedResponse()
	if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || dr.GetStatus().GetCode() != 401 ||
		dr.GetBody() != `{"error":"step_up_required","required_acr":"aal2","max_age":300}` {
		t.Fatalf("aal1: %s", protojson.Format(resp))
	}
	if resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue() != "acr_too_low" {
		t.Errorf("aal1: dynamic metadata %v", resp.GetDynamicMetadata())
	}
	resp = invoke(t, conn, check, strings.ReplaceAll(checkJSON, "$TOKEN", token("aal2")))
	if resp.GetStatus().GetCode() != int32(codes.OK) || header(resp, "x-stepup-acr") != "aal2" {
		t.Fatalf("aal2: %s", protojson.Format(resp))
	}

	// 4. The playground again, in front of this server: dev --authz-addr.
	dev1.interrupt(t)
	dev2 := startProcess(t, "dev --authz-addr", append(playground, "--authz-addr", grpcAddr)...)
	dev2.waitOutput(t, "Ctrl-C stops everything")
	if strings.Contains(dev2.out.String(), "stepup-authz serving") {
		t.Errorf("dev --authz-addr started a server of its own:\n%s", dev2.out.String())
	}
	post := func(tok string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+proxyAddr+"/api/payout-destination", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The restarted IdP has new keys under new kids: the server, which
	// outlived it, fetches them rather than failing their signatures against
	// the old keys. It fetches at most once per issuer every 5 s (README,
	// Tokens), and it fetched moments ago, so the first answers may refuse the
	// unknown kid; none may be anything else, and the step-up comes.
	aal1 := token("aal1")
	waitFor(t, "the server to fetch the restarted IdP's keys", func() bool {
		code, body := post(aal1)
		switch {
		case code == 401 && strings.Contains(body, "step_up_required"):
			return true
		case code == 401 && body == `{"error":"unauthorized"}`, code == 503:
			return false
		}
		t.Fatalf("aal1 through the proxy: %d %s", code, body)
		return false
	})
	if code, body := post(token("aal2")); code != 200 || !strings.Contains(body, `"x-stepup-acr":"aal2"`) {
		t.Fatalf("aal2 through the proxy: %d %s", code, body)
	}
	if !strings.Contains(srv.out.String(), "reason=acr_too_low") {
		t.Errorf("the hand-run server did not decide the proxied request:\n%s", srv.out.String())
	}
}

// Reflection is off unless listen.reflection turns it on.
func TestReflectionIsOffByDefault(t *testing.T) {
	idp := startIdP(t)
	s := startServer(t, idp, `
listen: { grpc: "{{GRPC}}", admin: "{{ADMIN}}" }
issuers:
  - issuer: "{{ISSUER}}"
    jwks_uri: "{{ISSUER}}/jwks.json"
    audiences: ["https://api.example.com"]
`)
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err == nil {
		err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("reflection without listen.reflection: %v, want Unimplemented", err)
	}
}

// readmeCheckRequest is the JSON of the README's grpcurl Check, with $TOKEN
// still in it.
func readmeCheckRequest(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)grpcurl -plaintext -d @ 127\.0\.0\.1:9291 envoy\.service\.auth\.v3\.Authorization/Check <<EOF\n(.*?)\nEOF\n`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no grpcurl Check with a heredoc")
	}
	if !strings.Contains(string(m[1]), "$TOKEN") {
		t.Fatalf("README's CheckRequest has no $TOKEN:\n%s", m[1])
	}
	return string(m[1])
}

// reflect does what grpcurl does before a call: list the services, and get
// the file that defines service (with every file it depends on) by gRPC
// server reflection, then find method in it. Nothing comes from the Go types
// compiled into this test.
func reflect(t *testing.T, conn *grpc.ClientConn, service, method string) ([]string, protoreflect.MethodDescriptor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := resp.GetErrorResponse(); e != nil {
			t.Fatalf("reflection: %s", e.GetErrorMessage())
		}
		return resp
	}
	var services []string
	for _, s := range ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}).GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	add := func(raw [][]byte) {
		for _, b := range raw {
			fd := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(b, fd); err != nil {
				t.Fatal(err)
			}
			if !seen[fd.GetName()] {
				seen[fd.GetName()] = true
				set.File = append(set.File, fd)
			}
		}
	}
	add(ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: service}}).GetFileDescriptorResponse().GetFileDescriptorProto())
	// The server sends each file once per stream; ask for any dependency it
	// has not sent yet, as grpcurl does.
	for {
		var missing string
		for _, fd := range set.File {
			for _, dep := range fd.GetDependency() {
				if !seen[dep] {
					missing = dep
				}
			}
		}
		if missing == "" {
			break
		}
		add(ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileByFilename{FileByFilename: missing}}).GetFileDescriptorResponse().GetFileDescriptorProto())
		if !seen[missing] {
			t.Fatalf("reflection did not send %s", missing)
		}
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("the files reflection sent do not make a whole: %v", err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		t.Fatal(err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		t.Fatalf("%s is a %T", service, d)
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		t.Fatalf("%s has no method %s", service, method)
	}
	return services, md
}

// invoke sends the JSON request as md's input type and returns the answer as
// a CheckResponse.
func invoke(t *testing.T, conn *grpc.ClientConn, md protoreflect.MethodDescriptor, js string) *authv3.CheckResponse {
	t.Helper()
	in := dynamicpb.NewMessage(md.Input())
	if err := protojson.Unmarshal([]byte(js), in); err != nil {
		t.Fatalf("the README's JSON is not a %s: %v\n%s", md.Input().FullName(), err, js)
	}
	out := dynamicpb.NewMessage(md.Output())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Invoke(ctx, fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name()), in, out); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	resp := &authv3.CheckResponse{}
	if err := proto.Unmarshal(b, resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// process is a running stepup-authz command.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(binary, args...), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.out.String())
		}
	})
	return p
}

func (p *process) waitOutput(t *testing.T, s string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to print %q", p.name, s), func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited: %v\n%s", p.name, err, p.out.String())
		default:
		}
		return strings.Contains(p.out.String(), s)
	})
}

// interrupt is Ctrl-C: SIGINT, then a clean exit.
func (p *process) interrupt(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s exited with %v after SIGINT", p.name, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop within 20s of SIGINT", p.name)
	}
}
