package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/subscribers"
)

var (
	createdRe = regexp.MustCompile(`Created endpoint (ep_[a-z2-7]+)\.`)
	secretRe  = regexp.MustCompile(`(?m)^  (whsec_[A-Za-z0-9+/=]+)$`)
)

// secretIn returns the one secret printed in out.
func secretIn(t *testing.T, out string) string {
	t.Helper()
	m := secretRe.FindAllStringSubmatch(out, -1)
	if len(m) != 1 || strings.Count(out, "whsec_") != 1 {
		t.Fatalf("want the secret printed exactly once, indented on its own line:\n%s", out)
	}
	return m[0][1]
}

func TestEndpointsCommands(t *testing.T) {
	api := startAPI(t)
	ctx := t.Context()
	const desc = "مَوقع «الخبر» — تنبيهات عاجلة\u200c للشركاء"
	r := runCLI(t, endpoints, api.with("add", "https://partner.example/hooks/ajil", "--description", desc,
		"--kind", "published", "--kind", "corrected", "--topic", "breaking", "--lang", "ar")...)
	if r.code != 0 {
		t.Fatalf("add: exit %d\n%s", r.code, r.stderr)
	}
	m := createdRe.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("add does not say which endpoint it created:\n%s", r.stdout)
	}
	id := m[1]
	secret := secretIn(t, r.stdout)
	if !strings.Contains(r.stdout, "store it") || !strings.Contains(r.stdout, desc) {
		t.Fatalf("add output lacks the store-it line or the description:\n%s", r.stdout)
	}
	e, err := api.reg.Endpoint(ctx, id)
	if err != nil || e.Secret != secret || e.Description != desc {
		t.Fatalf("stored endpoint %v, %v: want the printed secret and the description byte for byte", e, err)
	}

	r = runCLI(t, endpoints, api.with("list")...)
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, desc) || !strings.Contains(r.stdout, "published,corrected") || strings.Contains(r.stdout, "whsec_") {
		t.Fatalf("list: exit %d\n%s", r.code, r.stdout)
	}
	r = runCLI(t, endpoints, api.with("list", "--json")...)
	var list subscribers.EndpointList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Endpoints) != 1 || list.Endpoints[0].Description != desc || strings.Contains(r.stdout, "whsec_") {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	for _, args := range [][]string{{"show", id}, {"show", "--json", id}} {
		r = runCLI(t, endpoints, api.with(args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "https://partner.example/hooks/ajil") || !strings.Contains(r.stdout, desc) || strings.Contains(r.stdout, "whsec_") {
			t.Fatalf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}

	r = runCLI(t, endpoints, api.with("rotate", id)...)
	newSecret := secretIn(t, r.stdout)
	if r.code != 0 || newSecret == secret || !strings.Contains(r.stdout, "until") {
		t.Fatalf("rotate: exit %d\n%s", r.code, r.stdout)
	}
	e, _ = api.reg.Endpoint(ctx, id)
	if got := e.SigningSecrets(time.Now()); e.Secret != newSecret || len(got) != 2 || got[1] != secret {
		t.Fatal("after rotate the registry does not sign with the new secret and, for now, the old one")
	}
	if r := runCLI(t, endpoints, api.with("show", id)...); !strings.Contains(r.stdout, "Previous secret") || strings.Contains(r.stdout, "whsec_") {
		t.Fatalf("show after rotate:\n%s", r.stdout)
	}

	if _, err := api.reg.DisableEndpoint(ctx, id, "answered 410 Gone"); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, endpoints, api.with("show", id)...); !strings.Contains(r.stdout, "disabled since") || !strings.Contains(r.stdout, "answered 410 Gone") {
		t.Fatalf("show of a disabled endpoint:\n%s", r.stdout)
	}
	if r := runCLI(t, endpoints, api.with("enable", id)...); r.code != 0 || !strings.Contains(r.stdout, "Enabled endpoint "+id) {
		t.Fatalf("enable: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if e, _ := api.reg.Endpoint(ctx, id); !e.Enabled() {
		t.Fatal("enable left the endpoint disabled")
	}

	if r := runCLI(t, endpoints, api.with("rm", id)...); r.code != 0 || !strings.Contains(r.stdout, "Deleted endpoint "+id) {
		t.Fatalf("rm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, endpoints, api.with("show", id)...); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("show after rm: exit %d\n%s", r.code, r.stderr)
	}
	if r := runCLI(t, endpoints, api.with("list")...); !strings.Contains(r.stdout, "No endpoints yet") {
		t.Fatalf("empty list:\n%s", r.stdout)
	}
}

func TestEndpointsErrors(t *testing.T) {
	api := startAPI(t)
	if r := runCLI(t, endpoints, api.with("add", "https://taken.example/h")...); r.code != 0 {
		t.Fatalf("add: %s", r.stderr)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"http URL", api.with("add", "http://partner.example/h"), 2, []string{"invalid url", "https"}},
		{"localhost URL", api.with("add", "https://localhost:8443/h"), 2, []string{"invalid url", "localhost"}},
		{"metadata URL", api.with("add", "https://169.254.169.254/latest"), 2, []string{"invalid url"}},
		{"bad kind", api.with("add", "https://partner.example/h", "--kind", "deleted"), 2, []string{"invalid kinds", "published, corrected or retracted"}},
		{"bad lang", api.with("add", "https://partner.example/h", "--lang", "x"), 2, []string{"invalid langs"}},
		{"description too large", api.with("add", "https://partner.example/h", "--description", strings.Repeat("خ", 40<<10)), 2, []string{"over 65536 bytes"}},
		{"same URL twice", api.with("add", "https://taken.example/h"), 1, []string{"already delivers"}},
		{"no URL", api.with("add"), 2, []string{"one URL"}},
		{"show without ID", api.with("show"), 2, []string{"endpoint ID"}},
		{"show unknown", api.with("show", "ep_aaaaaaaaaaaaaaaa"), 1, []string{"not found"}},
		{"rotate unknown", api.with("rotate", "ep_aaaaaaaaaaaaaaaa"), 1, []string{"not found"}},
		{"list with an argument", api.with("list", "ep_aaaaaaaaaaaaaaaa"), 2, []string{"endpoints show"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, endpoints, tt.args...)
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
	if es, _ := api.reg.Endpoints(t.Context()); len(es) != 1 {
		t.Fatalf("invalid input created endpoints: %d, want 1", len(es))
	}
}

func TestEndpointsHelp(t *testing.T) {
	for _, sub := range []string{"add", "list", "show", "rm", "rotate", "enable"} {
		r := runCLI(t, endpoints, sub, "-h")
		if r.code != 0 || !strings.Contains(r.stderr, "Example:\n  ajil endpoints "+sub) {
			t.Errorf("endpoints %s -h: exit %d\n%s", sub, r.code, r.stderr)
		}
	}
}
