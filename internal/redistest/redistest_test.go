package redistest_test

import (
	"testing"

	"github.com/ajil-news/ajil/internal/redistest"
)

func TestStopStartKeepsData(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client()
	if err := c.Set(t.Context(), "k", "عاجل", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Fatal("PING answered while the server was stopped")
	}
	s.Start()
	if got, err := c.Get(t.Context(), "k").Result(); err != nil || got != "عاجل" {
		t.Fatalf("after restart: %q, %v; want the value kept", got, err)
	}
	s.Wipe()
	s.Start()
	if n, err := c.Exists(t.Context(), "k").Result(); err != nil || n != 0 {
		t.Fatalf("after wipe: exists=%d, %v; want empty", n, err)
	}
}
