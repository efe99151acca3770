package redisd_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/internal/redisd"
)

func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	s, err := redisd.Start(t.Context(), redisd.Config{Dir: dir})
	switch {
	case errors.Is(err, redisd.ErrNotInstalled):
		t.Skip(err) // redistest's own tests fail without it under CI
	case err != nil:
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Set(t.Context(), "k", "عاجل", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop(t.Context())
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Fatal("PING answered after Stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "dump.rdb")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stop without KeepData left a snapshot (%v)", err)
	}
}

func TestStartNeedsDir(t *testing.T) {
	_, err := redisd.Start(t.Context(), redisd.Config{StartTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Fatalf("Start without a Dir: %v; want an error naming Config.Dir", err)
	}
}
