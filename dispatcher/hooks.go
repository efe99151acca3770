package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/subscribers"
)

const (
	// DefaultHookConsumer is the durable consumer of webhook deliveries.
	DefaultHookConsumer = "webhook"
	// DefaultHookConcurrency is how many webhook deliveries one process
	// has open: a request is cheap, and the sender's per-endpoint cap keeps
	// a hanging partner from holding more than a few of them.
	DefaultHookConcurrency = 256
	// DefaultHookMaxDeliver bounds retries of one delivery; the alert's
	// expiry usually ends them first (hourly retries of a 28-day alert
	// stay under it).
	DefaultHookMaxDeliver = 1000
	// orderWait is the first pause of a correction waiting for its
	// original to settle at the same endpoint; it doubles up to a minute.
	orderWait = 250 * time.Millisecond

	hookSubjectPrefix = workSubjectPrefix + "webhook."
)

// endpoints is what the webhook side needs of the registry.
type endpoints interface {
	Endpoints(ctx context.Context) ([]subscribers.Endpoint, error)
	Endpoint(ctx context.Context, id string) (subscribers.Endpoint, error)
	DisableEndpoint(ctx context.Context, id, reason string) (subscribers.Endpoint, error)
}

// hookSender delivers one signed webhook.
type hookSender interface {
	Deliver(ctx context.Context, d webhook.Delivery) webhook.Result
	Backoff(attempt int, r webhook.Result) time.Duration
	DisableAfter() time.Duration
}

var (
	_ endpoints  = (*subscribers.Registry)(nil)
	_ hookSender = (*webhook.Sender)(nil)
)

// hookItem is one webhook delivery on the work stream: an alert event for
// one endpoint.
type hookItem struct {
	V        int             `json:"v"`
	Alert    json.RawMessage `json:"alert"`
	Endpoint string          `json:"endpoint"`
	// Planned is the payload's timestamp, fixed at planning so that every
	// retry carries the same body.
	Planned time.Time `json:"planned"`
	// Replay re-sends an event already delivered, on an operator's request.
	Replay bool `json:"replay,omitempty"`
}

// HookSubject is the work subject of deliveries to endpoint id.
func HookSubject(id string) string { return hookSubjectPrefix + id }

func hookID(alertID, endpointID string) string { return alertID + "/webhook/" + endpointID }

// Webhook delivery states per (alert, endpoint), for ordering.
const (
	hookPending   = "pending"
	hookDelivered = "delivered"
	hookDead      = "dead"
)

func hooksKey(id string) string { return "ajil:hooks:{" + id + "}" }

// planHooks enqueues one delivery per enabled endpoint whose filters match
// the alert, recording each as pending first so that a later correction
// waits for it.
func (d *Dispatcher) planHooks(ctx context.Context, a, target alert.Alert, wire []byte, keep time.Duration) (int64, error) {
	if d.eps == nil {
		return 0, nil
	}
	eps, err := d.eps.Endpoints(ctx)
	if err != nil {
		return 0, fmt.Errorf("list endpoints: %w", err)
	}
	var matched []subscribers.Endpoint
	for _, ep := range eps {
		if ep.Matches(target) {
			matched = append(matched, ep)
		}
	}
	if len(matched) == 0 {
		return 0, nil
	}
	pipe := d.store.rdb.Pipeline()
	for _, ep := range matched {
		pipe.HSetNX(ctx, hooksKey(a.ID), ep.ID, hookPending)
	}
	pipe.PExpire(ctx, hooksKey(a.ID), keep)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("record webhooks: %w", err)
	}
	// One delivery per endpoint, published together and then awaited: a
	// thousand partners cost one round of acknowledgements, not a thousand.
	planned := d.now().UTC()
	acks := make([]jetstream.PubAckFuture, 0, len(matched))
	for _, ep := range matched {
		data, err := json.Marshal(hookItem{V: 1, Alert: wire, Endpoint: ep.ID, Planned: planned})
		if err != nil {
			return 0, fmt.Errorf("encode webhook item: %w", err)
		}
		f, err := d.js.PublishAsync(HookSubject(ep.ID), data, jetstream.WithMsgID(hookID(a.ID, ep.ID)))
		if err != nil {
			return 0, fmt.Errorf("enqueue webhook for %s: %w", ep.ID, err)
		}
		acks = append(acks, f)
	}
	timeout := time.After(d.cfg.AckWait / 3)
	for i, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			d.metrics.NATSErrors.Inc()
			return 0, fmt.Errorf("enqueue webhook for %s: %w", matched[i].ID, err)
		case <-timeout:
			return 0, fmt.Errorf("enqueue webhooks: no acknowledgement within %s", d.cfg.AckWait/3)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return int64(len(matched)), nil
}

// publishHook queues one webhook delivery with its message ID.
func publishHook(ctx context.Context, js jetstream.JetStream, msgID string, it hookItem) error {
	data, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("encode webhook item: %w", err)
	}
	if _, err := js.Publish(ctx, HookSubject(it.Endpoint), data, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("enqueue webhook for %s: %w", it.Endpoint, err)
	}
	return nil
}

// handleHook delivers one webhook work item.
func (d *Dispatcher) handleHook(ctx context.Context, msg jetstream.Msg) {
	var it hookItem
	err := json.Unmarshal(msg.Data(), &it)
	switch {
	case err != nil:
	case it.V != 1:
		err = fmt.Errorf("version %d, want 1", it.V)
	case it.Endpoint == "":
		err = errors.New("no endpoint")
	}
	if err != nil {
		d.reject(ctx, msg, fmt.Errorf("undecodable webhook item: %w", err))
		return
	}
	a, err := alert.Decode(it.Alert)
	if err != nil {
		d.reject(ctx, msg, err)
		return
	}
	log := d.log.With("alert_id", a.ID, "endpoint_id", it.Endpoint)
	// The endpoint and the delivery's state are read at once: both are on
	// the way of every webhook.
	type hookState struct {
		state string
		err   error
	}
	states := make(chan hookState, 1)
	go func() {
		state, err := d.store.rdb.HGet(ctx, hooksKey(a.ID), it.Endpoint).Result()
		states <- hookState{state, err}
	}()
	ep, err := d.eps.Endpoint(ctx, it.Endpoint)
	st := <-states
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		log.Info("endpoint deleted; delivery dropped")
		msg.Ack()
		return
	case err != nil:
		log.Warn("read endpoint failed; will retry", "err", err)
		msg.NakWithDelay(d.cfg.RetryDelay)
		return
	}
	if !ep.Enabled() {
		d.hookDead(ctx, msg, a, ep.ID, "endpoint disabled: "+ep.DisabledReason)
		return
	}
	if st.err != nil && !isNil(st.err) {
		msg.NakWithDelay(d.cfg.RetryDelay)
		return
	}
	if st.state == hookDelivered && !it.Replay {
		msg.Ack()
		return
	}
	if it.Replay && !ep.Matches(a) {
		msg.Ack() // a replay walks every alert; this one is filtered out
		return
	}
	now := d.now()
	if a.Expired(now) {
		d.hookDead(ctx, msg, a, ep.ID, "alert expired before delivery")
		return
	}
	if a.Kind != alert.KindPublished && a.Ref != "" {
		// A correction or retraction never overtakes its original.
		orig, err := d.store.rdb.HGet(ctx, hooksKey(a.Ref), ep.ID).Result()
		if err == nil && orig == hookPending {
			md, _ := msg.Metadata()
			wait := orderWait
			for i := uint64(1); md != nil && i < md.NumDelivered && wait < time.Minute; i++ {
				wait *= 2
			}
			msg.NakWithDelay(min(wait, time.Minute))
			return
		}
	}
	body, err := webhook.Payload(a, it.Planned)
	if err != nil {
		d.hookDead(ctx, msg, a, ep.ID, "payload: "+err.Error())
		return
	}
	md, err := msg.Metadata()
	if err != nil {
		msg.NakWithDelay(d.cfg.RetryDelay)
		return
	}
	attempt := int(md.NumDelivered)
	msgID := webhook.MessageID(a.ID, ep.ID)
	res := d.hooks.Deliver(ctx, webhook.Delivery{
		EndpointID: ep.ID, URL: ep.URL, Secrets: ep.SigningSecrets(now), MsgID: msgID, Body: body, Attempt: attempt,
	})
	d.metrics.WebhookDeliveries.WithLabelValues(res.Outcome.String()).Inc()
	errText := ""
	if res.Err != nil {
		errText = res.Err.Error()
	}
	at := webhook.Attempt{At: now, MsgID: msgID, AlertID: a.ID, Attempt: attempt,
		Status: res.Status, Latency: res.Latency, Outcome: res.Outcome, Error: errText}
	if res.Outcome == webhook.Delivered {
		d.hookDelivered(ctx, log, msg, a, ep.ID, at)
		return
	}
	if d.attempts != nil {
		if err := d.attempts.Record(ctx, ep.ID, at); err != nil {
			log.Warn("record attempt failed", "err", err)
		}
	}
	switch res.Outcome {
	case webhook.Gone:
		reason := fmt.Sprintf("endpoint answered %d Gone", res.Status)
		if _, err := d.eps.DisableEndpoint(ctx, ep.ID, reason); err != nil {
			log.Warn("disable endpoint failed", "err", err)
		}
		log.Warn("endpoint disabled", "reason", reason)
		d.hookDead(ctx, msg, a, ep.ID, reason)
	case webhook.Permanent, webhook.Forbidden:
		d.hookDead(ctx, msg, a, ep.ID, fmt.Sprintf("%s (status %d): %s", res.Outcome, res.Status, errText))
	default:
		d.hookRetry(ctx, msg, a, ep, attempt, res, errText)
	}
}

// hookDelivered records a delivered attempt, marks the delivery done and
// counts it, in one round trip as it is the common case, then acknowledges
// the work item.
func (d *Dispatcher) hookDelivered(ctx context.Context, log *slog.Logger, msg jetstream.Msg, a alert.Alert, endpointID string, at webhook.Attempt) {
	pipe := d.store.rdb.Pipeline()
	if d.attempts != nil {
		if err := d.attempts.Queue(ctx, pipe, endpointID, at); err != nil {
			log.Warn("record attempt failed", "err", err)
		}
	}
	rec := queueHookDelivered(ctx, pipe, a.ID, endpointID, at.At)
	// redis.Nil is the count of deliveries not yet written by planning.
	if _, err := pipe.Exec(ctx); err != nil && !isNil(err) {
		d.store.errors.Inc()
		log.Warn("record delivery failed", "err", err)
	}
	if rec.first.Val() {
		d.metrics.PublishToFirst.Observe(at.At.Sub(a.CreatedAt).Seconds())
	}
	msg.Ack()
	if d.status.due(a.ID, at.At, rec.delivered.Val() == rec.planned()) {
		d.publishStatus(ctx, a.ID)
	}
}

// hookRetry schedules the next attempt with NakWithDelay, so the retry
// survives a restart; or gives up when the endpoint has failed for too
// long, the next attempt would come after the alert's expiry, or the
// delivery count is spent.
func (d *Dispatcher) hookRetry(ctx context.Context, msg jetstream.Msg, a alert.Alert, ep subscribers.Endpoint, attempt int, res webhook.Result, errText string) {
	now := d.now()
	last := fmt.Sprintf("status %d: %s", res.Status, errText)
	if d.attempts != nil {
		since, err := d.attempts.Failing(ctx, ep.ID, now)
		if err == nil && now.Sub(since) >= d.hooks.DisableAfter() {
			reason := fmt.Sprintf("failing since %s; last error %s", since.UTC().Format(time.RFC3339), last)
			if _, err := d.eps.DisableEndpoint(ctx, ep.ID, reason); err != nil {
				d.log.Warn("disable endpoint failed", "endpoint_id", ep.ID, "err", err)
			}
			d.hookDead(ctx, msg, a, ep.ID, "endpoint disabled: "+reason)
			return
		}
	}
	delay := d.hooks.Backoff(attempt, res)
	if attempt >= DefaultHookMaxDeliver || now.Add(delay).After(a.ExpiresAt()) {
		d.hookDead(ctx, msg, a, ep.ID, "gave up at attempt "+fmt.Sprint(attempt)+"; last error "+last)
		return
	}
	msg.NakWithDelay(delay)
}

// hookDead dead-letters a delivery and records it as settled, so that the
// events queued behind it move on.
func (d *Dispatcher) hookDead(ctx context.Context, msg jetstream.Msg, a alert.Alert, endpointID, reason string) {
	d.store.rdb.HSet(ctx, hooksKey(a.ID), endpointID, hookDead)
	d.store.addCounts(ctx, a.ID, map[string]int64{"webhooks_dead": 1})
	d.deadLetter(ctx, msg, reason)
	d.publishStatus(ctx, a.ID)
}
