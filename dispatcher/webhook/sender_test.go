package webhook_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testAlertID = "0190d7a0-7c1e-7000-8000-000000000001"

// devConfig is what `ajil dev` runs with: loopback receivers over http.
func devConfig() webhook.Config {
	return webhook.Config{Version: "1.2.3", AllowHTTP: true, AllowPrivate: true}
}

func newSender(t testing.TB, cfg webhook.Config) *webhook.Sender {
	t.Helper()
	s := webhook.NewSender(cfg, nil)
	t.Cleanup(s.Close)
	return s
}

// receiver is a partner's endpoint on loopback that records what reaches it.
type receiver struct {
	*httptest.Server
	newConns atomic.Int64 // TCP connections accepted
	requests atomic.Int64
	active   atomic.Int64 // handlers running now
	maxSeen  atomic.Int64 // most handlers running at once

	mu   sync.Mutex
	last *http.Request
	body []byte
}

func startReceiver(t testing.TB, h http.HandlerFunc) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewUnstartedServer(rc.wrap(h))
	rc.Server.Config.ConnState = rc.connState
	rc.Start()
	t.Cleanup(rc.Close)
	return rc
}

func startTLSReceiver(t testing.TB, h http.HandlerFunc) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewUnstartedServer(rc.wrap(h))
	rc.Server.Config.ConnState = rc.connState
	// Handshakes refused by the client are expected, not news.
	rc.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.StartTLS()
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) connState(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		rc.newConns.Add(1)
	}
}

func (rc *receiver) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := rc.active.Add(1)
		defer rc.active.Add(-1)
		for m := rc.maxSeen.Load(); n > m && !rc.maxSeen.CompareAndSwap(m, n); m = rc.maxSeen.Load() {
		}
		rc.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.last, rc.body = r, body
		rc.mu.Unlock()
		h(w, r)
	}
}

func (rc *receiver) lastRequest() (*http.Request, []byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.last, rc.body
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

// delivery is the published test alert for endpointID at url.
func delivery(t testing.TB, endpointID, url string, secrets ...string) webhook.Delivery {
	t.Helper()
	body, err := webhook.Payload(readAlert(t, "published"), planned)
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) == 0 {
		secrets = []string{testSecret}
	}
	return webhook.Delivery{
		EndpointID: endpointID, URL: url, Secrets: secrets,
		MsgID: webhook.MessageID(testAlertID, endpointID), Body: body, Attempt: 1,
	}
}

// testSecret is a fixed valid secret; tests that need fresh ones call NewSecret.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestDeliverOutcomes(t *testing.T) {
	const pointless = "whatever the handler would have answered"
	internal := startReceiver(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, pointless) })
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		outcome    webhook.Outcome
		status     int
		retryAfter [2]time.Duration // range, inclusive
		errHas     string
	}{
		{name: "200", handler: status(200), outcome: webhook.Delivered, status: 200},
		{name: "202", handler: status(202), outcome: webhook.Delivered, status: 202},
		{name: "204", handler: status(204), outcome: webhook.Delivered, status: 204},
		{name: "410 Gone", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(410)
			io.WriteString(w, "endpoint deleted")
		}, outcome: webhook.Gone, status: 410, errHas: `410 Gone: "endpoint deleted"`},
		{name: "500", handler: status(500), outcome: webhook.Retry, status: 500, errHas: "500 Internal Server Error"},
		{name: "502", handler: status(502), outcome: webhook.Retry, status: 502},
		{name: "503 with Retry-After seconds", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(503)
		}, outcome: webhook.Retry, status: 503, retryAfter: [2]time.Duration{120 * time.Second, 120 * time.Second}},
		{name: "429 with Retry-After date", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
		}, outcome: webhook.Retry, status: 429, retryAfter: [2]time.Duration{85 * time.Second, 90 * time.Second}},
		{name: "429 with a Retry-After of years", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "99999999999999999999")
			w.WriteHeader(429)
		}, outcome: webhook.Retry, status: 429, retryAfter: [2]time.Duration{webhook.MaxRetryAfter, webhook.MaxRetryAfter}},
		{name: "429 with an unreadable Retry-After", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "soon")
			w.WriteHeader(429)
		}, outcome: webhook.Retry, status: 429},
		{name: "408", handler: status(408), outcome: webhook.Retry, status: 408},
		{name: "400 with a reason", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			io.WriteString(w, "{\"error\":\n  \"bad signature\"}")
		}, outcome: webhook.Permanent, status: 400, errHas: `400 Bad Request: "{\"error\": \"bad signature\"}"`},
		{name: "401", handler: status(401), outcome: webhook.Permanent, status: 401},
		{name: "404", handler: status(404), outcome: webhook.Permanent, status: 404},
		{name: "413", handler: status(413), outcome: webhook.Permanent, status: 413},
		{name: "302 to an internal address", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, internal.URL+"/admin", http.StatusFound)
		}, outcome: webhook.Permanent, status: 302, errHas: "/admin"},
		{name: "307 to cloud metadata", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
		}, outcome: webhook.Permanent, status: 307, errHas: "redirects are not followed"},
		{name: "308", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, internal.URL, http.StatusPermanentRedirect)
		}, outcome: webhook.Permanent, status: 308},
	}
	s := newSender(t, devConfig())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := startReceiver(t, tt.handler)
			r := s.Deliver(t.Context(), delivery(t, "ep_"+tt.name, rc.URL+"/hooks"))
			if r.Outcome != tt.outcome || r.Status != tt.status {
				t.Fatalf("Deliver = %s %d (%v), want %s %d", r.Outcome, r.Status, r.Err, tt.outcome, tt.status)
			}
			if r.RetryAfter < tt.retryAfter[0] || r.RetryAfter > tt.retryAfter[1] {
				t.Errorf("RetryAfter = %s, want %s to %s", r.RetryAfter, tt.retryAfter[0], tt.retryAfter[1])
			}
			if (r.Err == nil) != (tt.outcome == webhook.Delivered) {
				t.Errorf("Err = %v for %s", r.Err, r.Outcome)
			}
			if r.Err != nil && !strings.Contains(r.Err.Error(), tt.errHas) {
				t.Errorf("Err = %q, want it to contain %q", r.Err, tt.errHas)
			}
			if r.Latency <= 0 || r.Latency > 5*time.Second {
				t.Errorf("Latency = %s", r.Latency)
			}
			if rc.requests.Load() != 1 {
				t.Errorf("endpoint got %d requests, want 1", rc.requests.Load())
			}
		})
	}
	if n := internal.requests.Load(); n != 0 {
		t.Fatalf("a redirect was followed: the internal address got %d requests", n)
	}
}

func TestDeliverRequest(t *testing.T) {
	oldSecret, newSecret := webhook.NewSecret(), webhook.NewSecret()
	rc := startReceiver(t, status(204))
	s := newSender(t, devConfig())
	d := delivery(t, "ep_1", rc.URL+"/hooks/ajil?site=x&lang=ar", oldSecret, newSecret)
	before := time.Now()
	r := s.Deliver(t.Context(), d)
	if r.Outcome != webhook.Delivered {
		t.Fatalf("Deliver = %s %v", r.Outcome, r.Err)
	}
	req, body := rc.lastRequest()
	if req.Method != http.MethodPost || req.URL.RequestURI() != "/hooks/ajil?site=x&lang=ar" {
		t.Errorf("request %s %s", req.Method, req.URL.RequestURI())
	}
	for h, want := range map[string]string{
		"Content-Type": "application/json",
		"User-Agent":   "Ajil-Webhooks/1.2.3 (+https://github.com/ajil-news/ajil)",
		"Webhook-Id":   d.MsgID,
	} {
		if got := req.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	ts, err := strconv.ParseInt(req.Header.Get("webhook-timestamp"), 10, 64)
	if err != nil || ts < before.Unix() || ts > time.Now().Unix() {
		t.Errorf("webhook-timestamp %q is not the time of the attempt", req.Header.Get("webhook-timestamp"))
	}
	if string(body) != string(d.Body) {
		t.Errorf("body changed in transit:\n%s\n%s", body, d.Body)
	}
	for _, sec := range []string{oldSecret, newSecret} {
		if err := verifier(t, sec).Verify(body, req.Header); err != nil {
			t.Errorf("official verifier with one of the rotated secrets: %v", err)
		}
	}
	if err := verifier(t, webhook.NewSecret()).Verify(body, req.Header); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Errorf("verified with a secret the endpoint never had: %v", err)
	}

	// A retry carries the same webhook-id, so the partner can drop it.
	d.Attempt = 2
	if r := s.Deliver(t.Context(), d); r.Outcome != webhook.Delivered {
		t.Fatalf("retry: %s %v", r.Outcome, r.Err)
	}
	req2, body2 := rc.lastRequest()
	if req2.Header.Get("webhook-id") != req.Header.Get("webhook-id") || string(body2) != string(body) {
		t.Errorf("retry changed webhook-id or body")
	}
	if err := verifier(t, newSecret).Verify(body2, req2.Header); err != nil {
		t.Errorf("retry: %v", err)
	}
}

func TestDeliverRefusesBeforeSending(t *testing.T) {
	rc := startReceiver(t, status(204))
	tls := startTLSReceiver(t, status(204))
	noSecret := delivery(t, "ep", rc.URL)
	noSecret.Secrets = nil
	tests := []struct {
		name    string
		cfg     webhook.Config
		d       webhook.Delivery
		outcome webhook.Outcome
		err     error
	}{
		{"http without AllowHTTP", webhook.Config{AllowPrivate: true}, delivery(t, "ep", rc.URL), webhook.Permanent, webhook.ErrInvalidURL},
		{"https URL with AllowHTTP still needs a valid certificate chain",
			webhook.Config{AllowHTTP: true, AllowPrivate: true}, delivery(t, "ep", tls.URL), webhook.Retry, nil},
		{"no secret", devConfig(), noSecret, webhook.Permanent, webhook.ErrInvalidSecret},
		{"malformed secret", devConfig(), delivery(t, "ep", rc.URL, "whsec_short"), webhook.Permanent, webhook.ErrInvalidSecret},
		{"not a URL", devConfig(), delivery(t, "ep", "::"), webhook.Permanent, webhook.ErrInvalidURL},
		{"no endpoint ID", devConfig(), delivery(t, "", rc.URL), webhook.Permanent, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSender(t, tt.cfg).Deliver(t.Context(), tt.d)
			if r.Outcome != tt.outcome || (tt.err != nil && !errors.Is(r.Err, tt.err)) {
				t.Fatalf("Deliver = %s %v, want %s %v", r.Outcome, r.Err, tt.outcome, tt.err)
			}
		})
	}
	if rc.requests.Load() != 0 || tls.requests.Load() != 0 {
		t.Fatalf("refused deliveries reached the endpoint: %d, %d requests", rc.requests.Load(), tls.requests.Load())
	}
}

func TestDeliverTLS(t *testing.T) {
	rc := startTLSReceiver(t, status(200))
	roots := x509.NewCertPool()
	roots.AddCert(rc.Certificate())
	s := newSender(t, webhook.Config{AllowPrivate: true, RootCAs: roots})
	if r := s.Deliver(t.Context(), delivery(t, "ep", rc.URL)); r.Outcome != webhook.Delivered {
		t.Fatalf("Deliver over https = %s %v", r.Outcome, r.Err)
	}
}

// TestDeliverCutsOffResponses checks that a receiver answering too much or
// too slowly cannot hold a delivery past the configured timeout.
func TestDeliverCutsOffResponses(t *testing.T) {
	const timeout = 300 * time.Millisecond
	stopped := make(chan error, 1)
	chunk := []byte(strings.Repeat("x", 32<<10))
	tests := []struct {
		name    string
		handler http.HandlerFunc
		outcome webhook.Outcome
		status  int
		fast    bool // returns well before the timeout
	}{
		{"endless body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for {
				if _, err := w.Write(chunk); err != nil {
					stopped <- err
					return
				}
			}
		}, webhook.Delivered, 200, true},
		{"trickled body on 200", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			trickle(w, r)
		}, webhook.Delivered, 200, false},
		{"trickled body on 500", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			trickle(w, r)
		}, webhook.Retry, 500, false},
		{"no answer", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, webhook.Retry, 0, false},
		{"huge headers", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Padding", strings.Repeat("x", 2*webhook.MaxResponseBytes))
			w.WriteHeader(200)
		}, webhook.Retry, 0, true},
	}
	s := newSender(t, webhook.Config{AllowHTTP: true, AllowPrivate: true, Timeout: timeout})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := startReceiver(t, tt.handler)
			start := time.Now()
			r := s.Deliver(t.Context(), delivery(t, "ep", rc.URL))
			took := time.Since(start)
			if r.Outcome != tt.outcome || r.Status != tt.status {
				t.Fatalf("Deliver = %s %d (%v), want %s %d", r.Outcome, r.Status, r.Err, tt.outcome, tt.status)
			}
			limit := timeout + time.Second
			if tt.fast {
				limit = timeout
			}
			if took > limit {
				t.Errorf("Deliver took %s, want under %s", took, limit)
			}
			if !tt.fast && took < timeout {
				t.Errorf("Deliver returned after %s, before the %s timeout: it did not wait for the response", took, timeout)
			}
		})
	}
	select {
	case err := <-stopped:
		t.Logf("endless body writer stopped: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the endless body is still being read")
	}
}

// trickle writes a byte every 10 ms until the client goes away.
func trickle(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		w.Write([]byte("."))
		rc.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

func TestDeliverReusesConnections(t *testing.T) {
	rc := startReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		io.WriteString(w, `{"ok":true}`)
	})
	s := newSender(t, devConfig())
	d := delivery(t, "ep", rc.URL)
	for i := range 20 {
		if r := s.Deliver(t.Context(), d); r.Outcome != webhook.Delivered {
			t.Fatalf("delivery %d: %s %v", i, r.Outcome, r.Err)
		}
	}
	// net/http reuses a connection only once it has seen its request
	// written, waiting 50 ms for that; a loaded machine can miss it and cost
	// a connection now and then. Without reuse every request dials.
	const perConn = 5
	if n := rc.newConns.Load(); n > 20/perConn {
		t.Fatalf("20 sequential deliveries opened %d connections, want 1", n)
	}

	// Bursts of MaxInFlight reuse the idle connections kept for them.
	for range 10 {
		var wg sync.WaitGroup
		for range webhook.DefaultMaxInFlight {
			wg.Go(func() {
				if r := s.Deliver(t.Context(), d); r.Outcome != webhook.Delivered {
					t.Errorf("burst: %s %v", r.Outcome, r.Err)
				}
			})
		}
		wg.Wait()
	}
	if n := rc.newConns.Load(); n > 60/perConn {
		t.Fatalf("60 deliveries, 40 in bursts of %d, opened %d connections, want about %d", webhook.DefaultMaxInFlight, n, webhook.DefaultMaxInFlight)
	}
}

func TestDeliverInFlightCap(t *testing.T) {
	release := make(chan struct{})
	var slowActive atomic.Int64
	rc := startReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slowActive.Add(1)
			defer slowActive.Add(-1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(204)
	})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before rc.Close: LIFO

	const limit, sent = 3, 10
	cfg := devConfig()
	cfg.MaxInFlight = limit
	s := newSender(t, cfg)
	slow := delivery(t, "ep_slow", rc.URL+"/slow")

	results := make(chan webhook.Result, sent)
	for range sent {
		go func() { results <- s.Deliver(t.Context(), slow) }()
	}
	poll.Until(t, 5*time.Second, func() error {
		if n := slowActive.Load(); n != limit {
			return fmt.Errorf("%d requests open to the slow endpoint, want %d", n, limit)
		}
		return nil
	})

	// A delivery that cannot wait gives up without reaching the endpoint.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	r := s.Deliver(ctx, slow)
	cancel()
	if r.Outcome != webhook.Retry || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("Deliver with all slots taken = %s %v, want Retry after the context's deadline", r.Outcome, r.Err)
	}

	// Another endpoint on the same host has its own slots.
	if r := s.Deliver(t.Context(), delivery(t, "ep_fast", rc.URL+"/fast")); r.Outcome != webhook.Delivered {
		t.Fatalf("other endpoint: %s %v", r.Outcome, r.Err)
	}
	if n := slowActive.Load(); n != limit {
		t.Fatalf("%d requests open to the slow endpoint, want still %d", n, limit)
	}

	unblock()
	for range sent {
		if r := <-results; r.Outcome != webhook.Delivered {
			t.Errorf("queued delivery: %s %v", r.Outcome, r.Err)
		}
	}
	if got := rc.requests.Load(); got != sent+1 {
		t.Errorf("endpoint got %d requests, want %d", got, sent+1)
	}
}

// TestDeliverIsolation: one partner hangs, 99 answer; delivered together,
// the 99 are done within a second.
func TestDeliverIsolation(t *testing.T) {
	release := make(chan struct{})
	hanging := startReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release: // the test's end, standing in for a 20 s hang
		case <-r.Context().Done():
		}
		w.WriteHeader(204)
	})
	t.Cleanup(sync.OnceFunc(func() { close(release) }))
	healthy := startReceiver(t, status(204))
	s := newSender(t, devConfig()) // the production 15 s timeout

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The hanging partner already has a queue of its own.
	for range 2 * webhook.DefaultMaxInFlight {
		wg.Go(func() { s.Deliver(ctx, delivery(t, "ep_hanging", hanging.URL)) })
	}

	const n = 100
	var delivered atomic.Int64
	start := time.Now()
	for i := range n {
		d := delivery(t, fmt.Sprintf("ep_%03d", i), fmt.Sprintf("%s/partners/%d", healthy.URL, i))
		if i == 0 {
			d = delivery(t, "ep_hanging", hanging.URL)
		}
		wg.Go(func() {
			if r := s.Deliver(ctx, d); r.Outcome == webhook.Delivered {
				delivered.Add(1)
			}
		})
	}
	poll.Until(t, 10*time.Second, func() error {
		if got := delivered.Load(); got < n-1 {
			return fmt.Errorf("%d of %d healthy endpoints delivered", got, n-1)
		}
		return nil
	})
	if took := time.Since(start); took > time.Second {
		t.Errorf("99 healthy endpoints took %s next to a hanging one, want under 1s", took)
	}
	if hanging.requests.Load() > webhook.DefaultMaxInFlight {
		t.Errorf("hanging endpoint has %d requests open, over its cap of %d", hanging.requests.Load(), webhook.DefaultMaxInFlight)
	}
	cancel()
}
