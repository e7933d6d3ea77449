package bench

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Item is one request a run sends and the CheckResponse status code expected
// for it (-1: any answer is right, as for the always-OK floor).
type Item struct {
	Msg    []byte // framed gRPC message
	Expect int32
}

// Source hands out the requests of a run; Next is called concurrently and
// returns false when nothing is left (the run ends early).
type Source interface {
	Next() (*Item, bool)
}

// Load is the shape of a run.
type Load struct {
	// Concurrency is the number of calls in flight in a closed loop.
	Concurrency int
	// Rate, when positive, makes an open loop: calls are due at fixed intervals
	// whatever the answers, and latency counts from when a call was due.
	Rate float64
	// Duration and Count bound the run; the first reached ends it (0: unbounded,
	// but at least one must be set).
	Duration time.Duration
	Count    int64
	// MaxInflight bounds an open loop's calls in flight; when reached the loop
	// waits and the wait shows in latency.
	MaxInflight int
	// Drain is how long to wait for answers once the run ended.
	Drain time.Duration
}

// Stats are the results of one run.
type Stats struct {
	Checks                   int64         // answered calls (any decision)
	Errors                   int64         // transport or gRPC failures
	Unexpected               int64         // answered with another decision than expected
	OK, Denied               int64         // answered decisions
	Elapsed                  time.Duration // first call to last answer
	Rate                     float64       // Checks per second
	P50, P90, P99, P999, Max time.Duration
	// Exhausted is set when the source ran out (unique tokens) before the bounds.
	Exhausted bool
	// Saturated counts open-loop calls that had to wait for a free slot.
	Saturated int64
	// LateP99 is the 99th percentile of how late the open loop sent a call
	// after it was due: the load generator's own timing error (latencies count
	// from the send, see runOpen).
	LateP99 time.Duration
	// Samples are the first few error messages.
	Samples []string
}

type recorder struct {
	mu sync.Mutex
	s  Stats
	l  []time.Duration
}

func (r *recorder) record(c *Call, end time.Time) {
	lat := end.Sub(c.Start)
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Err != nil {
		r.s.Errors++
		if len(r.s.Samples) < 5 {
			r.s.Samples = append(r.s.Samples, c.Err.Error())
		}
		return
	}
	r.s.Checks++
	code := c.Code
	if code < 0 {
		code = 0 // an unset status means OK to Envoy
	}
	if code == 0 {
		r.s.OK++
	} else {
		r.s.Denied++
	}
	if c.Expect >= 0 && code != c.Expect {
		r.s.Unexpected++
		if len(r.s.Samples) < 5 {
			r.s.Samples = append(r.s.Samples, "unexpected decision: status "+itoa(int64(code))+", want "+itoa(int64(c.Expect)))
		}
	}
	r.l = append(r.l, lat)
}

func (r *recorder) finish(elapsed time.Duration) Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.Elapsed = elapsed
	if elapsed > 0 {
		s.Rate = float64(s.Checks) / elapsed.Seconds()
	}
	slices.Sort(r.l)
	s.P50, s.P90, s.P99, s.P999 = quantile(r.l, 0.50), quantile(r.l, 0.90), quantile(r.l, 0.99), quantile(r.l, 0.999)
	if n := len(r.l); n > 0 {
		s.Max = r.l[n-1]
	}
	return s
}

// quantile is the nearest-rank quantile of sorted latencies.
func quantile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	i := int(q*float64(n)+0.999999999) - 1
	return sorted[max(0, min(i, n-1))]
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Run sends load over senders (calls are spread over them in turn) and
// returns what it measured.
func Run(senders []Sender, src Source, l Load) (Stats, error) {
	if len(senders) == 0 {
		return Stats{}, errors.New("no connections")
	}
	if l.Duration <= 0 && l.Count <= 0 {
		return Stats{}, errors.New("a run needs a duration or a count")
	}
	if l.Drain <= 0 {
		l.Drain = 10 * time.Second
	}
	if l.Rate > 0 {
		return runOpen(senders, src, l), nil
	}
	if l.Concurrency <= 0 {
		return Stats{}, errors.New("a closed loop needs a concurrency")
	}
	return runClosed(senders, src, l), nil
}

func runClosed(senders []Sender, src Source, l Load) Stats {
	rec := &recorder{l: make([]time.Duration, 0, 1<<16)}
	start := time.Now()
	deadline := time.Time{}
	if l.Duration > 0 {
		deadline = start.Add(l.Duration)
	}
	var issued atomic.Int64
	var exhausted atomic.Bool
	var last atomic.Int64 // unix nanos of the last answer
	var outstanding atomic.Int64
	var wg sync.WaitGroup
	next := func(c *Call, s Sender) bool {
		if l.Count > 0 && issued.Add(1) > l.Count {
			return false
		}
		now := time.Now()
		if !deadline.IsZero() && now.After(deadline) {
			return false
		}
		it, ok := src.Next()
		if !ok {
			exhausted.Store(true)
			return false
		}
		c.Msg, c.Expect, c.Start = it.Msg, it.Expect, now
		outstanding.Add(1)
		s.Send(c)
		return true
	}
	for i := 0; i < l.Concurrency; i++ {
		s := senders[i%len(senders)]
		c := &Call{}
		c.Done = func(c *Call) {
			end := time.Now()
			outstanding.Add(-1)
			rec.record(c, end)
			last.Store(end.UnixNano())
			var ce *ConnError
			if errors.As(c.Err, &ce) || !next(c, s) {
				wg.Done()
			}
		}
		wg.Add(1)
		if !next(c, s) {
			wg.Done()
		}
	}
	waitProgress(&wg, &last, start, l.Drain)
	end := time.Unix(0, last.Load())
	if last.Load() == 0 {
		end = time.Now()
	}
	st := rec.finish(end.Sub(start))
	if n := outstanding.Load(); n > 0 {
		st.Errors += n
		st.Samples = append(st.Samples, itoa(n)+" calls unanswered after the drain timeout")
	}
	st.Exhausted = exhausted.Load()
	return st
}

func runOpen(senders []Sender, src Source, l Load) Stats {
	rec := &recorder{l: make([]time.Duration, 0, 1<<16)}
	if l.MaxInflight <= 0 {
		l.MaxInflight = 4096
	}
	pool := make(chan *Call, l.MaxInflight)
	var last atomic.Int64
	for i := 0; i < l.MaxInflight; i++ {
		c := &Call{}
		c.Done = func(c *Call) {
			end := time.Now()
			rec.record(c, end)
			last.Store(end.UnixNano())
			pool <- c
		}
		pool <- c
	}
	start := time.Now()
	var saturated int64
	var late []time.Duration
	exhausted := false
	for seq := int64(0); ; seq++ {
		due := start.Add(time.Duration(float64(seq) * float64(time.Second) / l.Rate))
		if (l.Duration > 0 && due.Sub(start) >= l.Duration) || (l.Count > 0 && seq >= l.Count) {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		var c *Call
		waited := false
		select {
		case c = <-pool:
		default:
			saturated++
			waited = true
			c = <-pool
		}
		it, ok := src.Next()
		if !ok {
			exhausted = true
			pool <- c
			break
		}
		// Latency counts from the send. A Go timer can wake the loop a millisecond
		// or more late on a virtual machine; that is the load generator's own
		// error, reported apart (LateP99), not the server's latency. When the loop
		// had to wait for an answer to free a slot, the server held it up: the
		// latency then counts from when the call was due.
		now := time.Now()
		late = append(late, now.Sub(due))
		c.Msg, c.Expect, c.Start = it.Msg, it.Expect, now
		if waited {
			c.Start = due
		}
		senders[seq%int64(len(senders))].Send(c)
	}
	// Wait for every call to come back, while answers keep coming.
	for len(pool) < l.MaxInflight {
		seen := start
		if n := last.Load(); n != 0 {
			seen = time.Unix(0, n)
		}
		if time.Since(seen) > l.Drain {
			break
		}
		time.Sleep(time.Millisecond)
	}
	end := time.Unix(0, last.Load())
	if last.Load() == 0 {
		end = time.Now()
	}
	st := rec.finish(end.Sub(start))
	if missing := int64(l.MaxInflight - len(pool)); missing > 0 {
		st.Errors += missing
		st.Samples = append(st.Samples, itoa(missing)+" calls unanswered after the drain timeout")
	}
	st.Exhausted = exhausted
	st.Saturated = saturated
	slices.Sort(late)
	st.LateP99 = quantile(late, 0.99)
	return st
}

// waitProgress waits for wg while answers keep coming: it gives up once no
// call was answered for drain.
func waitProgress(wg *sync.WaitGroup, last *atomic.Int64, start time.Time, drain time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(drain / 10)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return true
		case now := <-tick.C:
			seen := start
			if n := last.Load(); n != 0 {
				seen = time.Unix(0, n)
			}
			if now.Sub(seen) > drain {
				return false
			}
		}
	}
}
