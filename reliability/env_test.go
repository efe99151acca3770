package reliability_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/hooktest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/internal/proctest"
	"github.com/ajil-news/ajil/internal/redistest"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

// env is what surrounds a fan-out: a real redis-server with the subscriber
// registry, and a fake FCM behind the real Firebase SDK. NATS differs by
// scenario (one server, a cluster, or the one inside `ajil dev`), so each
// dispatcher replica gets its connection from the test.
type env struct {
	t     *testing.T
	redis *redistest.Server
	rdb   *redis.Client
	fcm   *fcmtest.Server
	reg   *subscribers.Registry
	log   *slog.Logger
}

func newEnv(t *testing.T, opts ...fcmtest.Option) *env {
	t.Helper()
	e := &env{t: t, redis: redistest.Start(t), fcm: fcmtest.Start(t, opts...)}
	e.rdb = e.redis.Client()
	// Partner receivers listen on loopback over http.
	e.reg = subscribers.New(e.rdb, subscribers.Config{AllowHTTP: true, AllowPrivate: true})
	e.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return e
}

// testWriter sends log lines to the test's log, shown with -v or on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// pusher and registry are the method sets of dispatcher.Deps.FCM and
// dispatcher.Deps.Registry, so that a scenario can put a fault in front
// of the real ones.
type (
	pusher interface {
		Send(ctx context.Context, a alert.Alert, tokens []string) (fcm.Result, error)
		SendTopic(ctx context.Context, a alert.Alert, condition string) error
	}
	registry interface {
		Page(ctx context.Context, topic, lang string, after subscribers.Cursor, limit int) ([]string, subscribers.Cursor, error)
		RemoveTokens(ctx context.Context, tokens []string) (int, error)
		Endpoints(ctx context.Context) ([]subscribers.Endpoint, error)
		Endpoint(ctx context.Context, id string) (subscribers.Endpoint, error)
		DisableEndpoint(ctx context.Context, id, reason string) (subscribers.Endpoint, error)
	}
)

// replica describes an in-process dispatcher replica.
type replica struct {
	Config dispatcher.Config
	// FCM configures the channel; its credentials and endpoint are the
	// fake's. SendTimeout defaults to 5s, under the replica's AckWait.
	FCM fcm.Config
	// Hooks turns on webhook delivery with this sender configuration.
	Hooks *webhook.Config
	// Registry and Pusher, when set, wrap the real registry and channel.
	Registry func(registry) registry
	Pusher   func(pusher) pusher
	// Grace is how long in-flight work may finish after the stop; 2s if 0.
	Grace time.Duration
}

// Defaults of in-process replicas: a crash is noticed in seconds, not the
// production 45, and retries come quickly, so scenarios stay short.
// Under -race on two shared cores the fake FCM answers only a few hundred
// messages a second; two work items of 100 at a time per replica keep
// every batch well within its send deadline, so that no duplicate comes
// from a timeout the scenario did not inject.
const (
	replicaAckWait     = 15 * time.Second
	replicaRetryDelay  = 200 * time.Millisecond
	replicaSendTime    = 6 * time.Second
	replicaBatchSize   = 100
	replicaConcurrency = 2
)

// start runs a dispatcher replica on nc until the returned stop is called
// or the test ends. stop waits for Run to return and reports its error.
func (e *env) start(nc *nats.Conn, r replica) (stop func()) {
	e.t.Helper()
	fc := r.FCM
	fc.CredentialsFile, fc.Endpoint = e.fcm.CredentialsFile(e.t), e.fcm.Endpoint()
	if fc.SendTimeout == 0 {
		fc.SendTimeout = replicaSendTime
	}
	ch, err := fcm.New(e.t.Context(), fc, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := r.Config
	if cfg.AckWait == 0 {
		cfg.AckWait = replicaAckWait
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = replicaRetryDelay
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = replicaBatchSize
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = replicaConcurrency
	}
	if fc.Concurrency == 0 {
		fc.Concurrency = replicaConcurrency
	}
	grace := r.Grace
	if grace == 0 {
		grace = 2 * time.Second
	}
	var reg registry = e.reg
	if r.Registry != nil {
		reg = r.Registry(reg)
	}
	var push pusher = ch
	if r.Pusher != nil {
		push = r.Pusher(push)
	}
	deps := dispatcher.Deps{NATS: nc, Redis: e.rdb, Registry: reg, FCM: push, Log: e.log.With("replica", cfg.Name)}
	var sender *webhook.Sender
	if r.Hooks != nil {
		sender = webhook.NewSender(*r.Hooks, e.log)
		deps.Webhooks = sender
		deps.Attempts = webhook.NewAttemptLog(e.rdb, 50)
	}
	d, err := dispatcher.New(cfg, deps)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := d.EnsureStreams(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(e.t.Context()))
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, grace) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("dispatcher %s: %v", cfg.Name, err)
			}
			if sender != nil {
				sender.Close()
			}
			ch.Close()
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// devices registers n devices following topic in lang and returns their
// tokens, in order.
func (e *env) devices(prefix string, n int, topic, lang string) []string {
	e.t.Helper()
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	// Eight registrations at a time, as an app backend's workers would.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				d := subscribers.Device{Token: tokens[i], Platform: subscribers.PlatformAndroid, Lang: lang, Topics: []string{topic}}
				if _, _, err := e.reg.Upsert(e.t.Context(), d); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		e.t.Fatal(err)
	}
	return tokens
}

// endpoint registers a partner endpoint at r for every alert.
func (e *env) endpoint(r *hooktest.Receiver) subscribers.Endpoint {
	e.t.Helper()
	ep, err := e.reg.CreateEndpoint(e.t.Context(), subscribers.EndpointSpec{URL: r.URL(), Description: "شريك"})
	if err != nil {
		e.t.Fatal(err)
	}
	return ep
}

// tally is what a fake FCM received for a set of tokens.
type tally struct {
	Tokens     int // tokens expected to get the alert
	Delivered  int // messages accepted for them
	Missed     int // tokens that got nothing
	Duplicated int // messages beyond the first, over all tokens
	MaxPerTok  int // most messages one token got
}

func (c tally) String() string {
	return fmt.Sprintf("tokens %d, delivered %d, missed %d, duplicated %d (max %d to one token)",
		c.Tokens, c.Delivered, c.Missed, c.Duplicated, c.MaxPerTok)
}

// count tallies per token what the fake accepted, expecting each token
// once per alert in alerts.
func count(f *fcmtest.Server, tokens []string, alerts int) tally {
	c := tally{Tokens: len(tokens)}
	for _, tok := range tokens {
		n := f.CountFor(tok)
		c.Delivered += n
		c.MaxPerTok = max(c.MaxPerTok, n)
		if n < alerts {
			c.Missed += alerts - n
		}
		if n > alerts {
			c.Duplicated += n - alerts
		}
	}
	return c
}

// publishAlert publishes a fresh alert with headline through js.
func publishAlert(t *testing.T, js jetstream.JetStream, a alert.Alert) alert.Alert {
	t.Helper()
	a = a.WithDefaults(time.Now())
	if _, err := publisher.New(js, publisher.Config{}).Publish(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	return a
}

// waitState polls the dispatchers on nc until alert id reaches state, and
// returns its status.
func waitState(t *testing.T, nc *nats.Conn, id, state string, timeout time.Duration) alert.Status {
	t.Helper()
	var st alert.Status
	poll.Until(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		var err error
		st, err = publisher.QueryStatus(ctx, nc, id)
		switch {
		case err != nil:
			return err
		case st.State != state:
			return fmt.Errorf("alert %s: %+v", id, st)
		}
		return nil
	})
	return st
}

// countAlert tallies per token what the fake accepted of alert id, each
// token expected once.
func countAlert(f *fcmtest.Server, id string, tokens []string) tally {
	got := map[string]int{}
	for _, r := range f.Messages() {
		if r.Error == "" && !r.ValidateOnly && r.Token != "" && r.Message != nil && r.Message.Data["id"] == id {
			got[r.Token]++
		}
	}
	c := tally{Tokens: len(tokens)}
	for _, tok := range tokens {
		n := got[tok]
		c.Delivered += n
		c.MaxPerTok = max(c.MaxPerTok, n)
		if n == 0 {
			c.Missed++
		}
		if n > 1 {
			c.Duplicated += n - 1
		}
	}
	return c
}

// collapseIDs returns the distinct Android tags and APNs collapse IDs of
// every message the fake received.
func collapseIDs(f *fcmtest.Server) []string {
	seen := map[string]bool{}
	for _, r := range f.Messages() {
		if m := r.Message; m != nil {
			if m.Android != nil && m.Android.Notification != nil {
				seen["tag:"+m.Android.Notification.Tag] = true
			}
			if m.APNS != nil {
				seen["apns:"+m.APNS.Headers["apns-collapse-id"]] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// settled waits until read has not changed for half a second and
// returns its value.
func settled(t *testing.T, read func() int64) int64 {
	t.Helper()
	last, since := read(), time.Now()
	poll.Until(t, 30*time.Second, func() error {
		if n := read(); n != last {
			last, since = n, time.Now()
		}
		if time.Since(since) < 500*time.Millisecond {
			return fmt.Errorf("still changing: %d", last)
		}
		return nil
	})
	return last
}

// httpGet returns the status and body of GET url.
func httpGet(url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serve runs `ajil serve` against natsURL and the env's Redis and fake
// FCM, with extra flags, and waits until /readyz answers 200. It returns
// the process and the base URL of its HTTP listener.
func (e *env) serve(natsURL string, extra ...string) (*proctest.Proc, string) {
	e.t.Helper()
	listen := proctest.FreeAddr(e.t)
	env := []string{
		"AJIL_NATS_URL=" + natsURL, "AJIL_REDIS_URL=" + e.redis.URL(), "AJIL_LISTEN=" + listen,
		"AJIL_FCM_CREDENTIALS=" + e.fcm.CredentialsFile(e.t), "AJIL_FCM_ENDPOINT=" + e.fcm.Endpoint(),
		"AJIL_API_KEYS=admin:" + adminKey, "AJIL_LOG_FORMAT=text",
	}
	p := proctest.Start(e.t, ajilBin, env, append([]string{"serve"}, extra...)...)
	base := "http://" + listen
	poll.Until(e.t, 30*time.Second, func() error {
		if code, body := httpGet(base + "/readyz"); code != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	return p, base
}

// adminKey is the API key of every `ajil serve` and `ajil dev` the suite runs.
const adminKey = "reliability-admin-key-0123456789"
