package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ajil-news/ajil/alert"
)

const (
	// DefaultPollInterval is how often Follow asks for the status besides
	// listening for events: events are best effort, the query is not.
	DefaultPollInterval = time.Second
	// queryTimeout bounds one status query; a dispatcher answers from
	// Redis in milliseconds.
	queryTimeout = 2 * time.Second
)

// ErrNoDispatcher means no dispatcher answered a status query.
var ErrNoDispatcher = errors.New("no dispatcher answered")

// ErrUnknownAlert means the dispatchers have no record of the alert (yet).
var ErrUnknownAlert = errors.New("unknown alert")

// QueryStatus asks the dispatchers for the status of alert id.
func QueryStatus(ctx context.Context, nc *nats.Conn, id string) (alert.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, alert.StatusQuerySubject, []byte(id))
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) {
		return alert.Status{}, fmt.Errorf("status of %s: %w", id, ErrNoDispatcher)
	}
	if err != nil {
		return alert.Status{}, fmt.Errorf("status of %s: %w", id, err)
	}
	var r alert.StatusReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return alert.Status{}, fmt.Errorf("status of %s: bad reply: %w", id, err)
	}
	switch {
	case r.Error == alert.StatusUnknown:
		return alert.Status{}, fmt.Errorf("status of %s: %w", id, ErrUnknownAlert)
	case r.Error != "":
		return alert.Status{}, fmt.Errorf("status of %s: %s", id, r.Error)
	case r.Status == nil:
		return alert.Status{}, fmt.Errorf("status of %s: empty reply", id)
	}
	return *r.Status, nil
}

// Follow reports the status of alert id to onStatus as it changes, until it
// is final (returned) or ctx is done. It listens to the alert's status
// events and polls every interval, so a missed event only delays it.
func Follow(ctx context.Context, nc *nats.Conn, id string, interval time.Duration, onStatus func(alert.Status)) (alert.Status, error) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	events := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(alert.StatusSubject(id), events)
	if err != nil {
		return alert.Status{}, fmt.Errorf("follow %s: %w", id, err)
	}
	defer sub.Unsubscribe()
	tick := time.NewTicker(interval)
	defer tick.Stop()

	var last alert.Status
	update := func(st alert.Status) bool {
		if st != last {
			last = st
			onStatus(st)
		}
		return st.Final()
	}
	query := func() (bool, error) {
		st, err := QueryStatus(ctx, nc, id)
		switch {
		case errors.Is(err, ErrUnknownAlert):
			return false, nil // not picked up yet
		case err != nil:
			return false, err
		}
		return update(st), nil
	}
	if final, err := query(); err != nil && !errors.Is(err, ErrNoDispatcher) {
		return last, err
	} else if final {
		return last, nil
	}
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case m := <-events:
			var st alert.Status
			if json.Unmarshal(m.Data, &st) == nil && update(st) {
				return last, nil
			}
		case <-tick.C:
			final, err := query()
			if err != nil && !errors.Is(err, ErrNoDispatcher) {
				return last, err
			}
			if final {
				return last, nil
			}
		}
	}
}
