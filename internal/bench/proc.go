package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Child is a server process the bench started (the floor, the golang-jwt
// reference or stepup-authz itself), so that every server runs under the same
// conditions: its own process, pinned to the same CPUs.
type Child struct {
	Name string
	Addr string
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

// StartChild runs this executable with args, pinned to cpus ("" leaves it
// unpinned) with taskset, its output going to logPath.
func StartChild(name, addr, cpus, logPath string, args ...string) (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append([]string{exe}, args...)
	if cpus != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, errors.New("--server-cpus needs taskset (util-linux)")
		}
		argv = append([]string{ts, "-c", cpus}, argv...)
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	// Killed with bench, not left behind holding a CPU.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	c := &Child{Name: name, Addr: addr, cmd: cmd, log: log, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// Pid is the server's process id (taskset execs the server in its place).
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// WaitServing waits until the child answers gRPC health with SERVING.
func (c *Child) WaitServing(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("%s exited before serving (%v); see %s", c.Name, err, c.log.Name())
		default:
		}
		if last = HealthServing(c.Addr); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not serving after %v (%v); see %s", c.Name, timeout, last, c.log.Name())
}

// Stop asks the child to stop (SIGTERM, then SIGKILL after 10s).
func (c *Child) Stop() error {
	defer c.log.Close()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		return err
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		return <-c.done
	}
}

// HealthServing checks grpc.health.v1 at addr once.
func HealthServing(addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %v", r.GetStatus())
	}
	return nil
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// ProcessCPU returns the CPU time (user + system) process pid has used.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unreadable /proc stat")
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unreadable /proc stat")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// SelfCPU returns the CPU time this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ParseCPUs reads a CPU list like "1", "0,2" or "2-3".
func ParseCPUs(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("cpu list %q: %q is not a CPU number", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: %q is not a range", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// startCPUs is the CPU set the process started with.
var startCPUs = func() (set unix.CPUSet) {
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		for c := range runtime.NumCPU() {
			set.Set(c)
		}
	}
	return set
}()

// PinSelf restricts every thread of this process to cpus and sets GOMAXPROCS
// to their number; nil restores the CPUs the process started with.
func PinSelf(cpus []int) error {
	set := startCPUs
	if cpus != nil {
		set.Zero()
		for _, c := range cpus {
			set.Set(c)
		}
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tids {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pinning to CPUs %v: %w", cpus, err)
		}
	}
	runtime.GOMAXPROCS(set.Count())
	return nil
}

// Allocs reads the Go runtime's cumulative allocation counts (objects and
// bytes) from the Prometheus endpoint at http://admin/metrics.
func Allocs(admin string) (objects, bytes float64, err error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s/metrics: %s", admin, resp.Status)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_mallocs_total":
			objects, err = strconv.ParseFloat(value, 64)
		case "go_memstats_alloc_bytes_total":
			bytes, err = strconv.ParseFloat(value, 64)
		default:
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s/metrics: %s: %w", admin, name, err)
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%s/metrics: no go_memstats allocation counters", admin)
	}
	return objects, bytes, sc.Err()
}
