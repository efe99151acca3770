package webhook_test

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/dispatcher/webhook"
)

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// wantErr checks err against "ok", "forbidden" or "invalid".
func wantErr(t testing.TB, err error, want string) {
	t.Helper()
	switch want {
	case "ok":
		if err != nil {
			t.Errorf("refused: %v", err)
		}
	case "forbidden":
		if !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Errorf("err = %v, want ErrForbiddenAddress", err)
		}
	case "invalid":
		if !errors.Is(err, webhook.ErrInvalidURL) {
			t.Errorf("err = %v, want ErrInvalidURL", err)
		}
	default:
		t.Fatalf("unknown expectation %q", want)
	}
}

func TestCheckURL(t *testing.T) {
	var cases []struct {
		Why     string `json:"why"`
		URL     string `json:"url"`
		HTTP    bool   `json:"http"`
		Private bool   `json:"private"`
		Want    string `json:"want"`
	}
	readJSON(t, "testdata/check-url.json", &cases)
	for _, tt := range cases {
		t.Run(tt.Why, func(t *testing.T) {
			err := webhook.CheckURL(tt.URL, tt.HTTP, tt.Private)
			wantErr(t, err, tt.Want)
			if err != nil && strings.Contains(err.Error(), "pass@") {
				t.Errorf("error %q reveals credentials", err)
			}
		})
	}
}

func TestDialControl(t *testing.T) {
	var cases []struct {
		Why     string `json:"why"`
		Network string `json:"network"`
		Address string `json:"address"`
		Private bool   `json:"private"`
		Want    string `json:"want"`
	}
	readJSON(t, "testdata/dial-control.json", &cases)
	for _, tt := range cases {
		t.Run(tt.Why, func(t *testing.T) {
			wantErr(t, webhook.DialControl(tt.Private)(tt.Network, tt.Address, nil), tt.Want)
		})
	}
}

// TestDialControlRefusesBeforeConnecting dials a live loopback listener
// through the guard: the dial fails and the listener never sees a
// connection, so the check runs before the SYN is sent.
func TestDialControlRefusesBeforeConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: webhook.DialControl(false), Timeout: 2 * time.Second}
	if c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String()); !errors.Is(err, webhook.ErrForbiddenAddress) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial = %v, want ErrForbiddenAddress", err)
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("the listener accepted a connection the guard refused")
	}

	// The same dialer with private addresses allowed does connect: the
	// listener was reachable all along.
	d.Control = webhook.DialControl(true)
	c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial with private allowed: %v", err)
	}
	c.Close()
}

func TestCheckResolved(t *testing.T) {
	_, resolver := startNameServer(t, map[string][]string{
		"partner.test":   {"8.8.8.8", "2606:4700:4700::1111"}, // resolved only, never dialed
		"internal.test":  {"10.0.0.1"},
		"metadata.test":  {"169.254.169.254"},
		"mixed.test":     {"8.8.8.8", "127.0.0.1"},
		"v6-loop.test":   {"::1"},
		"v6-mapped.test": {"::ffff:127.0.0.1"},
		"nat64.test":     {"64:ff9b::7f00:1"},
		"dev.test":       {"127.0.0.1"},
	})
	tests := []struct {
		url     string
		private bool
		want    string
	}{
		{"https://partner.test/hooks", false, "ok"},
		{"https://internal.test/hooks", false, "forbidden"},
		{"https://metadata.test/latest/meta-data/", false, "forbidden"},
		{"https://mixed.test/", false, "forbidden"},
		{"https://v6-loop.test/", false, "forbidden"},
		{"https://v6-mapped.test/", false, "forbidden"},
		{"https://nat64.test/", false, "forbidden"},
		{"https://dev.test:8443/", true, "ok"},
		{"https://metadata.test/", true, "forbidden"},
		{"https://localhost/", false, "forbidden"}, // refused without a lookup
		{"https://127.0.0.1/", false, "forbidden"},
		{"http://partner.test/", false, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			wantErr(t, webhook.CheckResolved(t.Context(), resolver, tt.url, false, tt.private), tt.want)
		})
	}

	t.Run("unknown name", func(t *testing.T) {
		err := webhook.CheckResolved(t.Context(), resolver, "https://nowhere.test/", false, false)
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Fatalf("err = %v, want the DNS error", err)
		}
	})
}
