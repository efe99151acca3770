package webhook_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/dispatcher/webhook"
)

// TestDeliverGuard runs the production guard (AllowPrivate off) against a
// live receiver on loopback, reached by every notation of its address and
// by names that resolve to it or to other internal addresses. Every
// delivery must be refused before a connection is made: the receiver sees
// none, and refusals come back at once instead of after a connect timeout.
func TestDeliverGuard(t *testing.T) {
	rc := startReceiver(t, status(204))
	_, port, err := net.SplitHostPort(rc.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ns, resolver := startNameServer(t, map[string][]string{
		"partner.test":  {"127.0.0.1"}, // passes registration, refused at dial time
		"rebind.test":   {"10.0.0.1"},
		"metadata.test": {"169.254.169.254"},
		"cgnat.test":    {"100.64.0.1"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"v6.test":       {"::1"},
		"nat64.test":    {"64:ff9b::a9fe:a9fe"},
		"both.test":     {"127.0.0.1", "::1"},
	})
	s := newSender(t, webhook.Config{AllowHTTP: true, Resolver: resolver, ConnectTimeout: 2 * time.Second})

	urls := []struct {
		url      string
		dialTime bool // passes CheckURL: only the dialer can refuse it
	}{
		{"http://127.0.0.1:" + port + "/hooks", false},
		{"http://localhost:" + port + "/hooks", false},
		{"http://[::1]:" + port + "/hooks", false},
		{"http://[::ffff:127.0.0.1]:" + port + "/hooks", false},
		{"http://0x7f000001:" + port + "/hooks", false},
		{"http://2130706433:" + port + "/hooks", false},
		{"http://017700000001:" + port + "/hooks", false},
		{"http://127.1:" + port + "/hooks", false},
		{"http://0:" + port + "/hooks", false},
		{"http://10.0.0.1/hooks", false},
		{"http://169.254.169.254/latest/meta-data/", false},
		{"http://[fd00:ec2::254]/latest/meta-data/", false},
		{"http://partner.test:" + port + "/hooks", true},
		{"http://PARTNER.test.:" + port + "/hooks", true},
		{"http://rebind.test/hooks", true},
		{"http://metadata.test/latest/meta-data/", true},
		{"http://cgnat.test/hooks", true},
		{"http://mapped.test:" + port + "/hooks", true},
		{"http://v6.test:" + port + "/hooks", true},
		{"http://nat64.test/hooks", true},
		{"http://both.test:" + port + "/hooks", true},
	}
	for _, tt := range urls {
		t.Run(tt.url, func(t *testing.T) {
			if err := webhook.CheckURL(tt.url, true, false); (err == nil) != tt.dialTime {
				t.Fatalf("CheckURL = %v; the case is mislabelled", err)
			}
			before := ns.queries.Load()
			r := s.Deliver(t.Context(), delivery(t, "ep", tt.url))
			if r.Outcome != webhook.Forbidden || !errors.Is(r.Err, webhook.ErrForbiddenAddress) {
				t.Fatalf("Deliver = %s %d %v, want Forbidden", r.Outcome, r.Status, r.Err)
			}
			t.Log(r.Err)
			if r.Status != 0 || r.Latency > time.Second {
				t.Errorf("status %d after %s: the request went out", r.Status, r.Latency)
			}
			if tt.dialTime && ns.queries.Load() == before {
				t.Errorf("the name was not resolved: refused before the dial, not by the dialer")
			}
		})
	}
	if n, c := rc.requests.Load(), rc.newConns.Load(); n != 0 || c != 0 {
		t.Fatalf("the guarded receiver saw %d connections and %d requests, want none", c, n)
	}

	// The same receiver is reachable with --allow-private-webhooks: the
	// refusals above were the guard's, not a dead address's.
	cfg := devConfig()
	cfg.Resolver = resolver
	for _, url := range []string{"http://partner.test:" + port + "/hooks", "http://127.0.0.1:" + port + "/hooks"} {
		if r := newSender(t, cfg).Deliver(t.Context(), delivery(t, "ep", url)); r.Outcome != webhook.Delivered {
			t.Fatalf("%s with private addresses allowed: %s %v", url, r.Outcome, r.Err)
		}
	}
}

// TestDialControlNameInHostsFile dials localhost, which resolves through
// /etc/hosts, through the guard: the name is resolved and the address
// refused, with nothing reaching the listener.
func TestDialControlNameInHostsFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d := net.Dialer{Control: webhook.DialControl(false), Timeout: 2 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp", net.JoinHostPort("localhost", port))
	if c != nil {
		c.Close()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		t.Skipf("localhost does not resolve here: %v", err)
	}
	if !errors.Is(err, webhook.ErrForbiddenAddress) {
		t.Fatalf("dial localhost = %v, want ErrForbiddenAddress", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1") && !strings.Contains(err.Error(), "::1") {
		t.Errorf("error %q does not name the refused address", err)
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("the listener accepted a connection the guard refused")
	}
}
