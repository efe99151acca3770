package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.dny.dev/ssrf"

	"github.com/ajil-news/ajil/alert"
)

const (
	// maxIdleConns bounds the idle connections kept across all endpoints:
	// each holds a file descriptor, and an alert reaches most endpoints only
	// once before the next alert.
	maxIdleConns = 1024
	// idleConnTimeout is how long an idle connection waits for the next
	// alert, as net/http's default transport does.
	idleConnTimeout = 90 * time.Second
	// keepAlive probes detect a partner that vanished without closing.
	keepAlive = 30 * time.Second
	// snippetBytes is how much of an error response goes into Result.Err:
	// enough for a partner's error message, little enough for a log line.
	snippetBytes = 256
)

// Delivery is one attempt to deliver one alert to one endpoint.
type Delivery struct {
	EndpointID string   // the registry's ID, the key of the in-flight cap
	URL        string   // the endpoint
	Secrets    []string // the signing secrets, two while a secret is rotated
	MsgID      string   // webhook-id, from MessageID
	Body       []byte   // from Payload, the same on every attempt
	Attempt    int      // 1 for the first attempt, for logs
}

// Result is what one attempt came to.
type Result struct {
	Outcome    Outcome
	Status     int           // the HTTP status, 0 when none was received
	RetryAfter time.Duration // the endpoint's Retry-After, capped at MaxRetryAfter
	Latency    time.Duration // from sending the request to the end of the response
	Err        error         // why it was not delivered; nil when Delivered
}

// Sender posts signed webhooks. It shares one HTTP client among all
// endpoints, so connections are reused, and caps each endpoint's requests
// in flight, so a partner that hangs holds only its own slots and never
// delays the others. It is safe for concurrent use.
type Sender struct {
	cfg       Config
	log       *slog.Logger
	client    *http.Client
	guard     *ssrf.Guardian
	userAgent string

	mu    sync.Mutex
	slots map[string]*slots // by endpoint ID, while any delivery uses them
}

// slots is one endpoint's in-flight cap.
type slots struct {
	sem   chan struct{}
	users int // deliveries holding or waiting for a slot
}

// NewSender returns a Sender for cfg; a nil log discards.
func NewSender(cfg Config, log *slog.Logger) *Sender {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{
		Timeout:   cfg.ConnectTimeout,
		KeepAlive: keepAlive,
		Resolver:  cfg.Resolver,
		Control:   DialControl(cfg.AllowPrivate),
	}
	transport := &http.Transport{
		// No proxy: the guard must see the partner's address, not a proxy's.
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		ForceAttemptHTTP2:   true,
		TLSClientConfig:     &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: cfg.ConnectTimeout,
		MaxIdleConns:        maxIdleConns,
		MaxIdleConnsPerHost: cfg.MaxInFlight,
		// MaxConnsPerHost stays unlimited: the per-endpoint cap bounds it,
		// and a transport-wide queue would make endpoints on one host wait
		// for each other.
		IdleConnTimeout:        idleConnTimeout,
		MaxResponseHeaderBytes: MaxResponseBytes,
		// The body is read only for the log; a compressed one could expand.
		DisableCompression: true,
	}
	return &Sender{
		cfg: cfg,
		log: log,
		client: &http.Client{
			Transport: transport,
			// A redirect could lead anywhere, and the signature was made for
			// the registered URL: the 3xx is the answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		guard:     newGuardian(cfg.AllowPrivate),
		userAgent: "Ajil-Webhooks/" + cfg.Version + " (+https://github.com/ajil-news/ajil)",
		slots:     make(map[string]*slots),
	}
}

// Close closes idle connections. Deliveries still running finish.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

// Backoff is how long to wait before retrying after attempt failed with r,
// on the configured schedule.
func (s *Sender) Backoff(attempt int, r Result) time.Duration {
	return s.cfg.Schedule.Backoff(attempt, r.RetryAfter, rand.Float64)
}

// DisableAfter is how long an endpoint may fail continuously before the
// caller disables it.
func (s *Sender) DisableAfter() time.Duration { return s.cfg.DisableAfter }

// Deliver makes one attempt: it waits for one of the endpoint's slots (as
// long as ctx allows), signs the body with the current time and POSTs it.
// The attempt is bounded by Config.Timeout from dial to the end of the
// response, of which at most MaxResponseBytes is read.
//
// Outcomes: 2xx is Delivered; 410 is Gone; 408, 429, 5xx, timeouts and
// connection errors are Retry, with the endpoint's Retry-After; a 3xx is
// Permanent, since it is not followed (it could lead to an internal
// address, and a moved endpoint does not move back by retrying: the partner
// must register the new URL); other 4xx and an unusable URL or secret are
// Permanent; a forbidden address is Forbidden.
func (s *Sender) Deliver(ctx context.Context, d Delivery) Result {
	r := s.deliver(ctx, d)
	// Retries are routine and the caller sees them; what ends a delivery
	// is worth an operator's eye.
	level, msg := slog.LevelInfo, "webhook not delivered"
	switch r.Outcome {
	case Delivered:
		level, msg = slog.LevelDebug, "webhook delivered"
	case Retry:
		level, msg = slog.LevelDebug, "webhook to be retried"
	case Forbidden:
		level, msg = slog.LevelWarn, "webhook to a forbidden address refused"
	}
	if s.log.Enabled(ctx, level) {
		attrs := []slog.Attr{
			slog.String("endpoint_id", d.EndpointID), slog.String("msg_id", d.MsgID), slog.Int("attempt", d.Attempt),
			slog.String("outcome", r.Outcome.String()), slog.Int("status", r.Status), slog.Duration("latency", r.Latency),
		}
		if r.Err != nil {
			attrs = append(attrs, slog.Any("err", r.Err))
		}
		if r.RetryAfter > 0 {
			attrs = append(attrs, slog.Duration("retry_after", r.RetryAfter))
		}
		s.log.LogAttrs(ctx, level, msg, attrs...)
	}
	return r
}

func (s *Sender) deliver(ctx context.Context, d Delivery) Result {
	if d.EndpointID == "" {
		// All such deliveries would share one endpoint's slots.
		return Result{Outcome: Permanent, Err: errors.New("webhook: delivery without an endpoint id")}
	}
	if _, err := checkURL(d.URL, s.cfg.AllowHTTP, s.cfg.AllowPrivate, s.guard); err != nil {
		if errors.Is(err, ErrForbiddenAddress) {
			return Result{Outcome: Forbidden, Err: err}
		}
		return Result{Outcome: Permanent, Err: err}
	}
	release, err := s.acquire(ctx, d.EndpointID)
	if err != nil {
		return Result{Outcome: Retry, Err: fmt.Errorf("webhook: wait for one of the endpoint's %d slots: %w", s.cfg.MaxInFlight, err)}
	}
	defer release()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	sig, err := Sign(d.Secrets, d.MsgID, start, d.Body)
	if err != nil {
		return Result{Outcome: Permanent, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return Result{Outcome: Permanent, Err: fmt.Errorf("%w: %w", ErrInvalidURL, err)}
	}
	req.Header = http.Header{
		"Content-Type":      {"application/json"},
		"User-Agent":        {s.userAgent},
		"Webhook-Id":        {d.MsgID},
		"Webhook-Timestamp": {strconv.FormatInt(start.Unix(), 10)},
		"Webhook-Signature": {sig},
	}
	resp, err := s.client.Do(req)
	if err != nil {
		r := Result{Outcome: Retry, Latency: time.Since(start), Err: err}
		if errors.Is(err, ErrForbiddenAddress) {
			r.Outcome = Forbidden
		}
		return r
	}
	snippet := readBody(resp.Body)
	resp.Body.Close()
	r := classify(resp, snippet, time.Now())
	r.Latency = time.Since(start)
	return r
}

// acquire takes one of the endpoint's slots, waiting while ctx allows, and
// returns the function that gives it back.
func (s *Sender) acquire(ctx context.Context, endpointID string) (func(), error) {
	s.mu.Lock()
	sl := s.slots[endpointID]
	if sl == nil {
		sl = &slots{sem: make(chan struct{}, s.cfg.MaxInFlight)}
		s.slots[endpointID] = sl
	}
	sl.users++
	s.mu.Unlock()

	select {
	case sl.sem <- struct{}{}:
		return func() {
			<-sl.sem
			s.leave(endpointID, sl)
		}, nil
	case <-ctx.Done():
		s.leave(endpointID, sl)
		return nil, ctx.Err()
	}
}

// leave forgets an endpoint's slots once nobody uses them, so the map only
// holds endpoints with deliveries under way.
func (s *Sender) leave(endpointID string, sl *slots) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl.users--; sl.users == 0 {
		delete(s.slots, endpointID)
	}
}

// readBody reads at most MaxResponseBytes of body, within the attempt's
// deadline, and returns its start. Reading a short answer to the end lets
// the connection be reused; a longer one is cut off and its connection
// closed.
func readBody(body io.Reader) string {
	buf := make([]byte, snippetBytes)
	n, err := io.ReadFull(body, buf)
	if err == nil {
		io.Copy(io.Discard, io.LimitReader(body, MaxResponseBytes-snippetBytes))
	}
	return string(buf[:n])
}

// classify turns a response into a Result.
func classify(resp *http.Response, snippet string, now time.Time) Result {
	r := Result{Status: resp.StatusCode}
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		r.Outcome = Delivered
		return r
	case code == http.StatusGone:
		r.Outcome = Gone
		r.Err = fmt.Errorf("webhook: endpoint answered %s%s: it asks not to be called again", resp.Status, quote(snippet))
		return r
	case code >= 300 && code < 400:
		r.Outcome = Permanent
		r.Err = fmt.Errorf("webhook: endpoint answered %s redirecting to %q; redirects are not followed: register the final URL", resp.Status, resp.Header.Get("Location"))
		return r
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		r.Outcome = Retry
		r.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	default:
		r.Outcome = Permanent
	}
	r.Err = fmt.Errorf("webhook: endpoint answered %s%s", resp.Status, quote(snippet))
	return r
}

// quote formats the start of a response body for an error message: one
// line of valid text, or nothing.
func quote(snippet string) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(snippet, "\uFFFD")), " ")
	if s == "" {
		return ""
	}
	return fmt.Sprintf(": %q", alert.Truncate(s, 200))
}
