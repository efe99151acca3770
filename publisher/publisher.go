// Package publisher turns editor input into alerts on the JetStream stream
// ALERTS, and follows an alert's fan-out for `ajil publish --wait`.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/alert"
)

const (
	// DefaultStream is the name of the stream that holds every alert.
	DefaultStream = "ALERTS"
	// DefaultDuplicates is JetStream's Nats-Msg-Id window: long enough to
	// cover an editor retrying a publish after a network error, short enough
	// to keep the server's ID table small. Later repeats are caught by the
	// dispatcher's alert-level dedup in Redis.
	DefaultDuplicates = 10 * time.Minute
	// DefaultMaxAge keeps a week of alerts for replay to partners and for
	// audits; alerts themselves expire much sooner.
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultReplicas suits a single server; production sets 3 on a cluster.
	DefaultReplicas = 1
	// DefaultTimeout bounds waiting for the PubAck: a healthy server answers
	// in milliseconds, a cluster electing a leader in a few seconds.
	DefaultTimeout = 10 * time.Second
)

// Subjects is the subject filter of the ALERTS stream.
const Subjects = alert.SubjectPrefix + ">"

// Errors the CLI branches on.
var (
	// ErrNoStream means the server answered but holds no ALERTS stream:
	// Ajil has not been started against it.
	ErrNoStream = errors.New("alerts stream not found")
	// ErrUnreachable means no NATS server answered.
	ErrUnreachable = errors.New("nats unreachable")
)

// Config configures the ALERTS stream and publishing to it.
type Config struct {
	Stream     string
	Duplicates time.Duration
	MaxAge     time.Duration
	Replicas   int
	Timeout    time.Duration
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// StreamConfig is the ALERTS stream as Ajil needs it.
func (c Config) StreamConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "Ajil breaking-news alerts as editors published them",
		Subjects:    []string{Subjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  c.Duplicates,
		MaxAge:      c.MaxAge,
		Replicas:    c.Replicas,
		MaxMsgSize:  alert.MaxWireBytes,
		Discard:     jetstream.DiscardOld,
	}
}

// EnsureStream creates the ALERTS stream, or updates it to cfg; it is safe
// to call from every process on every start.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	st, err := js.CreateOrUpdateStream(ctx, cfg.StreamConfig())
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Stream, err)
	}
	return st, nil
}

// Receipt is what JetStream said about a published alert.
type Receipt struct {
	ID        string // the alert's ID
	Stream    string
	Sequence  uint64
	Duplicate bool // JetStream already held an alert with this ID
}

// Publisher publishes alerts to the ALERTS stream.
type Publisher struct {
	js  jetstream.JetStream
	cfg Config
}

// New returns a Publisher on js.
func New(js jetstream.JetStream, cfg Config) *Publisher {
	return &Publisher{js: js, cfg: cfg.withDefaults()}
}

// Publish validates a and publishes it on its priority lane with
// Nats-Msg-Id = a.ID, waiting for the PubAck. An invalid alert is not
// published; the error holds an *alert.FieldError per problem.
func (p *Publisher) Publish(ctx context.Context, a alert.Alert) (Receipt, error) {
	if err := a.Validate(); err != nil {
		return Receipt{}, err
	}
	data, err := alert.Encode(a)
	if err != nil {
		return Receipt{}, err
	}
	msg := nats.NewMsg(a.Subject())
	msg.Data = data
	msg.Header.Set(HeaderKind, string(a.Kind))
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(a.ID), jetstream.WithExpectStream(p.cfg.Stream))
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return Receipt{}, fmt.Errorf("publish alert %s: %w", a.ID, ErrNoStream)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoServers):
		return Receipt{}, fmt.Errorf("publish alert %s: %w", a.ID, ErrUnreachable)
	case err != nil:
		return Receipt{}, fmt.Errorf("publish alert %s: %w", a.ID, err)
	}
	return Receipt{ID: a.ID, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// HeaderKind carries the alert's kind so tools can filter without decoding.
const HeaderKind = "Ajil-Kind"
