package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/stepup-authz/stepup-authz/envoy/proxy"
	"github.com/stepup-authz/stepup-authz/extauthz"
	"github.com/stepup-authz/stepup-authz/extauthz/config"
	"github.com/stepup-authz/stepup-authz/extauthz/token"
	"github.com/stepup-authz/stepup-authz/policy"
)

type checkFlags struct {
	config, token, method, path, host, metadata, extensions string
	headers                                                 []string
	wait                                                    time.Duration
	// envoy is a bootstrap whose route selection, route metadata and context
	// extensions make the CheckRequest, as the front proxy would send it.
	envoy string
}

func newCheckCmd() *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check --config FILE --token JWT --method M --path P [--envoy FILE]",
		Short: "Show the decision for one request, the policy that applied and the exact response",
		Long: "check runs one request through the same code as serve and prints the decision,\n" +
			"the policy with the source of each field, and the response Envoy would return.\n" +
			"With --envoy, the request first goes through the bootstrap's route selection\n" +
			"exactly as the front proxy does it (path normalisation, virtual host, route,\n" +
			"per-route ext_authz settings), and the CheckRequest carries that route's metadata\n" +
			"and context extensions. Without it, only --metadata and --context-extensions stand\n" +
			"in for Envoy, and check says so when the decision came from the server's config alone.\n" +
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
	fl.StringVar(&f.token, "token", "", "bearer token (a JWT, or an opaque token an issuer introspects); empty sends no Authorization header; - reads it from stdin")
	fl.StringVar(&f.method, "method", "GET", "HTTP method")
	fl.StringVar(&f.path, "path", "/", "request path, query string allowed")
	fl.StringVar(&f.host, "host", "localhost", "request host (:authority)")
	fl.StringVar(&f.metadata, "metadata", "", `route metadata for the stepup namespace, as JSON: '{"required_acr":"aal2","max_age":300}'`)
	fl.StringVar(&f.extensions, "context-extensions", "", `context extensions, as a JSON object of strings: '{"required_acr":"aal2"}'`)
	fl.StringArrayVar(&f.headers, "header", nil, "extra request header name:value (repeatable)")
	fl.StringVar(&f.envoy, "envoy", "", "Envoy bootstrap YAML: pick the route and build the CheckRequest as the front proxy does")
	fl.DurationVar(&f.wait, "wait", 10*time.Second, "how long to wait for the issuers' keys")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func runCheck(ctx context.Context, f *checkFlags, out io.Writer) (bool, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.token == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			return false, fmt.Errorf("--token -: %w", err)
		}
		f.token = strings.TrimSpace(string(b))
	}
	cfg, err := config.Load(f.config, config.NewViper())
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			return false, errors.New(problems.Located(f.config).Error())
		}
		return false, err
	}
	req, err := f.request(cfg.MetadataNamespace)
	if err != nil {
		return false, err
	}
	if f.envoy != "" {
		plan, err := f.plan(out)
		if err != nil {
			return false, err
		}
		if plan.Check == nil {
			return plan.Status == 0, nil
		}
		req = plan.Check
	}
	ks := token.NewKeySets(token.KeySetOptions{RefreshInterval: cfg.JWKSRefreshInterval})
	defer ks.Close()
	var asked []introspection
	engine, err := extauthz.NewEngine(cfg, ks, extauthz.EngineOptions{OnIntrospection: func(issuer, result string) {
		asked = append(asked, introspection{issuer: issuer, result: result})
	}})
	if err != nil {
		return false, err
	}
	wctx, cancel := context.WithTimeout(ctx, f.wait)
	engine.WaitFirstFetch(wctx)
	cancel()
	r := extauthz.NewServer(engine, extauthz.Options{}).Evaluate(ctx, req)
	printResult(out, &r)
	printDialect(out, cfg, r.Claims)
	printIntrospections(out, asked, engine.Status(), r.Claims)
	f.printSourceNote(out, r.Provenance)
	// The metadata document is no denial, though Envoy gets it as one (a 200 local reply).
	return r.Response.GetStatus().GetCode() == int32(codes.OK) || r.Decision.Reason == policy.ReasonMetadataServed, nil
}

// plan runs the request through the bootstrap's routing (envoy/proxy, the
// code the front proxy serves with) and prints what the proxy does with it.
// A plan without a CheckRequest is the whole answer: the proxy replied by
// itself, or the route sends no Check.
func (f *checkFlags) plan(out io.Writer) (*proxy.Plan, error) {
	if f.metadata != "" || f.extensions != "" {
		return nil, errors.New("--envoy takes the route metadata and context extensions from the bootstrap; leave out --metadata and --context-extensions")
	}
	yaml, err := os.ReadFile(f.envoy)
	if err != nil {
		return nil, fmt.Errorf("--envoy: %w", err)
	}
	px, err := proxy.New(yaml, proxy.Options{})
	if err != nil {
		return nil, fmt.Errorf("--envoy %s: %w", f.envoy, err)
	}
	defer px.Close()
	headers, err := f.requestHeaders()
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequest(f.method, "http://"+f.host+"/", nil)
	if err != nil {
		return nil, fmt.Errorf("--method %q or --host %q: %w", f.method, f.host, err)
	}
	hr.RequestURI = f.path // as received: the proxy normalises it
	for k, v := range headers {
		if !strings.HasPrefix(k, ":") {
			hr.Header.Set(k, v)
		}
	}
	plan := px.Plan(hr)
	if plan.Route == nil {
		what := "no route matches this host and path"
		if plan.Details == "path_normalization_failed" {
			what = "the path is refused by path normalisation, before routing"
		}
		fmt.Fprintf(out, "envoy:    %s: %s\ndecision: deny (the proxy answers by itself; no Check is sent)\nresponse:\n  HTTP %d (%s)\n",
			f.envoy, what, plan.Status, plan.Details)
		return plan, nil
	}
	rt := plan.Route
	fmt.Fprintf(out, "envoy:    %s: virtual host %s, route %s (%s", f.envoy, rt.VirtualHost, orUnnamed(rt.Name), rt.Match)
	if len(rt.Methods) > 0 {
		fmt.Fprintf(out, ", %s", strings.Join(rt.Methods, " or "))
	}
	fmt.Fprintln(out, ")")
	if plan.Check == nil {
		fmt.Fprintf(out, "decision: allow (ext_authz is disabled on this route: Envoy sends no Check, and the request goes upstream without a token check)\n")
		return plan, nil
	}
	a := plan.Check.GetAttributes()
	for _, ns := range sortedKeys(a.GetRouteMetadataContext().GetFilterMetadata()) {
		b, _ := json.Marshal(a.GetRouteMetadataContext().GetFilterMetadata()[ns].AsMap())
		fmt.Fprintf(out, "  sends route metadata %s: %s\n", ns, b)
	}
	if ce := a.GetContextExtensions(); len(ce) > 0 {
		b, _ := json.Marshal(ce)
		fmt.Fprintf(out, "  sends context extensions: %s\n", b)
	}
	for _, name := range plan.NotRun {
		switch {
		case strings.Contains(name, "jwt_authn"):
			fmt.Fprintf(out, "  not run here: %s (its verified payload is not in metadata_context; the server verifies the token itself)\n", name)
		case strings.Contains(name, "cors"):
			if f.method == http.MethodOptions {
				fmt.Fprintf(out, "  not run here: %s (a CORS preflight, OPTIONS with Origin and Access-Control-Request-Method, is answered by it before ext_authz)\n", name)
			}
		default:
			fmt.Fprintf(out, "  not run here: %s\n", name)
		}
	}
	return plan, nil
}

// printSourceNote says plainly when nothing from Envoy shaped the policy, so
// that an allow is not mistaken for what a route with metadata would get.
func (f *checkFlags) printSourceNote(out io.Writer, prov policy.Provenance) {
	for field, src := range prov {
		if field == policy.FieldName {
			continue
		}
		if strings.HasPrefix(src, string(policy.SourceRouteMetadata)) || strings.HasPrefix(src, string(policy.SourceContextExtensions)) {
			return
		}
	}
	switch {
	case f.envoy != "":
		fmt.Fprintln(out, "note:     this route's metadata and context extensions set no requirement: the policy came only from the server's config (policy.routes, policy.default)")
	case f.metadata == "" && f.extensions == "":
		fmt.Fprintln(out, "note:     the policy came only from the server's config (policy.routes, policy.default): no Envoy route was given.\n"+
			"          Behind Envoy, the route's metadata or context extensions may ask for more; pass --envoy FILE to pick the route as the proxy does.")
	default:
		fmt.Fprintln(out, "note:     --metadata and --context-extensions set no requirement: the policy came only from the server's config (policy.routes, policy.default)")
	}
}

func orUnnamed(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return name
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (f *checkFlags) request(namespace string) (*authv3.CheckRequest, error) {
	headers, err := f.requestHeaders()
	if err != nil {
		return nil, err
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

// requestHeaders are the request's headers as Envoy sends them: pseudo-headers,
// the token as Authorization, and every --header.
func (f *checkFlags) requestHeaders() (map[string]string, error) {
	headers := map[string]string{":method": f.method, ":path": f.path, ":authority": f.host}
	if f.token != "" {
		headers["authorization"] = "Bearer " + f.token
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("--header %q: want name:value", h)
		}
		headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return headers, nil
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
	if d.Reason == policy.ReasonMetadataServed {
		decision = "allow (stepup-authz answers with the RFC 9728 metadata document itself; nothing goes upstream)"
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

// printDialect says how the token's issuer speaks when it is not the default
// (CONTRACT.md, "Identity-provider dialects"): where the level came from and
// which challenge a step-up denial carries.
func printDialect(w io.Writer, cfg *config.Config, c *policy.Claims) {
	if c == nil {
		return
	}
	for i := range cfg.Issuers {
		iss := &cfg.Issuers[i]
		if iss.Issuer != c.Issuer {
			continue
		}
		if iss.LevelClaim == policy.LevelClaimACRS {
			acrs := "(none in the token)"
			if len(c.ACRS) > 0 {
				b, _ := json.Marshal(c.ACRS)
				acrs = string(b)
			}
			fmt.Fprintf(w, "dialect:  level_claim acrs: the level comes from acrs %s through acr_aliases (acr is ignored)\n", acrs)
		}
		if iss.Challenge == policy.ChallengeEntra {
			fmt.Fprintln(w, "dialect:  challenge entra: a step-up denial asks for an authentication context with an Entra ID claims challenge (insufficient_claims)")
		}
		if len(iss.ClaimNames) > 0 {
			for _, k := range sortedKeys(iss.ClaimNames) {
				fmt.Fprintf(w, "dialect:  claim_names: %s is read from the token's %q\n", k, iss.ClaimNames[k])
			}
		}
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

// introspection is one call check made to an introspection endpoint.
type introspection struct{ issuer, result string }

// printIntrospections says whether the token was introspected, where, what
// the endpoint answered (token.Introspect* results), and the claims the
// decision was made on, which for an opaque token come from that answer.
func printIntrospections(w io.Writer, asked []introspection, status []token.IssuerStatus, c *policy.Claims) {
	if len(asked) == 0 {
		for _, st := range status {
			if st.Introspection != nil {
				fmt.Fprintln(w, "introspection: not used for this token")
				return
			}
		}
		return
	}
	for _, a := range asked {
		endpoint := "(endpoint unknown)"
		for _, st := range status {
			if st.Issuer == a.issuer && st.Introspection != nil && st.Introspection.Endpoint != "" {
				endpoint = st.Introspection.Endpoint
			}
		}
		fmt.Fprintf(w, "introspection: issuer %s asked at %s: %s\n", a.issuer, endpoint, a.result)
	}
	if c == nil {
		return
	}
	fmt.Fprintf(w, "  claims:   sub=%q acr=%q amr=%q", c.Subject, c.ACR, c.AMR)
	if !c.AuthTime.IsZero() {
		fmt.Fprintf(w, " auth_time=%s", c.AuthTime.UTC().Format(time.RFC3339))
	}
	if !c.Expiry.IsZero() {
		fmt.Fprintf(w, " exp=%s", c.Expiry.UTC().Format(time.RFC3339))
	}
	if len(c.Scopes) > 0 {
		fmt.Fprintf(w, " scope=%q", strings.Join(c.Scopes, " "))
	}
	if c.ClientID != "" {
		fmt.Fprintf(w, " client_id=%q", c.ClientID)
	}
	fmt.Fprintln(w)
}
