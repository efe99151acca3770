package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/ajil-news/ajil/internal/proctest"
	"github.com/ajil-news/ajil/internal/redistest"
)

// TestBench runs each benchmark small, as a smoke test: it must finish,
// print its figures, and leave nothing in a Redis given with --redis-url.
func TestBench(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("ajil bench starts redis-server, which is not on PATH; install it with `apt-get install -y redis-server`")
	}
	scratch := redistest.Start(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{{
		name: "fcm",
		args: []string{"bench", "fcm", "--tokens", "2000"},
		want: []string{
			`(?m)^ajil +2000 messages in \S+: \d+ msgs/s`,
			`(?m)^sdk ceiling +2000 messages in \S+: \d+ msgs/s`,
			`(?m)^ratio +\d+\.\d\d ajil/sdk \(target >= 0\.8: (met|missed)\)`,
			`(?m)^peak RSS +\d+ MB`,
		},
	}, {
		name: "webhooks on a given Redis",
		args: []string{"bench", "webhooks", "--endpoints", "20", "--redis-url", scratch.URL()},
		want: []string{
			`(?m)^ajil +20 deliveries in \S+: \d+ deliveries/s`,
			`(?m)^bare client +20 deliveries in \S+: \d+ deliveries/s`,
			`(?m)^ratio +\d+\.\d\d ajil/bare`,
			`(?m)^peak RSS +\d+ MB`,
		},
	}, {
		name: "webhook latency",
		args: []string{"bench", "webhooks", "--alerts", "20", "--endpoints", "3"},
		want: []string{
			`(?m)^publish to received +p50 \d+\.\d\d ms +p99 \d+\.\d\d ms +max \d+\.\d\d ms over 60 deliveries \(targets p50 < 5\.00 ms: (met|missed), p99 < 25\.00 ms: (met|missed)\)`,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := proctest.Run(t, ajilBin, nil, tc.args...)
			if r.Code != 0 {
				t.Fatalf("ajil %s exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), r.Code, r.Stdout, r.Stderr)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(r.Stdout) {
					t.Errorf("output lacks %s:\n%s", w, r.Stdout)
				}
			}
		})
	}
	if keys, err := scratch.Client().Keys(t.Context(), "ajil:{bench}:*").Result(); err != nil || len(keys) > 0 {
		t.Errorf("the given Redis keeps %d of the benchmark's keys (%v), e.g. %.3q", len(keys), err, keys)
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"bench fcm --tokens 0", "--tokens"},
		{"bench fcm --latency -5ms", "--latency"},
		{"bench webhooks --endpoints -1", "--endpoints"},
		{"bench webhooks --alerts -3", "--alerts"},
	} {
		r := proctest.Run(t, ajilBin, nil, strings.Fields(tc.args)...)
		if r.Code != exitInvalid || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("ajil %s: exit %d, stderr %q; want exit %d naming %s", tc.args, r.Code, r.Stderr, exitInvalid, tc.want)
		}
	}
}
