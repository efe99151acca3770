// Package redistest starts a real redis-server for tests on a free loopback
// port, with persistence off, stopped at test cleanup.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout covers a cold start on a loaded CI machine.
const startTimeout = 10 * time.Second

// Server is a redis-server process owned by one test.
type Server struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server from PATH. Without it the test is skipped with
// how to install it, except under CI=true, where it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redistest: redis-server not found on PATH; install it with `apt-get install -y redis-server` (./scripts/test does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s := &Server{t: t, dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Client returns a go-redis client closed at test cleanup.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Start (re)starts the server, on the same port when it ran before. Data
// written before a Stop is kept: Stop saves a snapshot into the test's
// directory, as a redis-server restarted by an operator would keep it.
func (s *Server) Start() {
	s.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		port := s.port
		if port == 0 {
			port = freePort(s.t)
		}
		err := s.launch(port)
		if err == nil {
			s.port = port
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) launch(port int) error {
	cmd := exec.Command("redis-server",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", s.dir, "--dbfilename", "dump.rdb",
		"--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.t.Logf("redis-server: %s", sc.Text())
		}
		cmd.Wait()
		close(done)
	}()
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), MaxRetries: -1})
	defer c.Close()
	for range 200 {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited on port %d", port)
		default:
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server on port %d did not answer PING", port)
}

// Stop saves a snapshot and stops the server; Start brings it back with the data.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), 5*time.Second)
	c.Do(ctx, "SHUTDOWN", "SAVE")
	cancel()
	c.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd, s.done = nil, nil
}

// Wipe stops the server and deletes its snapshot, so the next Start comes
// back empty, as after losing a Redis node without replicas.
func (s *Server) Wipe() {
	s.Stop()
	os.Remove(filepath.Join(s.dir, "dump.rdb"))
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
