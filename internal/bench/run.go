package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepup-authz/stepup-authz/policy"
)

// Options describe one bench invocation.
type Options struct {
	// Target is the address of an ext_authz server to measure ("" for none).
	Target string
	// TargetPid, when set, lets the report give the target's CPU per Check.
	TargetPid int
	// TargetAdmin, when set, is where the target serves Prometheus /metrics with
	// the Go runtime's go_memstats counters, for allocations per Check.
	TargetAdmin string
	// Self starts `stepup-authz serve` (this executable), trusting the bench
	// IdP, as the target: a fresh process for every phase.
	Self bool
	// SelfArgs are extra arguments for the self-started serve.
	SelfArgs []string
	// Floor measures the naive always-OK grpc-go server in the same run.
	Floor bool
	// JWTFloor measures a server that verifies every token with golang-jwt/v5
	// and no cache, the reference for unique tokens.
	JWTFloor bool

	Client string // "h2" (the lean client) or "grpc" (grpc-go's)
	// Conns are the numbers of connections to measure each server over: every
	// run measures every server at each count, interleaved, and ratios are
	// taken between phases of one run at one count. Envoy opens one
	// connection per worker thread, so real load arrives over several.
	Conns       []int
	Concurrency int
	Rate        float64
	MaxInflight int
	Duration    time.Duration
	Warmup      time.Duration
	Count       int64
	Runs        int
	Timeout     time.Duration // sent as grpc-timeout

	Mix          Mix
	CachedTokens int
	UniqueTokens int // minted for every run that sends unique tokens
	ACR          string

	ServerCPUs string
	LoadCPUs   string
	IdPListen  string
	// WorkDir holds configs and server logs; "" makes a temporary one that is
	// removed at the end.
	WorkDir string
	// Log receives progress lines.
	Log io.Writer
}

// Phase is one measured phase: one server, one run.
type Phase struct {
	Run         int    `json:"run"`
	Server      string `json:"server"`
	Connections int    `json:"connections"`
	Stats
	// ServerCPUPerCheck is the server process's CPU time per answered Check
	// (0 when unknown).
	ServerCPUPerCheck time.Duration `json:"server_cpu_per_check"`
	// LoadCPU is the share of one CPU the load generator used (1 = one core busy).
	LoadCPU float64 `json:"load_cpu"`
	// AllocsPerCheck and BytesPerCheck are the server's heap allocations per
	// answered Check, from its go_memstats counters (0 when unknown).
	AllocsPerCheck float64 `json:"allocs_per_check"`
	BytesPerCheck  float64 `json:"bytes_per_check"`
	// UniqueUsed is how many unique tokens the phase sent.
	UniqueUsed int `json:"unique_used,omitempty"`
}

// Report is everything a bench invocation measured.
type Report struct {
	Options     Options   `json:"-"`
	Description []string  `json:"description"`
	Phases      []Phase   `json:"phases"`
	Summary     []Summary `json:"summary"`
}

// Summary is the median of a server's phases over the runs.
type Summary struct {
	Server            string        `json:"server"`
	Connections       int           `json:"connections"`
	Rate              float64       `json:"checks_per_second"`
	P50               time.Duration `json:"p50"`
	P90               time.Duration `json:"p90"`
	P99               time.Duration `json:"p99"`
	P999              time.Duration `json:"p999"`
	ServerCPUPerCheck time.Duration `json:"server_cpu_per_check"`
	LoadCPU           float64       `json:"load_cpu"`
	AllocsPerCheck    float64       `json:"allocs_per_check"`
	BytesPerCheck     float64       `json:"bytes_per_check"`
	Errors            int64         `json:"errors"`
	Unexpected        int64         `json:"unexpected"`
	// RatioToFloor and RatioToJWT are the medians over runs of this server's
	// Checks/s divided by the reference's in the same run (0: not measured).
	RatioToFloor float64 `json:"ratio_to_floor,omitempty"`
	RatioToJWT   float64 `json:"ratio_to_jwt,omitempty"`
}

// Server names in reports.
const (
	NameFloor  = "floor"
	NameJWT    = "jwt-floor"
	NameSelf   = "stepup-authz"
	NameTarget = "target"
)

type server struct {
	name   string
	addr   string
	admin  string // serves /metrics with go_memstats, "" when unknown
	pid    int
	expect bool // whether decisions are checked
	start  func() (*Child, error)
}

type runner struct {
	o        Options
	idp      *IdP
	dir      string
	cached   [][]byte
	invalid  [][]byte
	loadCPUs []int
	tokLen   int
	reqLen   int
}

// RunBench executes a bench invocation.
func RunBench(o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := &runner{o: o}
	var err error
	if o.LoadCPUs != "" {
		if r.loadCPUs, err = ParseCPUs(o.LoadCPUs); err != nil {
			return nil, err
		}
	}
	if r.dir = o.WorkDir; r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "stepup-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(r.dir)
	} else if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	if r.idp, err = StartIdP(o.IdPListen); err != nil {
		return nil, fmt.Errorf("identity provider: %w", err)
	}
	defer r.idp.Close()

	now := time.Now()
	toks, err := r.idp.Mint(o.CachedTokens, o.ACR, now, 0)
	if err != nil {
		return nil, err
	}
	for _, t := range toks {
		r.cached = append(r.cached, Encode(t))
	}
	forged, err := r.idp.Forge(o.ACR, now)
	if err != nil {
		return nil, err
	}
	r.invalid = [][]byte{Encode(forged)}
	r.tokLen, r.reqLen = len(toks[0]), len(r.cached[0])-5

	servers, err := r.servers()
	if err != nil {
		return nil, err
	}
	rep := &Report{Options: o, Description: r.describe(servers)}
	for _, line := range rep.Description {
		fmt.Fprintln(o.Log, line)
	}
	for run := 1; run <= o.Runs; run++ {
		var unique [][]byte
		if o.Mix.Unique > 0 {
			start := time.Now()
			ut, err := r.idp.Mint(o.UniqueTokens, o.ACR, time.Now(), run*o.UniqueTokens+1)
			if err != nil {
				return nil, err
			}
			unique = make([][]byte, len(ut))
			for i, t := range ut {
				unique[i] = Encode(t)
			}
			fmt.Fprintf(o.Log, "run %d: minted %d unique tokens in %v\n", run, len(ut), time.Since(start).Round(time.Millisecond))
		}
		// Alternate the order of the servers and of the connection counts from
		// run to run, so that drift in the machine's state does not favour one
		// of them.
		order, conns := slices.Clone(servers), slices.Clone(o.Conns)
		if run%2 == 0 {
			slices.Reverse(order)
			slices.Reverse(conns)
		}
		for _, n := range conns {
			for _, s := range order {
				ph, err := r.phase(run, s, n, unique)
				if err != nil {
					return nil, fmt.Errorf("run %d, %s over %d connection(s): %w", run, s.name, n, err)
				}
				fmt.Fprintf(o.Log, "run %d: %-16s %s\n", run, phaseName(s.name, n, len(o.Conns)), ph.line())
				rep.Phases = append(rep.Phases, ph)
			}
		}
	}
	rep.Summary = summarize(rep.Phases, servers, o.Conns)
	return rep, nil
}

func (o *Options) check() error {
	switch {
	case o.Target != "" && o.Self:
		return errors.New("give --target or --self, not both")
	case o.Target == "" && !o.Self && !o.Floor && !o.JWTFloor:
		return errors.New("nothing to measure: give --target ADDR, --self, --floor or --jwt-floor")
	case o.Duration <= 0 && o.Count <= 0:
		return errors.New("bound the run with --duration or --count")
	case o.Rate <= 0 && o.Concurrency <= 0:
		return errors.New("--concurrency must be positive (or give --rate)")
	case o.Runs <= 0:
		return errors.New("--runs must be positive")
	case len(o.Conns) == 0:
		return errors.New("--connections needs at least one count")
	case slices.Min(o.Conns) <= 0:
		return fmt.Errorf("--connections %v: every count must be positive", o.Conns)
	case len(slices.Compact(slices.Sorted(slices.Values(o.Conns)))) != len(o.Conns):
		return fmt.Errorf("--connections %v: a count is given twice", o.Conns)
	case o.CachedTokens <= 0:
		return errors.New("--cached-tokens must be positive")
	case o.Mix.Unique > 0 && o.UniqueTokens <= 0:
		return errors.New("--unique-tokens must be positive when the mix has unique tokens")
	case o.Client != "h2" && o.Client != "grpc":
		return fmt.Errorf("--client %q: want h2 or grpc", o.Client)
	}
	if policy.DefaultLevels.Rank(o.ACR) < 0 {
		return fmt.Errorf("--acr %q: want one of %v", o.ACR, policy.DefaultLevels)
	}
	return nil
}

// SelfConfig is the config of a stepup-authz that trusts the bench IdP at
// issuer, listening on grpc and admin.
func SelfConfig(issuer, grpc, admin string) string {
	return fmt.Sprintf(`# stepup-authz config for `+"`stepup-authz bench`"+`: trusts the bench's identity provider.
listen:
  grpc: %q
  admin: %q
issuers:
  - issuer: %q
    jwks_uri: %q
    audiences: [%q]
    algorithms: ["RS256"]
`, grpc, admin, issuer, issuer+"/jwks.json", Audience)
}

func (r *runner) servers() ([]*server, error) {
	var out []*server
	cpus := r.o.ServerCPUs
	if r.o.Floor {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		admin, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		out = append(out, &server{name: NameFloor, addr: addr, admin: admin, start: func() (*Child, error) {
			return StartChild(NameFloor, addr, cpus, filepath.Join(r.dir, "floor.log"), "bench", "floor-server", "--listen", addr, "--admin", admin)
		}})
	}
	if r.o.JWTFloor {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		admin, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		out = append(out, &server{name: NameJWT, addr: addr, admin: admin, expect: true, start: func() (*Child, error) {
			return StartChild(NameJWT, addr, cpus, filepath.Join(r.dir, "jwt-floor.log"), "bench", "jwt-server",
				"--listen", addr, "--admin", admin, "--jwks", r.idp.JWKSURL(), "--issuer", r.idp.Issuer, "--audience", Audience)
		}})
	}
	switch {
	case r.o.Self:
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		admin, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		cfg := filepath.Join(r.dir, "stepup-authz.yaml")
		if err := os.WriteFile(cfg, []byte(SelfConfig(r.idp.Issuer, addr, admin)), 0o600); err != nil {
			return nil, err
		}
		args := append([]string{"serve", "--config", cfg}, r.o.SelfArgs...)
		out = append(out, &server{name: NameSelf, addr: addr, admin: admin, expect: true, start: func() (*Child, error) {
			return StartChild(NameSelf, addr, cpus, filepath.Join(r.dir, "stepup-authz.log"), args...)
		}})
	case r.o.Target != "":
		out = append(out, &server{name: NameTarget, addr: r.o.Target, admin: r.o.TargetAdmin, pid: r.o.TargetPid, expect: true})
	}
	return out, nil
}

func (r *runner) describe(servers []*server) []string {
	o := &r.o
	shape := fmt.Sprintf("closed loop, %d in flight", o.Concurrency)
	if o.Rate > 0 {
		shape = fmt.Sprintf("open loop at %.0f Checks/s", o.Rate)
	}
	bound := []string{}
	if o.Duration > 0 {
		bound = append(bound, o.Duration.String())
	}
	if o.Count > 0 {
		bound = append(bound, fmt.Sprintf("%d Checks", o.Count))
	}
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s.name
		if s.start == nil {
			names[i] += " (" + s.addr + ")"
		}
	}
	pin := "unpinned"
	if o.ServerCPUs != "" || o.LoadCPUs != "" {
		pin = fmt.Sprintf("servers on CPU %s, load on CPU %s", orAll(o.ServerCPUs), orAll(o.LoadCPUs))
	}
	pools := fmt.Sprintf("%d cached tokens", o.CachedTokens)
	if o.Mix.Unique > 0 {
		pools += fmt.Sprintf(", %d unique tokens per run", o.UniqueTokens)
	}
	return []string{
		fmt.Sprintf("stepup-authz bench: %s over %s connection(s) (%s client), %s per phase after %v warm-up, %d run(s)",
			shape, connsText(o.Conns), o.Client, strings.Join(bound, " or "), o.Warmup, o.Runs),
		fmt.Sprintf("servers: %s; %s", strings.Join(names, ", "), pin),
		fmt.Sprintf("requests: %d bytes, 12 headers, RS256 token of %d bytes (acr %s), route metadata {required_acr: %s, max_age: %d}; mix %s (%s)",
			r.reqLen, r.tokLen, o.ACR, Route.RequiredACR, int(Route.MaxAge.Seconds()), o.Mix, pools),
	}
}

// connsText is "1" or "1 and 4".
func connsText(conns []int) string {
	parts := make([]string, len(conns))
	for i, n := range conns {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, " and ")
}

// phaseName labels a server's phases; with several connection counts, the
// count is part of the label ("floor ×4").
func phaseName(server string, conns, counts int) string {
	if counts <= 1 {
		return server
	}
	return fmt.Sprintf("%s ×%d", server, conns)
}

func orAll(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

// expectations: what our server (and the golang-jwt reference) must answer.
func (r *runner) pools(expect bool, unique [][]byte) *Pools {
	okCode := int32(0)
	if policy.DefaultLevels.Rank(r.o.ACR) < policy.DefaultLevels.Rank(Route.RequiredACR) {
		okCode = 7 // PERMISSION_DENIED: a step-up
	}
	item := func(msg []byte, code int32) *Item {
		if !expect {
			code = -1
		}
		return &Item{Msg: msg, Expect: code}
	}
	p := &Pools{}
	for _, m := range r.cached {
		p.Cached = append(p.Cached, item(m, okCode))
	}
	for _, m := range unique {
		p.Unique = append(p.Unique, item(m, okCode))
	}
	for _, m := range r.invalid {
		p.Invalid = append(p.Invalid, item(m, 7))
	}
	return p
}

func (r *runner) dial(addr string, conns int) ([]Sender, error) {
	var out []Sender
	for range conns {
		var s Sender
		var err error
		if r.o.Client == "grpc" {
			s, err = DialGRPC(addr, r.o.Timeout)
		} else {
			s, err = DialH2(addr, max(r.o.Concurrency, r.o.MaxInflight)+16, r.o.Timeout)
		}
		if err != nil {
			for _, s := range out {
				s.Close()
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (r *runner) phase(run int, s *server, conns int, unique [][]byte) (Phase, error) {
	ph := Phase{Run: run, Server: s.name, Connections: conns}
	pid := s.pid
	if s.start != nil {
		child, err := s.start()
		if err != nil {
			return ph, err
		}
		defer child.Stop()
		if err := child.WaitServing(30 * time.Second); err != nil {
			return ph, err
		}
		pid = child.Pid()
	}
	if r.loadCPUs != nil {
		if err := PinSelf(r.loadCPUs); err != nil {
			return ph, err
		}
		defer PinSelf(nil)
	}
	senders, err := r.dial(s.addr, conns)
	if err != nil {
		return ph, err
	}
	defer func() {
		for _, sn := range senders {
			sn.Close()
		}
	}()
	pools := r.pools(s.expect, unique)
	// Warm up with cached tokens only (unique ones are for the measurement):
	// connections, the server's key fetch and cache, its heap.
	warm, err := NewMixSource(Mix{Cached: 1}, pools)
	if err != nil {
		return ph, err
	}
	if err := r.awaitTrust(senders, warm, s); err != nil {
		return ph, err
	}
	if r.o.Warmup > 0 {
		if _, err := Run(senders, warm, r.load(r.o.Warmup, 0)); err != nil {
			return ph, err
		}
	}
	src, err := NewMixSource(r.o.Mix, pools)
	if err != nil {
		return ph, err
	}
	var cpu0 time.Duration
	if pid > 0 {
		cpu0, _ = ProcessCPU(pid)
	}
	var objs0, bytes0 float64
	allocsKnown := false
	if s.admin != "" {
		objs0, bytes0, err = Allocs(s.admin)
		allocsKnown = err == nil
	}
	self0 := SelfCPU()
	st, err := Run(senders, src, r.load(r.o.Duration, r.o.Count))
	if err != nil {
		return ph, err
	}
	ph.Stats = st
	if st.Elapsed > 0 {
		ph.LoadCPU = (SelfCPU() - self0).Seconds() / st.Elapsed.Seconds()
	}
	if pid > 0 && st.Checks > 0 {
		if cpu1, err := ProcessCPU(pid); err == nil {
			ph.ServerCPUPerCheck = (cpu1 - cpu0) / time.Duration(st.Checks)
		}
	}
	if allocsKnown && st.Checks > 0 {
		if objs1, bytes1, err := Allocs(s.admin); err == nil {
			ph.AllocsPerCheck = (objs1 - objs0) / float64(st.Checks)
			ph.BytesPerCheck = (bytes1 - bytes0) / float64(st.Checks)
		}
	}
	ph.UniqueUsed = src.UniqueUsed()
	return ph, nil
}

func (r *runner) load(d time.Duration, count int64) Load {
	return Load{
		Concurrency: r.o.Concurrency, Rate: r.o.Rate, Duration: d, Count: count,
		MaxInflight: r.o.MaxInflight, Drain: 10 * time.Second,
	}
}

// awaitTrust sends cached tokens one at a time until the server answers as
// expected: a server started before this bench knows another key set and
// needs a moment (its unknown-kid refetch) to trust the bench IdP.
func (r *runner) awaitTrust(senders []Sender, warm Source, s *server) error {
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		st, err := Run(senders[:1], warm, Load{Concurrency: 1, Count: 1, Drain: 5 * time.Second})
		if err != nil {
			return err
		}
		if st.Errors == 0 && st.Unexpected == 0 && st.Checks == 1 {
			return nil
		}
		if len(st.Samples) > 0 {
			last = st.Samples[0]
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("%s does not answer a valid token as expected (%s); does it trust the bench IdP at %s? (see --print-config)", s.name, last, r.idp.Issuer)
}

func (ph *Phase) line() string {
	s := fmt.Sprintf("%8.0f Checks/s  p50 %-8v p90 %-8v p99 %-8v p99.9 %-8v errors %d",
		ph.Rate, rnd(ph.P50), rnd(ph.P90), rnd(ph.P99), rnd(ph.P999), ph.Errors)
	if ph.Unexpected > 0 {
		s += fmt.Sprintf(" unexpected %d", ph.Unexpected)
	}
	if ph.ServerCPUPerCheck > 0 {
		s += fmt.Sprintf("  server CPU/Check %v", ph.ServerCPUPerCheck.Round(100*time.Nanosecond))
	}
	if ph.AllocsPerCheck > 0 {
		s += fmt.Sprintf("  %.0f allocs (%.0f B)/Check", ph.AllocsPerCheck, ph.BytesPerCheck)
	}
	s += fmt.Sprintf("  load CPU %.0f%%", 100*ph.LoadCPU)
	if ph.Exhausted {
		s += fmt.Sprintf("  (unique tokens ran out after %d)", ph.UniqueUsed)
	}
	if ph.LateP99 > 0 {
		s += fmt.Sprintf("  (sent up to %v late at p99)", rnd(ph.LateP99))
	}
	if ph.Saturated > 0 {
		s += fmt.Sprintf("  (%d calls waited for a free slot)", ph.Saturated)
	}
	if len(ph.Samples) > 0 {
		s += "\n      first errors: " + strings.Join(ph.Samples, "; ")
	}
	return s
}

func rnd(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func summarize(phases []Phase, servers []*server, conns []int) []Summary {
	type key struct {
		server string
		conns  int
	}
	byRun := map[key]map[int]*Phase{}
	for i := range phases {
		p := &phases[i]
		k := key{p.Server, p.Connections}
		if byRun[k] == nil {
			byRun[k] = map[int]*Phase{}
		}
		byRun[k][p.Run] = p
	}
	// ratio is the median over runs of server's Checks/s over ref's, both over
	// n connections in the same run.
	ratio := func(server, ref string, n int) float64 {
		var rs []float64
		for run, p := range byRun[key{server, n}] {
			if q, ok := byRun[key{ref, n}][run]; ok && q.Rate > 0 {
				rs = append(rs, p.Rate/q.Rate)
			}
		}
		return median(rs)
	}
	var out []Summary
	for _, n := range conns {
		for _, s := range servers {
			var rate, load, allocs, bytes []float64
			var p50, p90, p99, p999, cpu []time.Duration
			sum := Summary{Server: s.name, Connections: n}
			for _, p := range byRun[key{s.name, n}] {
				rate = append(rate, p.Rate)
				load = append(load, p.LoadCPU)
				p50, p90, p99, p999 = append(p50, p.P50), append(p90, p.P90), append(p99, p.P99), append(p999, p.P999)
				if p.ServerCPUPerCheck > 0 {
					cpu = append(cpu, p.ServerCPUPerCheck)
				}
				if p.AllocsPerCheck > 0 {
					allocs, bytes = append(allocs, p.AllocsPerCheck), append(bytes, p.BytesPerCheck)
				}
				sum.Errors += p.Errors
				sum.Unexpected += p.Unexpected
			}
			sum.Rate, sum.LoadCPU = median(rate), median(load)
			sum.P50, sum.P90, sum.P99, sum.P999 = median(p50), median(p90), median(p99), median(p999)
			sum.ServerCPUPerCheck = median(cpu)
			sum.AllocsPerCheck, sum.BytesPerCheck = median(allocs), median(bytes)
			if s.name != NameFloor {
				sum.RatioToFloor = ratio(s.name, NameFloor, n)
			}
			if s.name != NameJWT && s.name != NameFloor {
				sum.RatioToJWT = ratio(s.name, NameJWT, n)
			}
			out = append(out, sum)
		}
	}
	return out
}

// WriteText writes the summary table of a report.
func (rep *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nmedians over %d run(s):\n", rep.Options.Runs)
	fmt.Fprintf(w, "%-16s %9s %9s %9s %9s %9s %11s %7s %6s %7s %9s %9s\n",
		"server", "Checks/s", "p50", "p90", "p99", "p99.9", "CPU/Check", "allocs", "load", "errors", "vs floor", "vs jwt")
	counts := len(rep.Options.Conns)
	for _, s := range rep.Summary {
		cpu := "-"
		if s.ServerCPUPerCheck > 0 {
			cpu = s.ServerCPUPerCheck.Round(100 * time.Nanosecond).String()
		}
		allocs := "-"
		if s.AllocsPerCheck > 0 {
			allocs = fmt.Sprintf("%.0f", s.AllocsPerCheck)
		}
		fmt.Fprintf(w, "%-16s %9.0f %9v %9v %9v %9v %11s %7s %5.0f%% %7d %9s %9s\n",
			phaseName(s.Server, s.Connections, counts), s.Rate, rnd(s.P50), rnd(s.P90), rnd(s.P99), rnd(s.P999), cpu, allocs, 100*s.LoadCPU,
			s.Errors+s.Unexpected, ratioText(s.RatioToFloor), ratioText(s.RatioToJWT))
	}
	for _, s := range rep.Summary {
		if s.LoadCPU > 0.9 && rep.Options.Rate <= 0 {
			fmt.Fprintf(w, "note: the load generator used %.0f%% of its CPU against %s: that run may be limited by the load, not the server\n", 100*s.LoadCPU, phaseName(s.Server, s.Connections, counts))
		}
	}
}

func ratioText(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}
