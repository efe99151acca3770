package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ajil-news/ajil/alert"
)

const (
	// statusEvery spaces out the status events of one alert's webhook
	// deliveries: ten a second keep a progress bar live, where a thousand
	// partners would otherwise cost a thousand summary reads and events.
	statusEvery = 100 * time.Millisecond
	// statusGateSize is how many alerts the gate remembers before it
	// forgets those that went quiet.
	statusGateSize = 1024
)

// statusGate decides which webhook deliveries publish a status event: the
// first of an alert, then at most one per statusEvery, and always the
// last. A skipped event loses nothing: followers also poll the status.
type statusGate struct {
	mu   sync.Mutex
	last map[string]time.Time // alert ID -> its last event
}

// due reports whether a delivery of alert id at now publishes an event;
// final marks the alert's last planned delivery.
func (g *statusGate) due(id string, now time.Time, final bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if final {
		delete(g.last, id)
		return true
	}
	if t, ok := g.last[id]; ok && now.Sub(t) < statusEvery {
		return false
	}
	if len(g.last) >= statusGateSize {
		for k, t := range g.last {
			if now.Sub(t) >= statusEvery {
				delete(g.last, k)
			}
		}
	}
	g.last[id] = now
	return true
}

// Status returns the progress of alert id from Redis.
func (d *Dispatcher) Status(ctx context.Context, id string) (alert.Status, error) {
	m, items, err := d.store.progress(ctx, id)
	if err != nil {
		return alert.Status{}, err
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(m[k], 10, 64); return v }
	t := func(k string) time.Time { v, _ := time.Parse(time.RFC3339Nano, m[k]); return v }
	return alert.Status{
		ID: id, Kind: alert.Kind(m["kind"]), State: m["state"], DuplicateOf: m["duplicate_of"],
		Items: int(n("items")), ItemsDone: int(items), Devices: n("devices"), Sent: n("sent"),
		Failed: n("failed"), Pruned: n("pruned"), Webhooks: n("webhooks"), Delivered: n("delivered"),
		CreatedAt: t("created_at"), DoneAt: t("done_at"),
	}, nil
}

// publishStatus publishes the current status of alert id on its status
// subject. Progress events are best effort: `ajil status` reads Redis.
func (d *Dispatcher) publishStatus(ctx context.Context, id string) {
	st, err := d.Status(ctx, id)
	if err != nil {
		d.log.Warn("read status", "alert_id", id, "err", err)
		return
	}
	data, _ := json.Marshal(st)
	if err := d.nc.Publish(alert.StatusSubject(id), data); err != nil {
		d.log.Warn("publish status", "alert_id", id, "err", err)
	}
}

// serveStatus answers status queries until ctx is done.
func (d *Dispatcher) serveStatus(ctx context.Context, queries <-chan *nats.Msg) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-queries:
			d.answerStatus(ctx, m)
		}
	}
}

// answerStatus answers a status query whose payload is an alert ID.
func (d *Dispatcher) answerStatus(ctx context.Context, m *nats.Msg) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.AckWait/3)
	defer cancel()
	var r alert.StatusReply
	st, err := d.Status(ctx, string(m.Data))
	switch {
	case errors.Is(err, errUnknownAlert):
		r.Error = alert.StatusUnknown
	case err != nil:
		r.Error = "status unavailable: " + err.Error()
	default:
		r.Status = &st
	}
	data, _ := json.Marshal(r)
	m.Respond(data)
}

// firstSend records, once per alert, the time from the editor's publish
// to the first push or webhook that left.
func (d *Dispatcher) firstSend(ctx context.Context, a alert.Alert) {
	now := d.now()
	ok, err := d.store.rdb.HSetNX(ctx, alertKey(a.ID), "first_sent_at", now.UTC().Format(time.RFC3339Nano)).Result()
	if err == nil && ok {
		d.metrics.PublishToFirst.Observe(now.Sub(a.CreatedAt).Seconds())
	}
}

// observeDone records the latencies of a finished fan-out.
func (d *Dispatcher) observeDone(ctx context.Context, id string) {
	st, err := d.Status(ctx, id)
	if err != nil || st.DoneAt.IsZero() {
		return
	}
	d.metrics.PublishToDone.Observe(st.DoneAt.Sub(st.CreatedAt).Seconds())
	if planned, err := d.store.rdb.HGet(ctx, alertKey(id), "planned_at").Result(); err == nil {
		if t, err := time.Parse(time.RFC3339Nano, planned); err == nil {
			d.metrics.FanoutDuration.Observe(st.DoneAt.Sub(t).Seconds())
		}
	}
}
