package dispatcher_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/hooktest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/subscribers"
)

// shortSchedule keeps retry tests in milliseconds; production waits 5 s,
// 30 s, 2 m and on.
var shortSchedule = webhook.Schedule{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}

func newHookWorld(t *testing.T) *world {
	w := newWorld(t)
	w.hooks = &webhook.Config{AllowHTTP: true, AllowPrivate: true, Schedule: shortSchedule, Timeout: 2 * time.Second}
	w.reg = subscribers.New(w.rdb.Client(), subscribers.Config{AllowHTTP: true, AllowPrivate: true})
	return w
}

func (w *world) endpoint(r *hooktest.Receiver, f subscribers.Filter) subscribers.Endpoint {
	w.t.Helper()
	ep, err := w.reg.CreateEndpoint(w.t.Context(), subscribers.EndpointSpec{URL: r.URL(), Description: "شريك", Filter: f})
	if err != nil {
		w.t.Fatal(err)
	}
	return ep
}

func waitAccepted(t *testing.T, r *hooktest.Receiver, n int, timeout time.Duration) []hooktest.Delivery {
	t.Helper()
	poll.Until(t, timeout, func() error {
		if got := len(r.Accepted()); got < n {
			return fmt.Errorf("%d deliveries accepted, want %d", got, n)
		}
		return nil
	})
	return r.Accepted()
}

func TestWebhookSignedDelivery(t *testing.T) {
	w := newHookWorld(t)
	w.start(dispatcher.Config{})
	r := hooktest.Start(t)
	ep := w.endpoint(r, subscribers.Filter{})
	other := hooktest.Start(t)
	w.endpoint(other, subscribers.Filter{Topics: []string{"sports"}})

	a := w.publish(alert.Alert{Headline: "عاجل: انفجار في مرفأ بيروت & حريق", URL: "https://example.com/a?b=1&c=2"})
	got := waitAccepted(t, r, 1, 10*time.Second)[0]
	if err := hooktest.Verify(got, ep.Secret); err != nil {
		t.Fatalf("official verifier rejects the delivery: %v", err)
	}
	var p struct {
		Type string `json:"type"`
		Data struct {
			ID, Headline, URL, Dir string
		} `json:"data"`
	}
	if err := json.Unmarshal(got.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "alert.published" || p.Data.ID != a.ID || p.Data.Headline != a.Headline || p.Data.URL != a.URL || p.Data.Dir != "rtl" {
		t.Fatalf("payload %s", got.Body)
	}
	if got.Header.Get("webhook-id") != webhook.MessageID(a.ID, ep.ID) {
		t.Fatalf("webhook-id %q", got.Header.Get("webhook-id"))
	}
	st := w.waitFinal(a.ID)
	poll.Until(t, 5*time.Second, func() error {
		if st, _ = w.status(a.ID); st.Delivered != 1 || st.Webhooks != 1 {
			return fmt.Errorf("status %+v; want 1 webhook planned and delivered", st)
		}
		return nil
	})
	if n := len(other.Deliveries()); n != 0 {
		t.Fatalf("endpoint filtered to sports got %d deliveries", n)
	}
}

func TestWebhookRetriedWithSameID(t *testing.T) {
	w := newHookWorld(t)
	w.start(dispatcher.Config{})
	r := hooktest.Start(t)
	r.Fail(500, 503, 500)
	ep := w.endpoint(r, subscribers.Filter{})
	healthy := hooktest.Start(t)
	w.endpoint(healthy, subscribers.Filter{})

	a := w.publish(alert.Alert{Headline: "قصف على مدينة حلب"})
	waitAccepted(t, healthy, 1, 5*time.Second)
	waitAccepted(t, r, 1, 10*time.Second)
	all := r.Deliveries()
	if len(all) != 4 {
		t.Fatalf("%d requests, want 3 failures and 1 success", len(all))
	}
	for i, d := range all {
		if d.ID() != webhook.MessageID(a.ID, ep.ID) {
			t.Fatalf("attempt %d has webhook-id %q; it must not change across retries", i, d.ID())
		}
		if i > 0 && d.At.Sub(all[i-1].At) < 80*time.Millisecond {
			t.Fatalf("attempt %d came %s after the previous one; the schedule was not honoured", i, d.At.Sub(all[i-1].At))
		}
	}
	if string(all[0].Body) != string(all[3].Body) {
		t.Fatalf("the retried body differs from the first")
	}
	if n := len(healthy.Deliveries()); n != 1 {
		t.Fatalf("the healthy endpoint got %d deliveries, want 1", n)
	}
}

func TestWebhookGoneDisables(t *testing.T) {
	w := newHookWorld(t)
	w.start(dispatcher.Config{})
	r := hooktest.Start(t)
	r.Fail(http.StatusGone)
	ep := w.endpoint(r, subscribers.Filter{})
	w.publish(alert.Alert{Headline: "خبر أول"})
	poll.Until(t, 10*time.Second, func() error {
		got, err := w.reg.Endpoint(t.Context(), ep.ID)
		if err != nil {
			return err
		}
		if got.Enabled() {
			return fmt.Errorf("endpoint still enabled")
		}
		return nil
	})
	w.publish(alert.Alert{Headline: "خبر ثان مختلف"})
	b := w.publish(alert.Alert{Headline: "خبر ثالث مختلف أيضا"})
	w.waitFinal(b.ID)
	if n := len(r.Deliveries()); n != 1 {
		t.Fatalf("a disabled endpoint got %d requests, want only the one that answered 410", n)
	}
}

func TestWebhookRetrySurvivesRestart(t *testing.T) {
	w := newHookWorld(t)
	w.hooks.Schedule = webhook.Schedule{2 * time.Second}
	stop := w.start(dispatcher.Config{})
	r := hooktest.Start(t)
	r.Fail(503)
	w.endpoint(r, subscribers.Filter{})
	w.publish(alert.Alert{Headline: "خبر أثناء إعادة التشغيل"})
	poll.Until(t, 5*time.Second, func() error {
		if len(r.Deliveries()) < 1 {
			return fmt.Errorf("no attempt yet")
		}
		return nil
	})
	stop()
	w.start(dispatcher.Config{})
	got := waitAccepted(t, r, 1, 15*time.Second)
	if len(got) != 1 || len(r.Deliveries()) != 2 {
		t.Fatalf("%d accepted of %d requests; want the retry delivered once by the new process", len(got), len(r.Deliveries()))
	}
}

func TestWebhookExpiryStopsRetriesAndDeadLetters(t *testing.T) {
	w := newHookWorld(t)
	w.hooks.Schedule = webhook.Schedule{time.Hour}
	w.start(dispatcher.Config{})
	r := hooktest.Start(t)
	r.Fail(500)
	w.endpoint(r, subscribers.Filter{})
	w.publish(alert.Alert{Headline: "خبر ينتهي قريبا", TTL: time.Minute})
	poll.Until(t, 10*time.Second, func() error {
		dead := natstest.Messages(t.Context(), t, w.js, dispatcher.DefaultDeadStream)
		if len(dead) != 1 {
			return fmt.Errorf("%d dead letters, want 1", len(dead))
		}
		return nil
	})
	if n := len(r.Deliveries()); n != 1 {
		t.Fatalf("%d requests; the next retry (in an hour) falls after expiry and must not be scheduled", n)
	}
}

func TestWebhookCorrectionNeverOvertakesOriginal(t *testing.T) {
	w := newHookWorld(t)
	w.start(dispatcher.Config{})
	r := hooktest.Start(t)
	r.Fail(500, 500)
	w.endpoint(r, subscribers.Filter{})
	orig := w.publish(alert.Alert{ID: "vote-1", Headline: "نتائج الانتخابات: فوز الحزب أ"})
	w.publish(alert.Alert{Kind: alert.KindCorrected, Ref: orig.ID, Headline: "نتائج الانتخابات: فوز الحزب ب"})
	got := waitAccepted(t, r, 2, 15*time.Second)
	types := []string{}
	for _, d := range got {
		var p struct{ Type string }
		json.Unmarshal(d.Body, &p)
		types = append(types, p.Type)
	}
	if types[0] != "alert.published" || types[1] != "alert.corrected" {
		t.Fatalf("delivery order %v; the correction overtook its original", types)
	}
}

func TestWebhookHangingEndpointDelaysNobody(t *testing.T) {
	w := newHookWorld(t)
	w.hooks.Timeout = 20 * time.Second
	w.start(dispatcher.Config{})
	hang := hooktest.Start(t)
	hang.Hang()
	w.endpoint(hang, subscribers.Filter{})
	healthy := make([]*hooktest.Receiver, 99)
	for i := range healthy {
		healthy[i] = hooktest.Start(t)
		w.endpoint(healthy[i], subscribers.Filter{})
	}
	a := w.publish(alert.Alert{Headline: "خبر لكل الشركاء"})
	start := time.Now()
	poll.Until(t, 5*time.Second, func() error {
		for i, r := range healthy {
			if len(r.Accepted()) != 1 {
				return fmt.Errorf("healthy endpoint %d has nothing yet", i)
			}
		}
		return nil
	})
	if el := time.Since(start); el > time.Second {
		t.Fatalf("99 healthy endpoints took %s next to a hanging one; want under 1s", el)
	}
	_ = a
}

// A fan-out to many partners does not send a status event per delivery,
// yet the last event shows every one delivered: what `ajil publish --wait`
// and `ajil status` followers see.
func TestWebhookStatusEventsCoalesced(t *testing.T) {
	const endpoints = 100
	w := newHookWorld(t)
	w.start(dispatcher.Config{})
	receivers := make([]*hooktest.Receiver, endpoints)
	for i := range receivers {
		receivers[i] = hooktest.Start(t)
		w.endpoint(receivers[i], subscribers.Filter{})
	}
	a := alert.Alert{Headline: "عاجل: خبر يصل إلى مئة شريك"}.WithDefaults(time.Now())
	events := make(chan *nats.Msg, 4*endpoints)
	sub, err := w.nc.ChanSubscribe(alert.StatusSubject(a.ID), events)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	w.publish(a)

	var n int
	var last alert.Status
	deadline := time.After(30 * time.Second)
	for last.Delivered < endpoints {
		select {
		case m := <-events:
			n++
			if err := json.Unmarshal(m.Data, &last); err != nil {
				t.Fatalf("status event %s: %v", m.Data, err)
			}
		case <-deadline:
			t.Fatalf("after %d events the last says %d of %d delivered", n, last.Delivered, endpoints)
		}
	}
	if last.Webhooks != endpoints {
		t.Errorf("last event: %d webhooks planned, want %d", last.Webhooks, endpoints)
	}
	if n >= endpoints/2 {
		t.Errorf("%d status events for %d deliveries; want them coalesced", n, endpoints)
	}
	t.Logf("%d status events for %d deliveries", n, endpoints)
}
