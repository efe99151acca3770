package reliability_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

// No content of an alert or work item makes the dispatcher panic (the
// decoders are fuzzed, the rest validates), so the poison is a fault in a
// dependency: a registry whose audience walk panics on one topic, as a
// bug in it would, and an FCM channel that panics on one token. Both sit
// in front of the real ones through dispatcher.Deps.

// panickyRegistry panics when the audience of topic is walked.
type panickyRegistry struct {
	registry
	topic string
	calls atomic.Int64
}

func (r *panickyRegistry) Page(ctx context.Context, topic, lang string, after subscribers.Cursor, limit int) ([]string, subscribers.Cursor, error) {
	if topic == r.topic {
		r.calls.Add(1)
		panic("audience index corrupt: " + topic)
	}
	return r.registry.Page(ctx, topic, lang, after, limit)
}

// panickyPusher panics when a batch of alert holds token.
type panickyPusher struct {
	pusher
	alert, token string
	calls        atomic.Int64
}

func (p *panickyPusher) Send(ctx context.Context, a alert.Alert, tokens []string) (fcm.Result, error) {
	for _, t := range tokens {
		if a.ID == p.alert && t == p.token {
			p.calls.Add(1)
			panic("send: unexpected token " + t)
		}
	}
	return p.pusher.Send(ctx, a, tokens)
}

// deadLetters returns the dead letters' reasons by original subject.
func deadLetters(t *testing.T, ns *natstest.Server) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range natstest.Messages(t.Context(), t, ns.JetStream(), dispatcher.DefaultDeadStream) {
		subj := m.Header.Get(dispatcher.HeaderOrigSubject)
		out[subj] = append(out[subj], m.Header.Get(dispatcher.HeaderReason))
	}
	return out
}

// An alert whose planning panics is recovered, retried MaxDeliver times,
// dead-lettered with the panic as its reason, and the alerts behind it
// are planned and delivered as if it were not there.
func TestPoisonAlertDeadLettered(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	ns := natstest.Start(t)
	const maxDeliver = 3
	reg := &panickyRegistry{topic: "poison"}
	e.start(ns.Conn(), replica{
		Config:   dispatcher.Config{Name: "a", MaxDeliver: maxDeliver},
		Registry: func(r registry) registry { reg.registry = r; return reg },
	})
	tokens := e.devices("p", 50, "breaking", "ar")
	js := ns.JetStream()
	poison := publishAlert(t, js, alert.Alert{Headline: "خبر يكسر الفهرس", Topics: []string{"poison"}})
	before := publishAlert(t, js, alert.Alert{Headline: "خبر سليم بعد الخبر المسموم"})
	waitState(t, ns.Conn(), before.ID, "done", 20*time.Second)
	var dead map[string][]string
	poll.Until(t, 20*time.Second, func() error {
		dead = deadLetters(t, ns)
		if len(dead[poison.Subject()]) != 1 {
			return fmt.Errorf("dead letters %v", dead)
		}
		return nil
	})
	after := publishAlert(t, js, alert.Alert{Headline: "خبر ثالث يصل رغم ذلك"})
	waitState(t, ns.Conn(), after.ID, "done", 20*time.Second)
	c := count(e.fcm, tokens, 2)
	t.Logf("poison alert: planning panicked %d times, dead-lettered with %q; the next 2 alerts: %s", reg.calls.Load(), dead[poison.Subject()][0], c)
	if n := reg.calls.Load(); n != maxDeliver {
		t.Errorf("planning ran %d times, want MaxDeliver (%d)", n, maxDeliver)
	}
	if reason := dead[poison.Subject()][0]; !strings.Contains(reason, "panicked") || !strings.Contains(reason, "audience index corrupt") {
		t.Errorf("dead letter reason %q does not say what panicked", reason)
	}
	if c.Missed != 0 || c.Duplicated != 0 {
		t.Fatalf("%s; want both healthy alerts once each", c)
	}
}

// A work item whose send panics is recovered, dead-lettered after
// MaxDeliver deliveries, and the other work items of the alert, and the
// next alert, are delivered. Only the poisoned batch's devices miss it,
// and the dead letter holds the batch for replay. (The alert's status
// stays "planned": a dead-lettered panic does not finish its item.)
func TestPoisonWorkItemDeadLettered(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	ns := natstest.Start(t)
	const maxDeliver = 3
	tokens := e.devices("w", 300, "breaking", "ar")
	push := &panickyPusher{alert: "poison-batch-1", token: tokens[150]}
	e.start(ns.Conn(), replica{
		// Batches of 100: the poison token is in one of three.
		Config: dispatcher.Config{Name: "a", MaxDeliver: maxDeliver, BatchSize: 100, AckWait: 2 * time.Second},
		Pusher: func(p pusher) pusher { push.pusher = p; return push },
	})
	js := ns.JetStream()
	a := publishAlert(t, js, alert.Alert{ID: push.alert, Headline: "خبر تتعطل دفعته الثانية"})
	var dead map[string][]string
	poll.Until(t, 30*time.Second, func() error {
		dead = deadLetters(t, ns)
		if len(dead["ajil.work.fcm"]) != 1 {
			return fmt.Errorf("dead letters %v", dead)
		}
		return nil
	})
	// The other batches finish; the alert stays planned, one item short.
	poll.Until(t, 20*time.Second, func() error {
		st, err := publisher.QueryStatus(t.Context(), ns.Conn(), a.ID)
		if err != nil || st.ItemsDone != 2 || st.Sent != 200 {
			return fmt.Errorf("status %+v, %v", st, err)
		}
		return nil
	})
	var missed []string
	for _, tok := range tokens {
		if e.fcm.CountFor(tok) == 0 {
			missed = append(missed, tok)
		}
	}
	first := count(e.fcm, tokens, 1)
	next := publishAlert(t, js, alert.Alert{Headline: "الخبر التالي يصل كاملا"})
	waitState(t, ns.Conn(), next.ID, "done", 20*time.Second)
	both := count(e.fcm, tokens, 2)
	t.Logf("poison work item: send panicked %d times, dead-lettered with %q; poisoned alert: %s; after the next alert: %s",
		push.calls.Load(), dead["ajil.work.fcm"][0], first, both)
	if n := push.calls.Load(); n < 1 || n > maxDeliver {
		t.Errorf("the send panicked %d times, want 1 to MaxDeliver (%d)", n, maxDeliver)
	}
	if reason := dead["ajil.work.fcm"][0]; !strings.Contains(reason, "panicked") {
		t.Errorf("dead letter reason %q does not say the handler panicked", reason)
	}
	if first.Missed != 100 || first.Duplicated != 0 || !slices.Contains(missed, push.token) {
		t.Fatalf("poisoned alert: %s; want exactly the poisoned batch of 100, with %s, to miss it", first, push.token)
	}
	if both.Missed != 100 || both.Duplicated != 0 {
		t.Fatalf("after the next alert: %s; want it everywhere once", both)
	}
}
