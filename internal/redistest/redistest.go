// Package redistest starts a real Redis (Debian's redis-server) for tests, on
// a free loopback port, and stops it when the test ends.
//
// Without redis-server a developer's test is skipped with a message saying
// what to install; under CI (CI=true) it fails, so a CI run that lost the
// install step cannot pass by skipping.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	Addr     string
	Password string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Binary returns the redis-server to run: $REDIS_SERVER, else redis-server on
// PATH, else /usr/bin/redis-server; "" when there is none.
func Binary() string {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server"
	}
	return ""
}

// SkipReason is why a test needing Redis would be skipped here, "" when it
// will run (redis-server installed) or must fail (CI=true): for tests that
// list a row and skip it rather than skip everything.
func SkipReason() string {
	if Binary() != "" || os.Getenv("CI") == "true" {
		return ""
	}
	return skipMessage
}

const skipMessage = "redis-server not found (PATH, /usr/bin, $REDIS_SERVER): `apt-get install redis-server` to run the Redis replay store tests"

// Start runs redis-server for the test, without persistence, requiring
// password when it is not "". It skips (or, under CI, fails) the test when
// redis-server is not installed.
func Start(t testing.TB, password string) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed: .ci/run installs Debian's redis-server when /usr/bin/redis-server is missing")
		}
		t.Skip(skipMessage)
	}
	for attempt := 0; ; attempt++ {
		s, err := start(bin, password)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		// Another process may have taken the port between our probe and
		// redis-server's bind; try a new one.
		if attempt == 4 {
			t.Fatalf("redis-server: %v", err)
		}
	}
}

func start(bin, password string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "yes", "--loglevel", "warning",
	}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = os.TempDir()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Password: password, cmd: cmd, done: make(chan struct{})}
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if log.Len() < 4096 {
				log.WriteString(sc.Text() + "\n")
			}
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	// Ready when it answers PING (a bounded wait for start-up, not a timing
	// assertion).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("exited at start-up")
		default:
		}
		if s.ping() == nil {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return nil, fmt.Errorf("did not answer PING on %s within 10s", s.Addr)
}

// ping speaks RESP directly, so this package needs no client library.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	cmd := "*1\r\n$4\r\nPING\r\n"
	if s.Password != "" {
		cmd = fmt.Sprintf("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(s.Password), s.Password) + cmd
	}
	if _, err := c.Write([]byte(cmd)); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	if s.Password != "" {
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop kills the server and waits for it to exit; it may be called twice.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
