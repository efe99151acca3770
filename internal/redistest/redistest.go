// Package redistest starts a real redis-server for tests on a free loopback
// port, with persistence off, stopped at test cleanup.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/internal/redisd"
)

// stopTimeout is how long Stop waits for the snapshot before killing.
const stopTimeout = 5 * time.Second

// Server is a redis-server process owned by one test.
type Server struct {
	t    testing.TB
	dir  string
	port int
	srv  *redisd.Server
}

// Start starts redis-server from PATH. Without it the test is skipped with
// how to install it, except under CI=true, where it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port of the server, also while it is stopped.
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
	srv, err := redisd.Start(context.WithoutCancel(s.t.Context()), redisd.Config{Dir: s.dir, Port: s.port, KeepData: true, Output: &logWriter{t: s.t}})
	switch {
	case errors.Is(err, redisd.ErrNotInstalled) && os.Getenv("CI") != "true":
		s.t.Skipf("redistest: %v (./scripts/test does)", err)
	case err != nil:
		s.t.Fatalf("redistest: %v", err)
	}
	s.srv, s.port = srv, srv.Port()
}

// Stop saves a snapshot and stops the server; Start brings it back with the data.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), stopTimeout)
	defer cancel()
	s.srv.Stop(ctx)
	s.srv = nil
}

// Wipe stops the server and deletes its snapshot, so the next Start comes
// back empty, as after losing a Redis node without replicas.
func (s *Server) Wipe() {
	s.Stop()
	os.Remove(filepath.Join(s.dir, "dump.rdb"))
}

// logWriter logs the server's output to the test, a line at a time.
type logWriter struct {
	t   testing.TB
	mu  sync.Mutex
	buf []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Logf("redis-server: %s", w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}
