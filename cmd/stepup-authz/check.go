package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

type checkFlags struct {
	config, token, method, path, host, metadata, extensions string
	headers                                                 []string
	wait                                                    time.Duration
}

func newCheckCmd() *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check --config FILE --token JWT --method M --path P",
		Short: "Show the decision for one request, the policy that applied and the exact response",
		Long: "check runs one request through the same code as serve and prints the decision,\n" +
			"the policy with the source of each field, and the response Envoy would return.\n" +
			"Exit status: 0 allow, 1 deny, 2 error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			allowed, err := runCheck(cmd.Context(), &f, cmd.OutOrStdout())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if !allowed {
				return &exitError{code: 1, err: fmt.Errorf("")}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "config file (YAML)")
	fl.StringVar(&f.token, "token", "", "bearer token (a JWT); empty sends no Authorization header; - reads it from stdin")
	fl.StringVar(&f.method, "method", "GET", "HTTP method")
	fl.StringVar(&f.path, "path", "/", "request path, query string allowed")
	fl.StringVar(&f.host, "host", "localhost", "request host (:authority)")
	fl.StringVar(&f.metadata, "metadata", "", `route metadata for the stepup namespace, as JSON: '{"required_acr":"aal2","max_age":300}'`)
	fl.StringVar(&f.extensions, "context-extensions", "", `context extensions, as a JSON object of strings: '{"required_acr":"aal2"}'`)
	fl.StringArrayVar(&f.headers, "header", nil, "extra request header name:value (repeatable)")
	fl.DurationVar(&f.wait, "wait", 10*time.Second, "how long to wait for the issuers' keys")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func runCheck(ctx context.Context, f *checkFlags, out io.Writer) (bool, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := config.Load(f.config, config.NewViper())
	if err != nil {
		return false, err
	}
	req, err := f.request(cfg.MetadataNamespace)
	if err != nil {
		return false, err
	}
	ks := token.NewKeySets(token.KeySetOptions{RefreshInterval: cfg.JWKSRefreshInterval})
	defer ks.Close()
	engine, verifier, err := extauthz.NewEngine(cfg, extauthz.NewRuntime(ks))
	if err != nil {
		return false, err
	}
	wctx, cancel := context.WithTimeout(ctx, f.wait)
	verifier.WaitFirstFetch(wctx)
	cancel()
	r := extauthz.NewServer(engine, extauthz.Options{}).Evaluate(ctx, req)
	printResult(out, &r)
	return r.Response.GetStatus().GetCode() == int32(codes.OK), nil
}

func (f *checkFlags) request(namespace string) (*authv3.CheckRequest, error) {
	headers := map[string]string{":method": f.method, ":path": f.path, ":authority": f.host}
	raw := f.token
	if raw == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("--token -: %w", err)
		}
		raw = strings.TrimSpace(string(b))
	}
	if raw != "" {
		headers["authorization"] = "Bearer " + raw
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("--header %q: want name:value", h)
		}
		headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: f.method, Path: f.path, Host: f.host, Headers: headers},
	}}
	if f.metadata != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(f.metadata), &m); err != nil {
			return nil, fmt.Errorf("--metadata: not a JSON object: %w", err)
		}
		s, err := structpb.NewStruct(m)
		if err != nil {
			return nil, fmt.Errorf("--metadata: %w", err)
		}
		attrs.RouteMetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{namespace: s}}
	}
	if f.extensions != "" {
		if err := json.Unmarshal([]byte(f.extensions), &attrs.ContextExtensions); err != nil {
			return nil, fmt.Errorf("--context-extensions: want a JSON object of strings: %w", err)
		}
	}
	return &authv3.CheckRequest{Attributes: attrs}, nil
}

func printResult(w io.Writer, r *extauthz.Result) {
	d := &r.Decision
	decision := "deny"
	if r.Response.GetStatus().GetCode() == int32(codes.OK) {
		decision = "allow"
	}
	if r.DryRun {
		decision = "allow (dry run: would have denied)"
	}
	fmt.Fprintf(w, "decision: %s\nreason:   %s\n", decision, d.Reason)
	if d.Detail != "" {
		fmt.Fprintf(w, "detail:   %s\n", d.Detail)
	}
	fmt.Fprintf(w, "policy:   %s\n", d.Policy)
	fields := make([]string, 0, len(r.Provenance))
	for k := range r.Provenance {
		fields = append(fields, k)
	}
	sort.Slice(fields, func(i, j int) bool { return fieldOrder(fields[i]) < fieldOrder(fields[j]) })
	for _, k := range fields {
		fmt.Fprintf(w, "  %-15s from %s\n", k, r.Provenance[k])
	}
	if c := r.Claims; c != nil {
		fmt.Fprintf(w, "token:    iss=%s sub=%s acr=%q machine=%v\n", c.Issuer, c.Subject, d.Level, d.Machine)
	}
	fmt.Fprintln(w, "response:")
	switch hr := r.Response.HttpResponse.(type) {
	case *authv3.CheckResponse_OkResponse:
		fmt.Fprintln(w, "  OK: the request continues upstream")
		for _, h := range hr.OkResponse.GetHeaders() {
			fmt.Fprintf(w, "  set upstream header %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		for _, h := range hr.OkResponse.GetHeadersToRemove() {
			fmt.Fprintf(w, "  remove upstream header %s\n", h)
		}
	case *authv3.CheckResponse_DeniedResponse:
		dr := hr.DeniedResponse
		fmt.Fprintf(w, "  HTTP %d\n", dr.GetStatus().GetCode())
		for _, h := range dr.GetHeaders() {
			fmt.Fprintf(w, "  %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		fmt.Fprintf(w, "\n  %s\n", dr.GetBody())
	}
	if md := r.Response.GetDynamicMetadata(); md != nil {
		b, _ := json.Marshal(md.AsMap())
		fmt.Fprintf(w, "dynamic_metadata: %s\n", b)
	}
}

func fieldOrder(f string) int {
	for i, k := range policy.Fields {
		if k == f {
			return i
		}
	}
	return len(policy.Fields)
}
