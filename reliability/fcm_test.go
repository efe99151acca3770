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
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
)

// sampler records a counter of the fake FCM every few milliseconds, to
// count what arrived in any window of time.
type sampler struct {
	at   []time.Time
	n    []int64
	stop chan struct{}
	done chan struct{}
}

const sampleEvery = 10 * time.Millisecond

func sample(read func() int64) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			s.at, s.n = append(s.at, time.Now()), append(s.n, read())
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() { close(s.stop); <-s.done }

// busiest is the largest count seen between two samples at most window
// apart, and where it began.
func (s *sampler) busiest(window time.Duration) (int64, time.Duration) {
	var most int64
	var at time.Duration
	j := 0
	for i := range s.at {
		for s.at[i].Sub(s.at[j]) > window {
			j++
		}
		if d := s.n[i] - s.n[j]; d > most {
			most, at = d, s.at[j].Sub(s.at[0])
		}
	}
	return most, at
}

// longestGap is the longest time the counter stood still while it had not
// reached target.
func (s *sampler) longestGap(target int64) time.Duration {
	var gap time.Duration
	last := 0
	for i := range s.at {
		if s.n[i] != s.n[last] || s.n[i] >= target {
			gap = max(gap, s.at[i].Sub(s.at[last]))
			last = i
		}
	}
	return gap
}

// faultWorld is one NATS server and two replicas over one Redis, as a
// small production deployment runs.
type faultWorld struct {
	*env
	nats *natstest.Server
}

func newFaultWorld(t *testing.T, r replica, opts ...fcmtest.Option) *faultWorld {
	w := &faultWorld{env: newEnv(t, opts...), nats: natstest.Start(t)}
	for _, name := range []string{"a", "b"} {
		r.Config.Name = name
		w.start(w.nats.Conn(), r)
	}
	return w
}

func (w *faultWorld) publish(headline string) alert.Alert {
	return publishAlert(w.t, w.nats.JetStream(), alert.Alert{Headline: headline})
}

// A 429 storm: FCM refuses the first 300 requests for quota and asks for a
// second's pause each time. Every token still gets the alert once, each
// refused request is tried again once (no request beyond one per token
// plus one per refusal), and the retries wait for Retry-After.
func TestFCMQuotaStormHonoursRetryAfter(t *testing.T) {
	w := newFaultWorld(t, replica{})
	tokens := w.devices("q", 200, "breaking", "ar")
	const storm = 300
	w.fcm.SetRetryAfter(time.Second)
	w.fcm.FailNext(storm, fcmtest.QuotaExceeded)
	reqs := sample(w.fcm.Requests)
	start := time.Now()
	a := w.publish("عاصفة حصص: انقطاع الاتصالات في الشمال")
	st := waitState(t, w.nats.Conn(), a.ID, "done", 60*time.Second)
	took := time.Since(start)
	reqs.finish()
	c := count(w.fcm, tokens, 1)
	burst, _ := reqs.busiest(500 * time.Millisecond)
	t.Logf("429 storm of %d with Retry-After 1s: %s; %d requests in %s, at most %d in any 0.5s; status sent %d failed %d",
		storm, c, w.fcm.Requests(), took.Round(time.Millisecond), burst, st.Sent, st.Failed)
	if c.Missed != 0 || c.Duplicated != 0 {
		t.Fatalf("%s; want every token once", c)
	}
	if r := w.fcm.Requests(); r > int64(len(tokens)+storm) {
		t.Fatalf("%d requests for %d tokens through %d refusals: some were retried without being refused", r, len(tokens), storm)
	}
	// 200 tokens need two refused rounds: the last round cannot start
	// before two Retry-After pauses have passed.
	if took < 2*time.Second {
		t.Fatalf("done in %s; the retries did not wait for Retry-After", took)
	}
}

// A 503 storm: FCM answers Unavailable to everything for four seconds. The
// SDK retries with its backoff, Ajil with Retry-After; after the storm
// every token has the alert once, and during it the request rate stays far
// from a hot loop.
func TestFCMUnavailableStormBacksOff(t *testing.T) {
	w := newFaultWorld(t, replica{})
	tokens := w.devices("u", 200, "breaking", "ar")
	const stormFor = 4 * time.Second
	w.fcm.SetRetryAfter(time.Second)
	w.fcm.FailNext(1<<30, fcmtest.Unavailable)
	reqs := sample(w.fcm.Requests)
	a := w.publish("عاصفة أعطال: توقف الخدمة في المطار")
	time.Sleep(stormFor) // the storm's length is the scenario, not a wait for a condition
	during := w.fcm.Requests()
	w.fcm.FailNext(0, "")
	st := waitState(t, w.nats.Conn(), a.ID, "done", 60*time.Second)
	reqs.finish()
	c := count(w.fcm, tokens, 1)
	t.Logf("503 storm for %s with Retry-After 1s: %s; %d requests during the storm, %d in all; status sent %d failed %d",
		stormFor, c, during, w.fcm.Requests(), st.Sent, st.Failed)
	if c.Missed != 0 {
		t.Fatalf("%s; nothing may be lost", c)
	}
	// A request FCM took whose answer came too late (a loaded machine, the
	// SDK's own retries) is retried: such a token may get the alert twice,
	// never more, and always with the same collapse ID.
	if c.MaxPerTok > 2 {
		t.Fatalf("%s; a token got the alert more than twice", c)
	}
	for _, id := range collapseIDs(w.fcm) {
		if !strings.HasSuffix(id, ":"+a.ID) {
			t.Fatalf("collapse ID %s; every copy must replace the first on the phone", id)
		}
	}
	// Each token is tried at most once a second (the SDK's own retries
	// honour Retry-After too): a hot loop would send thousands.
	if limit := int64(len(tokens)) * int64(stormFor/time.Second+1); during > limit {
		t.Fatalf("%d requests during a %s storm for %d tokens; want at most %d", during, stormFor, len(tokens), limit)
	}
}

// Latency spikes: FCM takes 4s to answer for 5s, and the sends of 100
// messages (50 at a time) run into their 6s deadline. Nothing is lost;
// the work items are kept alive rather than redelivered (AckWait is 3s),
// and the tokens cut off by the deadline are retried. A message
// can be sent twice only when FCM took it but its answer came after the
// deadline: the token is then retried, so duplicates never outnumber the
// retried tokens, and they carry the same collapse ID, so the phone shows
// one notification.
func TestFCMLatencySpike(t *testing.T) {
	var retried retryCounter
	w := newFaultWorld(t, replica{Config: dispatcher.Config{AckWait: 3 * time.Second}, Pusher: retried.wrap}, fcmtest.WithLatency(5*time.Millisecond))
	tokens := w.devices("l", 400, "breaking", "ar")
	w.fcm.SetLatency(4 * time.Second)
	a := w.publish("تأخر الرحلات بسبب الضباب الكثيف")
	poll.Until(t, 30*time.Second, func() error {
		if n := w.fcm.Requests(); n < 100 {
			return fmt.Errorf("%d requests so far", n)
		}
		return nil
	})
	time.Sleep(5 * time.Second) // the spike's length is the scenario
	w.fcm.SetLatency(5 * time.Millisecond)
	st := waitState(t, w.nats.Conn(), a.ID, "done", 60*time.Second)
	c := count(w.fcm, tokens, 1)
	ids := collapseIDs(w.fcm)
	t.Logf("4s latency for 5s+, 6s send deadline, 3s AckWait: %s; %d tokens retried after a timeout; %d requests; status sent %d; collapse IDs %v",
		c, retried.Load(), w.fcm.Requests(), st.Sent, ids)
	if c.Missed != 0 {
		t.Fatalf("%s; nothing may be lost", c)
	}
	if int64(c.Duplicated) > retried.Load() || c.MaxPerTok > 2 {
		t.Fatalf("%s with %d tokens retried; duplicates beyond the retried tokens", c, retried.Load())
	}
	if want := []string{"apns:" + a.ID, "tag:" + a.ID}; !slices.Equal(ids, want) {
		t.Fatalf("collapse IDs %v, want %v", ids, want)
	}
}

// retryCounter counts the tokens a channel handed back to retry: those
// whose fate it does not know, or that FCM asked to send again.
type retryCounter struct{ atomic.Int64 }

func (r *retryCounter) wrap(p pusher) pusher { return retryCounting{p, r} }

type retryCounting struct {
	pusher
	n *retryCounter
}

func (p retryCounting) Send(ctx context.Context, a alert.Alert, tokens []string) (fcm.Result, error) {
	res, err := p.pusher.Send(ctx, a, tokens)
	p.n.Add(int64(len(res.Retry)))
	return res, err
}

// The project's quota, shared through Redis by two replicas at a small
// 3,600 messages a minute (60 a second, a second's burst), with sends cut
// at 6s (--fcm-send-timeout): one work item of 500 takes longer to admit
// than that. Every device of 600 gets the alert once, and the fake never
// sees more than the quota allows since the start: a second's burst plus
// 60 a second.
func TestFCMSharedQuotaNeverExceeded(t *testing.T) {
	const (
		perMinute = 3600
		perSecond = perMinute / 60
		burst     = perSecond
	)
	e := newEnv(t)
	nats := natstest.Start(t)
	for _, name := range []string{"a", "b"} {
		e.start(nats.Conn(), replica{
			Config: dispatcher.Config{Name: name, BatchSize: dispatcher.DefaultBatchSize},
			FCM:    fcm.Config{Limiter: fcm.NewRedisLimiter(e.rdb, perMinute)},
		})
	}
	tokens := e.devices("r", 600, "breaking", "ar")
	start := time.Now()
	reqs := sample(e.fcm.Requests)
	a := publishAlert(t, nats.JetStream(), alert.Alert{Headline: "حصة محدودة: خبر لستمئة جهاز"})
	st := waitState(t, nats.Conn(), a.ID, "done", 90*time.Second)
	took := time.Since(start)
	reqs.finish()
	c := count(e.fcm, tokens, 1)
	sec, _ := reqs.busiest(time.Second)
	tenSec, _ := reqs.busiest(10 * time.Second)
	t.Logf("quota %d/min over 2 replicas: %s in %s; %d requests; busiest second %d, busiest 10s %d; status sent %d failed %d",
		perMinute, c, took.Round(time.Millisecond), e.fcm.Requests(), sec, tenSec, st.Sent, st.Failed)
	if c.Missed != 0 || c.Duplicated != 0 {
		t.Fatalf("%s; want every token once", c)
	}
	for i, at := range reqs.at {
		if allowed := int64(burst + perSecond*at.Sub(start).Seconds()); reqs.n[i] > allowed {
			t.Fatalf("%d requests %s after the start; the quota allows %d", reqs.n[i], at.Sub(start), allowed)
		}
	}
	// The rate was the bottleneck: 600 messages at 60 a second.
	if minimum := time.Duration(float64(len(tokens)-burst) / perSecond * float64(time.Second)); took < minimum {
		t.Fatalf("done in %s; at the quota it takes at least %s", took, minimum)
	}
}
