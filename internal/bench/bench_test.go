package bench

import (
	"context"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// denyServer denies requests whose path is /deny, allows the others.
type denyServer struct {
	authv3.UnimplementedAuthorizationServer
}

func (denyServer) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	code := codes.OK
	if r.GetAttributes().GetRequest().GetHttp().GetPath() == "/deny" {
		code = codes.PermissionDenied
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code)}}, nil
}

func serveTest(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, denyServer{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func item(t *testing.T, path, token string, expect int32) *Item {
	t.Helper()
	r := Request(token)
	r.Attributes.Request.Http.Path = path
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return &Item{Msg: Frame(b), Expect: expect}
}

// TestClientsAgainstGRPCGo drives grpc-go's server with both clients, closed
// and open loop, with requests larger than an HTTP/2 frame and, together,
// than the server's initial flow-control windows.
func TestClientsAgainstGRPCGo(t *testing.T) {
	addr := serveTest(t, grpc.MaxConcurrentStreams(16))
	big := strings.Repeat("a", 40_000)
	pools := &Pools{
		Cached:  []*Item{item(t, "/ok", "tok", 0), item(t, "/ok", big, 0)},
		Invalid: []*Item{item(t, "/deny", "tok", 7)},
	}
	for _, client := range []string{"h2", "grpc"} {
		for _, load := range []Load{
			{Concurrency: 64, Count: 1200},
			{Rate: 4000, Count: 600, MaxInflight: 256},
		} {
			t.Run(client, func(t *testing.T) {
				var s Sender
				var err error
				if client == "h2" {
					s, err = DialH2(addr, 300, 30*time.Second)
				} else {
					s, err = DialGRPC(addr, 30*time.Second)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				src, err := NewMixSource(Mix{Cached: 2, Invalid: 1}, pools)
				if err != nil {
					t.Fatal(err)
				}
				st, err := Run([]Sender{s}, src, load)
				if err != nil {
					t.Fatal(err)
				}
				if st.Errors != 0 || st.Unexpected != 0 || st.Checks != load.Count {
					t.Fatalf("%+v", st)
				}
				if st.Denied != load.Count/3 {
					t.Errorf("denied %d of %d, want a third", st.Denied, st.Checks)
				}
				if st.P50 <= 0 || st.P999 < st.P50 || st.Max < st.P999 {
					t.Errorf("percentiles out of order: %+v", st)
				}
			})
		}
	}
}

// TestH2ServerGone fails calls, never hangs, when the server goes away.
func TestH2ServerGone(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, denyServer{})
	go func() { _ = gs.Serve(lis) }()
	s, err := DialH2(lis.Addr().String(), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src, _ := NewMixSource(Mix{Cached: 1}, &Pools{Cached: []*Item{item(t, "/ok", "tok", 0)}})
	go func() {
		time.Sleep(100 * time.Millisecond)
		gs.Stop()
	}()
	st, err := Run([]Sender{s}, src, Load{Concurrency: 8, Duration: 5 * time.Second, Drain: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if st.Errors == 0 {
		t.Fatalf("no errors after the server stopped: %+v", st)
	}
	if st.Elapsed > 4*time.Second {
		t.Errorf("the run went on %v after the connection died", st.Elapsed)
	}
}

func TestMixPattern(t *testing.T) {
	m, err := ParseMix("cached=90,unique=10")
	if err != nil {
		t.Fatal(err)
	}
	p := string(m.pattern())
	if len(p) != 10 || strings.Count(p, "u") != 1 || strings.Count(p, "c") != 9 {
		t.Fatalf("pattern %q", p)
	}
	if p := string((Mix{Cached: 1, Invalid: 1}).pattern()); p != "ci" {
		t.Errorf("pattern %q, want ci", p)
	}
	for _, bad := range []string{"", "cached", "cached=-1", "other=1", "cached=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

func TestMixSourceUniqueOnce(t *testing.T) {
	u := []*Item{{Expect: 1}, {Expect: 2}, {Expect: 3}}
	src, err := NewMixSource(Mix{Unique: 1}, &Pools{Unique: u})
	if err != nil {
		t.Fatal(err)
	}
	for i := range u {
		it, ok := src.Next()
		if !ok || it != u[i] {
			t.Fatalf("item %d: %v %v", i, it, ok)
		}
	}
	if _, ok := src.Next(); ok {
		t.Fatal("a unique token was handed out twice")
	}
	if src.UniqueUsed() != 3 {
		t.Errorf("UniqueUsed %d", src.UniqueUsed())
	}
}

func TestCheckResponseCode(t *testing.T) {
	for _, tc := range []struct {
		resp *authv3.CheckResponse
		want int32
	}{
		{&authv3.CheckResponse{}, -1},
		{&authv3.CheckResponse{Status: &rpcstatus.Status{}}, 0},
		{&authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7, Message: "no"}}, 7},
	} {
		b, err := proto.Marshal(tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := responseCode(Frame(b))
		if err != nil || got != tc.want {
			t.Errorf("%v: code %d, %v; want %d", tc.resp, got, err, tc.want)
		}
	}
	if _, err := responseCode([]byte{0, 0, 0, 0, 9, 1}); err == nil {
		t.Error("a truncated response was accepted")
	}
}

func TestRequestShape(t *testing.T) {
	r := Request("tok")
	h := r.GetAttributes().GetRequest().GetHttp().GetHeaders()
	if len(h) != 12 || h["authorization"] != "Bearer tok" {
		t.Errorf("%d headers: %v", len(h), h)
	}
	if len(Request("").GetAttributes().GetRequest().GetHttp().GetHeaders()) != 12 {
		t.Error("a request without a token does not have 12 headers")
	}
	md := r.GetAttributes().GetRouteMetadataContext().GetFilterMetadata()[Route.Namespace].AsMap()
	if md["required_acr"] != "aal2" || md["max_age"] != float64(300) {
		t.Errorf("route metadata %v", md)
	}
}

func TestQuantile(t *testing.T) {
	var l []time.Duration
	for i := 1; i <= 1000; i++ {
		l = append(l, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{0.5: 500, 0.9: 900, 0.99: 990, 0.999: 999, 1: 1000} {
		if got := quantile(l, q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing")
	}
}

// TestSummarizeByConnections: with several connection counts, each server has
// a summary per count, and its ratio is taken against the floor's phases of the
// same run over the same count only.
func TestSummarizeByConnections(t *testing.T) {
	servers := []*server{{name: NameFloor}, {name: NameSelf}}
	var phases []Phase
	add := func(run int, name string, conns int, rate float64) {
		phases = append(phases, Phase{Run: run, Server: name, Connections: conns, Stats: Stats{Rate: rate}})
	}
	// Over 1 connection stepup-authz is 1.2x the floor in both runs, over 4
	// 0.5x; the floor's rates differ between counts, so mixing counts up would
	// give other ratios.
	add(1, NameFloor, 1, 1000)
	add(1, NameSelf, 1, 1200)
	add(1, NameFloor, 4, 800)
	add(1, NameSelf, 4, 400)
	add(2, NameSelf, 4, 450)
	add(2, NameFloor, 4, 900)
	add(2, NameSelf, 1, 1320)
	add(2, NameFloor, 1, 1100)
	got := summarize(phases, servers, []int{1, 4})
	want := []struct {
		server string
		conns  int
		rate   float64
		ratio  float64
	}{
		{NameFloor, 1, 1050, 0},
		{NameSelf, 1, 1260, 1.2},
		{NameFloor, 4, 850, 0},
		{NameSelf, 4, 425, 0.5},
	}
	if len(got) != len(want) {
		t.Fatalf("%d summaries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Server != w.server || g.Connections != w.conns || g.Rate != w.rate || math.Abs(g.RatioToFloor-w.ratio) > 1e-9 {
			t.Errorf("summary %d = %s over %d: %v Checks/s, %vx; want %s over %d: %v, %vx",
				i, g.Server, g.Connections, g.Rate, g.RatioToFloor, w.server, w.conns, w.rate, w.ratio)
		}
	}
	var text strings.Builder
	(&Report{Options: Options{Runs: 2, Conns: []int{1, 4}}, Summary: got}).WriteText(&text)
	for _, line := range []string{"floor ×1", "stepup-authz ×1", "floor ×4", "stepup-authz ×4", "0.50x", "1.20x"} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("the summary table lacks %q:\n%s", line, text.String())
		}
	}
}

func TestOptionsConnections(t *testing.T) {
	ok := Options{Floor: true, Duration: time.Second, Concurrency: 1, Runs: 1, CachedTokens: 1, Client: "h2", ACR: "aal2"}
	for _, tc := range []struct {
		conns []int
		bad   bool
	}{
		{[]int{1}, false},
		{[]int{1, 4}, false},
		{nil, true},
		{[]int{0}, true},
		{[]int{4, -1}, true},
		{[]int{4, 1, 4}, true},
	} {
		o := ok
		o.Conns = tc.conns
		if err := o.check(); (err != nil) != tc.bad {
			t.Errorf("--connections %v: %v, want an error: %v", tc.conns, err, tc.bad)
		}
	}
}
