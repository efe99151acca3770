package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/ajil-news/ajil/internal/proctest"
	"github.com/ajil-news/ajil/internal/redistest"
	"github.com/ajil-news/ajil/subscribers"
)

// apiServer is the subscribers API over a real redis-server, on 127.0.0.1.
type apiServer struct {
	url string
	key string
	reg *subscribers.Registry
}

func startAPI(t *testing.T) *apiServer {
	t.Helper()
	reg := subscribers.New(redistest.Start(t).Client(), subscribers.Config{})
	key := subscribers.GenerateKey()
	keys, err := subscribers.ParseKeys("admin:" + key)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(subscribers.NewAPI(reg, keys, subscribers.APIConfig{}, slog.New(slog.DiscardHandler)))
	t.Cleanup(ts.Close)
	return &apiServer{url: ts.URL, key: key, reg: reg}
}

// with appends the flags that point a command at this server; flags after
// them override.
func (a *apiServer) with(args ...string) []string {
	return append(args, "--api", a.url, "--key", a.key)
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs a command group in process and returns what it printed and
// the exit code the process would end with.
func runCLI(t *testing.T, group func(context.Context, []string, streams) error, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	err := group(t.Context(), args, streams{out: &out, err: &errOut})
	if err != nil {
		errOut.WriteString("ajil: " + err.Error() + "\n")
	}
	return cliResult{out.String(), errOut.String(), exitCode(err)}
}

func TestDevicesCommands(t *testing.T) {
	api := startAPI(t)
	r := runCLI(t, devices, api.with("add", "fcm:tok-1", "--platform", "android", "--lang", "ar-EG", "--topic", "breaking,sports", "--region", "EG")...)
	if r.code != 0 || !strings.Contains(r.stdout, "Registered a new device") || !strings.Contains(r.stdout, "breaking,sports") || !strings.Contains(r.stdout, "ar-EG") {
		t.Fatalf("add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	d, err := api.reg.Device(t.Context(), "fcm:tok-1")
	if err != nil || d.Platform != subscribers.PlatformAndroid || d.Lang != "ar-EG" || !slices.Equal(d.Topics, []string{"breaking", "sports"}) || d.Region != "EG" {
		t.Fatalf("registered device %+v, %v", d, err)
	}
	r = runCLI(t, devices, api.with("add", "--platform", "ios", "fcm:tok-1", "--topic", "breaking")...)
	if r.code != 0 || !strings.Contains(r.stdout, "Updated the device's preferences") {
		t.Fatalf("update: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	runCLI(t, devices, api.with("add", "web-2", "--platform", "web")...)

	r = runCLI(t, devices, api.with("count", "--topic", "breaking", "--lang", "ar")...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "2 devices follow breaking in ar." {
		t.Fatalf("count: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, devices, api.with("count", "--topic", "sports", "--json")...)
	var a subscribers.Audience
	if err := json.Unmarshal([]byte(r.stdout), &a); err != nil || a.Count != 0 || a.Topic != "sports" {
		t.Fatalf("count --json: %q, %v", r.stdout, err)
	}
	r = runCLI(t, devices, api.with("add", "json-3", "--platform", "android", "--json")...)
	var added subscribers.Device
	if err := json.Unmarshal([]byte(r.stdout), &added); err != nil || added.Token != "json-3" {
		t.Fatalf("add --json: %q, %v", r.stdout, err)
	}

	if r := runCLI(t, devices, api.with("rm", "fcm:tok-1")...); r.code != 0 || !strings.Contains(r.stdout, "Removed device fcm:tok-1") {
		t.Fatalf("rm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, devices, api.with("rm", "fcm:tok-1")...); r.code != 1 || !strings.Contains(r.stderr, "no device is registered") {
		t.Fatalf("second rm: exit %d\n%s", r.code, r.stderr)
	}
	if n, _ := api.reg.Count(t.Context(), "breaking", "ar"); n != 2 {
		t.Fatalf("audience after rm: %d, want 2", n)
	}
}

func TestDevicesErrors(t *testing.T) {
	api := startAPI(t)
	down := "http://" + proctest.FreeAddr(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"bad platform", api.with("add", "tok", "--platform", "symbian"), 2, []string{"invalid platform", "android, ios or web"}},
		{"bad topic", api.with("add", "tok", "--platform", "ios", "--topic", "Breaking News"), 2, []string{"invalid topics"}},
		{"bad token", api.with("add", "tok en", "--platform", "ios"), 2, []string{"invalid token"}},
		{"no token", api.with("add", "--platform", "ios"), 2, []string{"TOKEN"}},
		{"two tokens", api.with("add", "a", "b", "--platform", "ios"), 2, []string{"one device token"}},
		{"unknown flag", api.with("add", "tok", "--platfrom", "ios"), 2, []string{"platfrom"}},
		{"bad lang", api.with("count", "--lang", "123"), 2, []string{"invalid lang"}},
		{"body too large", api.with("add", "tok", "--platform", "ios", "--region", strings.Repeat("x", 70<<10)), 2, []string{"over 65536 bytes"}},
		{"unknown command", []string{"list"}, 2, []string{"unknown command", "count"}},
		{"no command", nil, 2, []string{"missing the command", "add"}},
		{"missing key", append(api.with("count"), "--key", ""), 2, []string{"--key", "AJIL_KEY"}},
		{"unknown key", append(api.with("count"), "--key", "wrong-key-wrong-key-wrong"), 1, []string{"check --key"}},
		{"bad api URL", append(api.with("count"), "--api", "127.0.0.1:8080"), 2, []string{"--api"}},
		{"API down", append(api.with("count"), "--api", down), 3, []string{down, "ajil dev"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, devices, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tt.code, r.stderr)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
				}
			}
		})
	}
	if _, err := api.reg.Device(t.Context(), "tok"); err == nil {
		t.Fatal("invalid input registered a device")
	}
}

func TestDevicesFromEnvironment(t *testing.T) {
	api := startAPI(t)
	t.Setenv("AJIL_API", api.url)
	t.Setenv("AJIL_KEY", api.key)
	if r := runCLI(t, devices, "add", "env-tok", "--platform", "web"); r.code != 0 {
		t.Fatalf("add with AJIL_API and AJIL_KEY: exit %d\n%s", r.code, r.stderr)
	}
	if r := runCLI(t, devices, "count"); strings.TrimSpace(r.stdout) != "1 device follows breaking in ar." {
		t.Fatalf("count with defaults from the environment: %q %s", r.stdout, r.stderr)
	}
}

func TestDevicesHelp(t *testing.T) {
	for _, sub := range []string{"add", "rm", "count"} {
		r := runCLI(t, devices, sub, "-h")
		if r.code != 0 || !strings.Contains(r.stderr, "Example:\n  ajil devices "+sub) || !strings.Contains(r.stderr, "-api") {
			t.Errorf("devices %s -h: exit %d\n%s", sub, r.code, r.stderr)
		}
	}
	if r := runCLI(t, devices, "-h"); r.code != 0 || !strings.Contains(r.stdout, "count") {
		t.Errorf("devices -h: exit %d\n%s", r.code, r.stdout)
	}
}
