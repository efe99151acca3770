// Package redisd runs a real redis-server process on a free loopback port,
// for `ajil bench` and, through redistest, for the tests: persistence off,
// or only a snapshot on Stop so that a restart keeps the data.
package redisd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultStartTimeout covers a cold start on a loaded machine, and a
	// port still held by a server that just stopped.
	DefaultStartTimeout = 10 * time.Second
	// pingTimeout bounds one readiness probe; a started server answers at once.
	pingTimeout = time.Second
	// retryWait is the pause between start attempts and between probes.
	retryWait = 25 * time.Millisecond
)

// ErrNotInstalled means redis-server is not on PATH.
var ErrNotInstalled = errors.New("redis-server not found on PATH; install it with `apt-get install -y redis-server`")

// Config says where the server runs.
type Config struct {
	// Dir is the server's working directory, where Stop saves its
	// snapshot and Start loads it from; required.
	Dir string
	// Port is the loopback port; 0 picks a free one.
	Port int
	// KeepData makes Stop save a snapshot into Dir, which the next Start
	// loads, as a restarted production server keeps its data.
	KeepData bool
	// Output receives the server's log; nil discards it.
	Output io.Writer
	// StartTimeout bounds Start; DefaultStartTimeout when 0.
	StartTimeout time.Duration
}

// Server is a running redis-server process.
type Server struct {
	port int
	save bool
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Start starts redis-server and waits until it answers PING. With Port 0
// it tries free ports until one works; with a Port it retries that port
// until StartTimeout, as after a restart.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("redisd: Config.Dir is empty; give the server a working directory")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redisd: %w", ErrNotInstalled)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	for {
		port := cfg.Port
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		s, err := launch(ctx, cfg, port)
		if err == nil {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redisd: %w (%w)", err, context.Cause(ctx))
		case <-time.After(retryWait):
		}
	}
}

func launch(ctx context.Context, cfg Config, port int) (*Server, error) {
	cmd := exec.Command("redis-server",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", cfg.Dir, "--dbfilename", "dump.rdb",
		"--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = cfg.Output, cfg.Output
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &Server{port: port, save: cfg.KeepData, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	for {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("redis-server exited on port %d", port)
		case <-ctx.Done():
			s.kill()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING", port)
		case <-time.After(retryWait):
		}
	}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// URL is a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Stop asks the server to exit, saving a snapshot first with KeepData,
// and kills it if it has not exited when ctx is done.
func (s *Server) Stop(ctx context.Context) {
	how := "NOSAVE"
	if s.save {
		how = "SAVE"
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	c.Do(ctx, "SHUTDOWN", how)
	c.Close()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.kill()
	}
}

func (s *Server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisd: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
