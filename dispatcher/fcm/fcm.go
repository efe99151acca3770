// Package fcm is Ajil's Firebase Cloud Messaging channel: it turns an
// alert into FCM HTTP v1 messages and sends them with the Firebase Admin
// SDK, to batches of device tokens or to a topic condition, and sorts what
// FCM answers into what the dispatcher must do: count it sent, prune the
// token, retry it later, or give up.
package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"github.com/ajil-news/ajil/alert"
)

const (
	// DefaultSendTimeout bounds every SendEach call and every rate-limit
	// wait. The SDK retries a 503 four times over about seven seconds, so
	// this leaves room for that and a slow FCM, while a batch's wait and
	// send together (30s) stay under the dispatcher's 45-second AckWait:
	// a stuck send never outlives its work item's lease.
	DefaultSendTimeout = 15 * time.Second
	// DefaultConcurrency is how many SendEach calls one process runs at
	// once. Each sends its up to 500 messages 50 at a time, so 16 calls keep
	// 800 requests in flight: at 50 ms a request that is 16,000 messages a
	// second, the default quota of 10,000 with room for a slower FCM (8
	// calls fell short of it at 50 ms). The Limiter, not this, holds a
	// project to its quota.
	DefaultConcurrency = 16
	// DefaultPerMinute is FCM's default send quota for a project.
	DefaultPerMinute = 600_000
	// DefaultRetryBackoff is the wait before retrying tokens FCM could not
	// take (5xx, timeouts) when it did not say how long to wait: FCM asks
	// senders to back off for at least about ten seconds.
	DefaultRetryBackoff = 10 * time.Second
	// DefaultQuotaBackoff is that wait after a quota refusal without
	// Retry-After: FCM's quota is counted per minute.
	DefaultQuotaBackoff = time.Minute
	// MaxBatch is how many messages one SendEach call takes.
	MaxBatch = 500

	// sdkWorkers is how many requests SendEach runs at once.
	sdkWorkers = 50
	// messagingScope is the OAuth scope of the FCM v1 API.
	messagingScope = "https://www.googleapis.com/auth/firebase.messaging"
)

// Errors a whole call fails with; callers branch on them with errors.Is.
var (
	// ErrQuota: FCM, or Ajil's own limiter, refused for quota; retry later.
	ErrQuota = errors.New("fcm: quota exceeded")
	// ErrUnavailable: FCM could not be reached or did not answer in time,
	// or failed; retry later.
	ErrUnavailable = errors.New("fcm: unavailable")
	// ErrAuth: FCM refused Ajil's credentials (or, for a topic send, the
	// project's APNs or web push credentials). An operator must fix them.
	ErrAuth = errors.New("fcm: credentials refused")
	// ErrExpired: the alert's TTL has passed; nothing was sent.
	ErrExpired = errors.New("fcm: alert expired")
)

// Config configures the FCM channel.
type Config struct {
	// CredentialsFile is the service-account JSON key from the Firebase
	// console. Empty means Google's application default credentials, which
	// honour GOOGLE_APPLICATION_CREDENTIALS.
	CredentialsFile string
	// ProjectID is the Firebase project; empty takes it from the key.
	ProjectID string
	// Endpoint replaces FCM's v1 endpoint, https://fcm.googleapis.com/v1.
	// An http:// endpoint is spoken to in cleartext HTTP/2, as FCM is
	// spoken to in HTTP/2 over TLS.
	Endpoint string
	// SendTimeout bounds each SendEach call and each rate-limit wait; keep
	// it under the dispatcher's AckWait.
	SendTimeout time.Duration
	// Concurrency is how many SendEach calls run at once in this process.
	Concurrency int
	// LogOnly sends nothing and needs no credentials: each message is
	// logged and counted as sent.
	LogOnly bool
	// Titles are notification titles by base language ("ar", "en"), over
	// DefaultTitles.
	Titles map[string]string
	// FallbackTitle is the title for other languages; DefaultFallbackTitle
	// when empty.
	FallbackTitle string
	// Limiter paces sends at the project's quota across replicas; nil
	// sends as fast as FCM takes them.
	Limiter Limiter
}

func (c Config) withDefaults() Config {
	if c.SendTimeout <= 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	return c
}

// Result is what became of one Send's tokens.
type Result struct {
	Sent       int           // messages FCM accepted
	Dead       []string      // tokens FCM will never deliver to again: remove them
	Retry      []string      // tokens to send again after RetryAfter
	RetryAfter time.Duration // how long to wait before retrying; 0 without Retry
	AuthFailed int           // messages refused because APNs or web push refused the project's credentials
	Failed     int           // messages refused for good for another reason
}

// Channel sends alerts through FCM. One serves a whole process.
type Channel struct {
	cfg       Config
	log       *slog.Logger
	titles    titles
	client    *messaging.Client // nil when LogOnly
	transport *http.Transport
	sem       chan struct{} // one slot per SendEach call in flight
	logged    atomic.Int64
}

// New returns a channel for cfg. Unless cfg.LogOnly it loads the
// credentials; the first send fetches an access token with them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Channel, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Channel{
		cfg:    cfg,
		log:    log,
		titles: newTitles(cfg.Titles, cfg.FallbackTitle),
		sem:    make(chan struct{}, cfg.Concurrency),
	}
	if cfg.LogOnly {
		log.Warn("FCM is in log-only mode: pushes are logged, not sent")
		return c, nil
	}

	project := cfg.ProjectID
	opts := []option.ClientOption{option.WithScopes(messagingScope), option.WithTelemetryDisabled()}
	if cfg.CredentialsFile != "" {
		key, err := os.ReadFile(cfg.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("fcm: CredentialsFile: %w; give the path of the service-account key "+
				"from the Firebase console (Project settings > Service accounts)", err)
		}
		var sa struct {
			Type        string `json:"type"`
			ProjectID   string `json:"project_id"`
			ClientEmail string `json:"client_email"`
			PrivateKey  string `json:"private_key"`
		}
		if err := json.Unmarshal(key, &sa); err != nil || sa.Type != "service_account" || sa.ClientEmail == "" || sa.PrivateKey == "" {
			return nil, fmt.Errorf("fcm: CredentialsFile %s is not a service-account key (JSON with \"type\": \"service_account\", "+
				"client_email and private_key); download one from the Firebase console (Project settings > Service accounts)", cfg.CredentialsFile)
		}
		if project == "" {
			project = sa.ProjectID
		}
		opts = append(opts, option.WithAuthCredentialsJSON(option.ServiceAccount, key))
	}
	if project == "" {
		return nil, errors.New("fcm: ProjectID is empty; set it to the Firebase project ID, " +
			"or use a service-account key that names it, or use LogOnly")
	}
	c.transport = newTransport(cfg.Concurrency)
	var endpoint []option.ClientOption
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("fcm: Endpoint %q is not an http(s) URL; leave it empty for FCM's, "+
				"or give one such as https://fcm.googleapis.com/v1", cfg.Endpoint)
		}
		endpoint = []option.ClientOption{option.WithEndpoint(cfg.Endpoint)}
		if u.Scheme == "http" {
			c.transport.Protocols = new(http.Protocols)
			c.transport.Protocols.SetUnencryptedHTTP2(true)
		}
	}

	rt, err := htransport.NewTransport(ctx, c.transport, append(opts, endpoint...)...)
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials: %w; set CredentialsFile or GOOGLE_APPLICATION_CREDENTIALS "+
			"to a service-account key, or use LogOnly", err)
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project},
		append([]option.ClientOption{option.WithHTTPClient(&http.Client{Transport: rt})}, endpoint...)...)
	if err != nil {
		return nil, fmt.Errorf("fcm: firebase app: %w", err)
	}
	if c.client, err = app.Messaging(ctx); err != nil {
		return nil, fmt.Errorf("fcm: messaging client: %w", err)
	}
	return c, nil
}

// newTransport is the HTTP transport to FCM: HTTP/2 over TLS, with room for
// every request in flight to keep its connection.
func newTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: concurrency * sdkWorkers,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// A connection that went dead without a FIN is noticed in a minute,
		// not after the kernel's TCP timeout.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second},
	}
}

// Close releases the channel's idle connections.
func (c *Channel) Close() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}

// Logged is how many messages a LogOnly channel logged instead of sending.
func (c *Channel) Logged() int64 { return c.logged.Load() }

// Message is the package's Message with the channel's titles.
func (c *Channel) Message(a alert.Alert, token string) *messaging.Message {
	return c.titles.message(a, token, time.Now())
}

// TopicMessage is the package's TopicMessage with the channel's titles.
func (c *Channel) TopicMessage(a alert.Alert, condition string) *messaging.Message {
	return c.titles.topicMessage(a, condition, time.Now())
}

// Send sends a to every token, MaxBatch at a time through SendEach, each
// batch after the limiter lets it through. It never sends an expired
// alert: it returns ErrExpired without a request.
//
// Send returns an error only when no token was delivered, pruned or given
// up on: every token is then in Result.Retry, and the error is ErrQuota,
// ErrUnavailable, ErrAuth or the context's.
func (c *Channel) Send(ctx context.Context, a alert.Alert, tokens []string) (Result, error) {
	now := time.Now()
	if a.Expired(now) {
		return Result{}, fmt.Errorf("%w: %s expired at %s", ErrExpired, a.ID, a.ExpiresAt().Format(time.RFC3339))
	}
	if len(tokens) == 0 {
		return Result{}, nil
	}
	if c.cfg.LogOnly {
		c.logSends(a, tokens, now)
		return Result{Sent: len(tokens)}, nil
	}

	// One message for the whole call, sized for its longest token, so every
	// device gets the same text; each batch copies it with its tokens.
	longest := ""
	for _, t := range tokens {
		if len(t) > len(longest) {
			longest = t
		}
	}
	base := c.titles.message(a, longest, now)

	outs := make([]outcome, (len(tokens)+MaxBatch-1)/MaxBatch)
	var wg sync.WaitGroup
	for i := range outs {
		batch := tokens[i*MaxBatch : min((i+1)*MaxBatch, len(tokens))]
		wg.Go(func() { outs[i] = c.sendBatch(ctx, a, base, batch) })
	}
	wg.Wait()
	return c.merge(ctx, a, outs, len(tokens))
}

// outcome is what became of one batch.
type outcome struct {
	Result
	suspect []string // INVALID_ARGUMENT without a named field: the token or the payload
	quota   int      // tokens in Retry refused for quota
	auth    int      // tokens in Retry refused because FCM refused our credentials
	payload error    // what FCM said was wrong with the message itself
	other   error    // the first other refusal
	cause   error    // why the batch was not sent at all
}

func (c *Channel) sendBatch(ctx context.Context, a alert.Alert, base *messaging.Message, tokens []string) outcome {
	var out outcome
	var retryAfter time.Duration
	retryAll := func(err error) outcome {
		out.Retry = append(out.Retry, tokens...)
		out.cause = err
		out.RetryAfter = retryAfterOf(err)
		if errors.Is(err, ErrQuota) {
			out.quota = len(tokens)
		}
		if out.RetryAfter <= 0 {
			out.RetryAfter = backoff(out.quota > 0)
		}
		return out
	}
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return retryAll(ctx.Err())
	}
	if c.cfg.Limiter != nil {
		lctx, cancel := context.WithTimeout(ctx, c.cfg.SendTimeout)
		err := c.cfg.Limiter.Wait(lctx, len(tokens))
		cancel()
		switch n := admittedOf(err); {
		case err == nil:
		case n == 0:
			c.log.Warn("FCM rate limit: batch not sent", "alert_id", a.ID, "tokens", len(tokens), "err", err)
			return retryAll(err)
		default:
			// At a small quota a whole batch takes longer than the
			// deadline: send what the rate let through, retry the rest.
			rest := tokens[n:]
			tokens = tokens[:n]
			out.Retry = append(out.Retry, rest...)
			out.quota += len(rest)
			retryAfter = retryAfterOf(err)
		}
	}

	msgs := make([]*messaging.Message, 0, len(tokens))
	sent := make([]string, 0, len(tokens))
	for _, t := range tokens {
		if t == "" {
			out.Failed++ // no device to send to, and nothing to prune
			continue
		}
		m := *base
		m.Token = t
		msgs = append(msgs, &m)
		sent = append(sent, t)
	}
	if len(msgs) == 0 {
		out.retryIn(retryAfter)
		return out
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.SendTimeout)
	defer cancel()
	br, err := c.client.SendEach(sctx, msgs)
	if err != nil {
		// The SDK refused the batch before sending: the message is wrong.
		out.Failed += len(msgs)
		out.payload = err
		out.retryIn(retryAfter)
		return out
	}

	for i, r := range br.Responses {
		token := sent[i]
		if r.Success {
			out.Sent++
			continue
		}
		switch classify(r.Error) {
		case classDead:
			out.Dead = append(out.Dead, token)
		case classInvalid:
			switch field := violatedField(r.Error); {
			case field == "message.token":
				out.Dead = append(out.Dead, token)
			case field != "":
				out.Failed++
				out.payload = r.Error
			default:
				out.suspect = append(out.suspect, token)
			}
		case classQuota:
			out.Retry = append(out.Retry, token)
			out.quota++
			retryAfter = max(retryAfter, headerRetryAfter(r.Error))
		case classRetry:
			out.Retry = append(out.Retry, token)
			retryAfter = max(retryAfter, headerRetryAfter(r.Error))
		case classAuth:
			out.Retry = append(out.Retry, token)
			out.auth++
		case classThirdPartyAuth:
			out.AuthFailed++
		default:
			out.Failed++
			if out.other == nil {
				out.other = r.Error
			}
		}
	}
	out.retryIn(retryAfter)
	return out
}

// retryIn sets how long to wait before retrying, when tokens are left to
// retry: wait, or the backoff when nobody said how long.
func (o *outcome) retryIn(wait time.Duration) {
	if len(o.Retry) > 0 {
		if wait <= 0 {
			wait = backoff(o.quota > 0)
		}
		o.RetryAfter = wait
	}
}

// merge adds up the batches and decides whether the call as a whole failed.
func (c *Channel) merge(ctx context.Context, a alert.Alert, outs []outcome, total int) (Result, error) {
	var res Result
	var suspect []string
	quota, auth := 0, 0
	var payload, other, cause error
	for _, o := range outs {
		res.Sent += o.Sent
		res.Dead = append(res.Dead, o.Dead...)
		res.Retry = append(res.Retry, o.Retry...)
		res.RetryAfter = max(res.RetryAfter, o.RetryAfter)
		res.AuthFailed += o.AuthFailed
		res.Failed += o.Failed
		suspect = append(suspect, o.suspect...)
		quota += o.quota
		auth += o.auth
		if payload == nil {
			payload = o.payload
		}
		if cause == nil {
			cause = o.cause
		}
		if other == nil {
			other = o.other
		}
	}
	// FCM answers INVALID_ARGUMENT both for a malformed token and for a
	// bad message. Every token got the same message, so when any was
	// accepted the message is fine and these tokens are what is wrong.
	if res.Sent > 0 {
		res.Dead = append(res.Dead, suspect...)
	} else {
		res.Failed += len(suspect)
		if len(suspect) > 0 && payload == nil {
			payload = errors.New("INVALID_ARGUMENT for every device")
		}
	}
	if payload != nil {
		c.log.Error("FCM refused the alert's message itself; no device can get it", "alert_id", a.ID, "err", payload)
	}
	if other != nil {
		c.log.Warn("FCM refused messages", "alert_id", a.ID, "failed", res.Failed, "first_err", other)
	}
	if res.AuthFailed > 0 {
		c.log.Error("APNs or web push refused the Firebase project's credentials: those devices get nothing "+
			"until the APNs key or web push certificate in the Firebase console is fixed",
			"alert_id", a.ID, "messages", res.AuthFailed)
	}
	if auth > 0 {
		c.log.Error("FCM refused Ajil's credentials: check the service account's key and its "+
			"Firebase Cloud Messaging permission", "alert_id", a.ID, "messages", auth)
	}

	if len(res.Retry) < total {
		return res, nil
	}
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("fcm: send %s: %w", a.ID, context.Cause(ctx))
	case auth == total:
		return res, fmt.Errorf("fcm: send %s: %w", a.ID, ErrAuth)
	case quota > 0:
		return res, fmt.Errorf("fcm: send %s: %w, retry after %s", a.ID, ErrQuota, res.RetryAfter)
	case cause != nil:
		return res, fmt.Errorf("fcm: send %s: %w", a.ID, cause)
	default:
		return res, fmt.Errorf("fcm: send %s: %w, retry after %s", a.ID, ErrUnavailable, res.RetryAfter)
	}
}

// SendTopic sends a once to every device subscribed to the FCM topics of
// condition. Errors wrap ErrExpired, ErrQuota, ErrUnavailable or ErrAuth
// when they are one of those.
func (c *Channel) SendTopic(ctx context.Context, a alert.Alert, condition string) error {
	now := time.Now()
	if a.Expired(now) {
		return fmt.Errorf("%w: %s expired at %s", ErrExpired, a.ID, a.ExpiresAt().Format(time.RFC3339))
	}
	m := c.titles.topicMessage(a, condition, now)
	if c.cfg.LogOnly {
		c.logged.Add(1)
		c.log.Info("FCM log-only: push not sent", "alert_id", a.ID, "kind", a.Kind, "condition", condition,
			"title", title(m), "body", body(m))
		return nil
	}
	if c.cfg.Limiter != nil {
		lctx, cancel := context.WithTimeout(ctx, c.cfg.SendTimeout)
		err := c.cfg.Limiter.Wait(lctx, 1)
		cancel()
		if err != nil {
			return fmt.Errorf("fcm: topic send %s: %w", a.ID, err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.SendTimeout)
	defer cancel()
	_, err := c.client.Send(sctx, m)
	if err == nil {
		return nil
	}
	var sentinel error
	switch classify(err) {
	case classQuota:
		sentinel = ErrQuota
	case classRetry:
		sentinel = ErrUnavailable
	case classAuth, classThirdPartyAuth:
		c.log.Error("FCM refused the topic send's credentials", "alert_id", a.ID, "err", err)
		sentinel = ErrAuth
	default:
		return fmt.Errorf("fcm: topic send %s: %w", a.ID, err)
	}
	return fmt.Errorf("fcm: topic send %s: %w: %w", a.ID, sentinel, err)
}

// logSends is Send in log-only mode: one line per message.
func (c *Channel) logSends(a alert.Alert, tokens []string, now time.Time) {
	m := c.titles.message(a, "", now)
	for _, t := range tokens {
		c.log.Info("FCM log-only: push not sent", "alert_id", a.ID, "kind", a.Kind, "token", t,
			"title", title(m), "body", body(m))
	}
	c.logged.Add(int64(len(tokens)))
}

func title(m *messaging.Message) string {
	if m.Notification == nil {
		return ""
	}
	return m.Notification.Title
}

func body(m *messaging.Message) string {
	if m.Notification == nil {
		return ""
	}
	return m.Notification.Body
}

// class is what an FCM answer means for the token.
type class int

const (
	classFailed         class = iota // refused for good
	classDead                        // the token will never work again
	classInvalid                     // INVALID_ARGUMENT: the token or the message
	classQuota                       // over quota: retry later
	classRetry                       // FCM failed or was unreachable: retry later
	classAuth                        // FCM refused our credentials
	classThirdPartyAuth              // APNs or web push refused the project's credentials
)

// classify maps an SDK error to a class. FCM's own codes come first: a
// THIRD_PARTY_AUTH_ERROR also carries the platform code UNAUTHENTICATED.
func classify(err error) class {
	switch {
	case messaging.IsUnregistered(err), messaging.IsSenderIDMismatch(err):
		return classDead
	case messaging.IsThirdPartyAuthError(err):
		return classThirdPartyAuth
	case messaging.IsInvalidArgument(err):
		return classInvalid
	case messaging.IsQuotaExceeded(err), errorutils.IsResourceExhausted(err):
		return classQuota
	case messaging.IsUnavailable(err), messaging.IsInternal(err),
		errorutils.IsUnavailable(err), errorutils.IsInternal(err), errorutils.IsDeadlineExceeded(err),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return classRetry
	case errorutils.IsUnauthenticated(err), errorutils.IsPermissionDenied(err):
		return classAuth
	case errorutils.IsUnknown(err) && errorutils.HTTPResponse(err) == nil:
		return classRetry // a network error: the SDK gave up retrying it
	case errorutils.IsUnknown(err) && errorutils.HTTPResponse(err).StatusCode >= 500:
		return classRetry // 502, 504: a proxy in front of FCM
	}
	return classFailed
}

// violatedField is the field a google.rpc.BadRequest detail of the error
// names, or "".
func violatedField(err error) string {
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		return ""
	}
	var body struct {
		Error struct {
			Details []struct {
				Type            string `json:"@type"`
				FieldViolations []struct {
					Field string `json:"field"`
				} `json:"fieldViolations"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return ""
	}
	for _, d := range body.Error.Details {
		if d.Type == "type.googleapis.com/google.rpc.BadRequest" {
			for _, v := range d.FieldViolations {
				return v.Field
			}
		}
	}
	return ""
}

// headerRetryAfter is the Retry-After FCM sent with the error, or 0.
func headerRetryAfter(err error) time.Duration {
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		return 0
	}
	v := resp.Header.Get("Retry-After")
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// backoff is the wait before a retry FCM gave no Retry-After for, with up
// to half again of jitter so that replicas do not retry in step.
func backoff(quota bool) time.Duration {
	d := DefaultRetryBackoff
	if quota {
		d = DefaultQuotaBackoff
	}
	return d + rand.N(d/2)
}
