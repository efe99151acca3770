// Package dispatcher consumes alerts from the ALERTS stream, suppresses
// duplicates, resolves each alert's audience and plans its fan-out as work
// items on a JetStream work-queue stream, which every dispatcher replica
// consumes and delivers through its channels. Progress is kept in Redis
// and published on NATS for `ajil publish --wait`.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/metrics"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

const (
	// DefaultWorkStream holds the planned work items until a replica
	// delivers them.
	DefaultWorkStream = "AJIL_WORK"
	// DefaultDeadStream holds what could not be delivered or decoded, with
	// the reason, for operators to inspect and replay.
	DefaultDeadStream = "AJIL_DEAD"
	// DefaultAlertConsumer is the durable consumer every replica shares on
	// ALERTS; JetStream hands each alert to one of them.
	DefaultAlertConsumer = "dispatcher"
	// DefaultWorkConsumer is the durable consumer of FCM work items.
	DefaultWorkConsumer = "fcm"

	// DefaultAckWait is how long a replica may hold a message before
	// JetStream gives it to another: well over one FCM batch (bounded by
	// the channel's send timeout), short enough that a dead replica's
	// work moves on within a minute. Planning extends it with InProgress.
	DefaultAckWait = 45 * time.Second
	// DefaultMaxDeliver bounds redeliveries of one message: enough to ride
	// out a Redis or FCM outage of several minutes with the NakWithDelay
	// backoff, few enough that a poison message is dead-lettered soon.
	DefaultMaxDeliver = 12
	// DefaultDuplicateWindow is the content-dedup window: a second alert
	// for the same story within half an hour is a colleague's double send.
	DefaultDuplicateWindow = 30 * time.Minute
	// DefaultBatchSize is FCM's SendEach limit.
	DefaultBatchSize = 500
	// DefaultConcurrency is how many FCM work items one process has in
	// hand at once: as many as the FCM channel runs SendEach calls, so none
	// of its slots waits for an item. An item's Redis and NATS bookkeeping
	// takes milliseconds next to its batch's send (half a second at 50 ms a
	// request); with 4, a 50 ms FCM held a process to 4,000 messages a
	// second whatever the CPU (BENCHMARKS.md).
	DefaultConcurrency = fcm.DefaultConcurrency
	// DefaultWorkDuplicates is the work stream's Nats-Msg-Id window. It
	// must cover re-planning after a crash: a redelivered alert comes back
	// within AckWait times a few retries.
	DefaultWorkDuplicates = 30 * time.Minute
	// DefaultKeep is how long alert state and delivery marks outlive the
	// alert's TTL, so late redeliveries and `ajil status` still see them.
	DefaultKeep = 24 * time.Hour
	// DefaultRetryDelay is the first pause before a message whose Redis or
	// NATS calls failed is tried again; it doubles with every delivery, up
	// to maxRetryDelay.
	DefaultRetryDelay = 2 * time.Second
	// maxRetryDelay caps that pause: DefaultMaxDeliver deliveries then span
	// about seven minutes, longer than a Redis failover or restart.
	maxRetryDelay = time.Minute
)

// FCMMode says how an alert reaches devices.
type FCMMode string

const (
	// FCMTokens sends to every registered token, in batches: per-device
	// dedup, pruning and status.
	FCMTokens FCMMode = "tokens"
	// FCMTopic sends one request per alert to an FCM topic condition, for
	// apps that subscribe devices to FCM topics themselves.
	FCMTopic FCMMode = "topic"
)

// Config configures a dispatcher replica.
type Config struct {
	Name            string // this replica, for logs and claim tokens
	AlertStream     string
	WorkStream      string
	DeadStream      string
	AckWait         time.Duration
	MaxDeliver      int
	DuplicateWindow time.Duration
	BatchSize       int
	Concurrency     int
	HookConcurrency int
	Replicas        int // stream replicas: 1 on one server, 3 on a cluster
	FCMMode         FCMMode
	Keep            time.Duration
	RetryDelay      time.Duration
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Name == "" {
		c.Name = nats.NewInbox()[len(nats.InboxPrefix):]
	}
	if c.AlertStream == "" {
		c.AlertStream = publisher.DefaultStream
	}
	if c.WorkStream == "" {
		c.WorkStream = DefaultWorkStream
	}
	if c.DeadStream == "" {
		c.DeadStream = DefaultDeadStream
	}
	def(&c.AckWait, DefaultAckWait)
	def(&c.DuplicateWindow, DefaultDuplicateWindow)
	def(&c.Keep, DefaultKeep)
	def(&c.RetryDelay, DefaultRetryDelay)
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.BatchSize <= 0 || c.BatchSize > DefaultBatchSize {
		c.BatchSize = DefaultBatchSize
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.HookConcurrency <= 0 {
		c.HookConcurrency = DefaultHookConcurrency
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.FCMMode == "" {
		c.FCMMode = FCMTokens
	}
	return c
}

// audience is what the dispatcher needs of the subscriber registry.
type audience interface {
	Page(ctx context.Context, topic, lang string, after subscribers.Cursor, limit int) ([]string, subscribers.Cursor, error)
	RemoveTokens(ctx context.Context, tokens []string) (int, error)
}

// pusher sends one alert to a batch of device tokens, or to a topic.
type pusher interface {
	Send(ctx context.Context, a alert.Alert, tokens []string) (fcm.Result, error)
	SendTopic(ctx context.Context, a alert.Alert, condition string) error
}

var (
	_ registry = (*subscribers.Registry)(nil)
	_ pusher   = (*fcm.Channel)(nil)
)

// Deps are what a dispatcher replica works with.
type Deps struct {
	NATS     *nats.Conn
	Redis    redis.UniversalClient
	Registry registry
	FCM      pusher
	Webhooks hookSender          // nil: partner webhooks are not delivered
	Attempts *webhook.AttemptLog // nil: attempts are not logged
	Metrics  *metrics.Metrics    // nil: a private set nobody scrapes
	Log      *slog.Logger
}

// registry is what the dispatcher needs of the subscriber registry.
type registry interface {
	audience
	endpoints
}

// Dispatcher is one dispatcher replica.
type Dispatcher struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	store    *store
	reg      audience
	eps      endpoints
	push     pusher
	hooks    hookSender
	attempts *webhook.AttemptLog
	metrics  *metrics.Metrics
	log      *slog.Logger
	now      func() time.Time
	status   *statusGate
}

// New returns a dispatcher; Run starts it.
func New(cfg Config, deps Deps) (*Dispatcher, error) {
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: jetstream: %w", err)
	}
	if deps.Metrics == nil {
		deps.Metrics = metrics.New()
	}
	d := &Dispatcher{
		cfg: cfg.withDefaults(), nc: deps.NATS, js: js, store: &store{rdb: deps.Redis, errors: deps.Metrics.RedisErrors},
		reg: deps.Registry, push: deps.FCM, hooks: deps.Webhooks, attempts: deps.Attempts,
		metrics: deps.Metrics, log: deps.Log, now: time.Now, status: &statusGate{last: make(map[string]time.Time)},
	}
	if deps.Webhooks != nil {
		d.eps = deps.Registry
	}
	return d, nil
}

// EnsureStreams creates or updates the streams and durable consumers the
// dispatcher uses; every replica calls it on start.
func (d *Dispatcher) EnsureStreams(ctx context.Context) error {
	c := d.cfg
	if _, err := publisher.EnsureStream(ctx, d.js, publisher.Config{Stream: c.AlertStream, Replicas: c.Replicas}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, publisher.DefaultTimeout)
	defer cancel()
	streams := []jetstream.StreamConfig{{
		Name:        c.WorkStream,
		Description: "Ajil fan-out work items: FCM batches and webhook deliveries",
		Subjects:    []string{workSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  DefaultWorkDuplicates,
		Replicas:    c.Replicas,
	}, {
		Name:        c.DeadStream,
		Description: "Ajil dead letters: what could not be decoded or delivered, with the reason",
		Subjects:    []string{deadSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		MaxAge:      publisher.DefaultMaxAge,
		Replicas:    c.Replicas,
	}}
	for _, sc := range streams {
		if _, err := d.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	if _, err := d.js.CreateOrUpdateConsumer(ctx, c.AlertStream, jetstream.ConsumerConfig{
		Durable:       DefaultAlertConsumer,
		Description:   "Ajil dispatchers: dedup and plan each alert",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		FilterSubject: alert.SubjectPrefix + ">",
		MaxAckPending: 64,
	}); err != nil {
		return fmt.Errorf("ensure consumer %s: %w", DefaultAlertConsumer, err)
	}
	if _, err := d.js.CreateOrUpdateConsumer(ctx, c.WorkStream, jetstream.ConsumerConfig{
		Durable:       DefaultWorkConsumer,
		Description:   "Ajil dispatchers: FCM work items",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		FilterSubject: fcmSubject,
		MaxAckPending: 1024,
	}); err != nil {
		return fmt.Errorf("ensure consumer %s: %w", DefaultWorkConsumer, err)
	}
	if _, err := d.js.CreateOrUpdateConsumer(ctx, c.WorkStream, jetstream.ConsumerConfig{
		Durable:       DefaultHookConsumer,
		Description:   "Ajil dispatchers: webhook deliveries",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    DefaultHookMaxDeliver,
		FilterSubject: hookSubjectPrefix + ">",
		MaxAckPending: 4 * DefaultHookConcurrency,
	}); err != nil {
		return fmt.Errorf("ensure consumer %s: %w", DefaultHookConsumer, err)
	}
	return nil
}

// Run consumes alerts and work items until ctx is done, then stops
// fetching and lets in-flight work finish within grace before returning.
func (d *Dispatcher) Run(ctx context.Context, grace time.Duration) error {
	err := d.run(ctx, grace)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil // stopped while starting
	}
	return err
}

func (d *Dispatcher) run(ctx context.Context, grace time.Duration) error {
	if err := d.EnsureStreams(ctx); err != nil {
		return err
	}
	alerts, err := d.js.Consumer(ctx, d.cfg.AlertStream, DefaultAlertConsumer)
	if err != nil {
		return fmt.Errorf("dispatcher: alert consumer: %w", err)
	}
	work, err := d.js.Consumer(ctx, d.cfg.WorkStream, DefaultWorkConsumer)
	if err != nil {
		return fmt.Errorf("dispatcher: work consumer: %w", err)
	}
	queries := make(chan *nats.Msg, 64)
	sub, err := d.nc.ChanQueueSubscribe(alert.StatusQuerySubject, "ajil-dispatcher", queries)
	if err != nil {
		return fmt.Errorf("dispatcher: status responder: %w", err)
	}
	defer sub.Unsubscribe()

	// In-flight handlers run on a context that outlives ctx by grace, so a
	// shutdown finishes the batch it is sending instead of dropping it.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stopped := context.AfterFunc(ctx, func() { time.AfterFunc(grace, hcancel) })
	defer stopped()

	type loop struct {
		cons jetstream.Consumer
		n    int
		h    func(context.Context, jetstream.Msg)
	}
	loops := []loop{{alerts, 1, d.handleAlert}, {work, d.cfg.Concurrency, d.handleWork}}
	if d.hooks != nil {
		hooks, err := d.js.Consumer(ctx, d.cfg.WorkStream, DefaultHookConsumer)
		if err != nil {
			return fmt.Errorf("dispatcher: webhook consumer: %w", err)
		}
		loops = append(loops, loop{hooks, d.cfg.HookConcurrency, d.handleHook})
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.serveStatus(ctx, queries) })
	cons := make([]jetstream.Consumer, len(loops))
	for i, l := range loops {
		cons[i] = l.cons
	}
	wg.Go(func() { d.watchLag(ctx, cons...) })
	errs := make(chan error, len(loops))
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.consume(ctx, hctx, l.cons, l.n, l.h); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// consume feeds messages from cons to up to n concurrent handlers until
// ctx is done, then waits for the handlers, which run on hctx.
func (d *Dispatcher) consume(ctx, hctx context.Context, cons jetstream.Consumer, n int, handle func(context.Context, jetstream.Msg)) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(n))
	if err != nil {
		return fmt.Errorf("dispatcher: consume: %w", err)
	}
	// Drain, not Stop: the messages already fetched come out of Next and
	// are handed back below instead of waiting out AckWait.
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			d.metrics.NATSErrors.Inc()
			d.log.Warn("fetch failed", "err", err)
			continue
		}
		if ctx.Err() != nil {
			// Fetched but not started when the shutdown began: another
			// replica takes it now.
			msg.Nak()
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			msg.Nak()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d.safely(hctx, msg, handle)
		}()
	}
}

// safely runs handle, turning a panic into a delayed redelivery, so a
// poison message is retried a bounded number of times, then dead-lettered
// by the MaxDeliver check, and never takes the process down.
func (d *Dispatcher) safely(ctx context.Context, msg jetstream.Msg, handle func(context.Context, jetstream.Msg)) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("handler panicked", "subject", msg.Subject(), "panic", fmt.Sprint(r))
			if d.lastDelivery(msg) {
				d.deadLetter(ctx, msg, fmt.Sprintf("handler panicked: %v", r))
				return
			}
			msg.NakWithDelay(d.retryDelay(msg))
		}
	}()
	handle(ctx, msg)
}

// retryDelay is the pause before msg is tried again after a failure:
// RetryDelay, doubled for each earlier delivery up to maxRetryDelay, so
// that MaxDeliver attempts outlast an outage of minutes, not seconds.
func (d *Dispatcher) retryDelay(msg jetstream.Msg) time.Duration {
	delay, ceiling := d.cfg.RetryDelay, max(maxRetryDelay, d.cfg.RetryDelay)
	if md, err := msg.Metadata(); err == nil {
		for n := uint64(1); n < md.NumDelivered && delay < ceiling; n++ {
			delay *= 2
		}
	}
	return min(delay, ceiling)
}

// lastDelivery reports whether msg will not be redelivered again.
func (d *Dispatcher) lastDelivery(msg jetstream.Msg) bool {
	md, err := msg.Metadata()
	return err == nil && md.NumDelivered >= uint64(d.cfg.MaxDeliver)
}

// lagInterval is how often consumer lag is read for the metrics: as often
// as Prometheus usually scrapes.
const lagInterval = 15 * time.Second

// watchLag keeps the consumer lag gauges current until ctx is done.
func (d *Dispatcher) watchLag(ctx context.Context, consumers ...jetstream.Consumer) {
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	for {
		var redelivered float64
		for _, c := range consumers {
			ictx, cancel := context.WithTimeout(ctx, lagInterval/3)
			info, err := c.Info(ictx)
			cancel()
			if err != nil {
				continue
			}
			d.metrics.ConsumerPending.WithLabelValues(info.Name).Set(float64(info.NumPending))
			d.metrics.ConsumerAckPend.WithLabelValues(info.Name).Set(float64(info.NumAckPending))
			redelivered += float64(info.NumRedelivered)
		}
		d.metrics.RetriesPending.Set(redelivered)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
