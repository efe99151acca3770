package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/internal/redistest"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The firebase SDK's HTTP/2 transports and go-redis pools wind down
		// asynchronously after Close.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
	)
}

// world is a dispatcher's real surroundings: JetStream, Redis, the
// registry, and a fake FCM behind the real SDK.
type world struct {
	t    *testing.T
	nats *natstest.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	rdb  *redistest.Server
	reg  *subscribers.Registry
	fcm  *fcmtest.Server
	pub  *publisher.Publisher
	log  *slog.Logger
	// hooks, when set, turns on webhook delivery with this sender config.
	hooks *webhook.Config
}

func newWorld(t *testing.T, opts ...fcmtest.Option) *world {
	t.Helper()
	w := &world{t: t, nats: natstest.Start(t), rdb: redistest.Start(t), fcm: fcmtest.Start(t, opts...)}
	w.nc = w.nats.Conn()
	w.js = w.nats.JetStream()
	w.reg = subscribers.New(w.rdb.Client(), subscribers.Config{})
	w.pub = publisher.New(w.js, publisher.Config{})
	w.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return w
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// start runs a dispatcher replica until the returned stop is called or
// the test ends.
func (w *world) start(cfg dispatcher.Config) (stop func()) {
	w.t.Helper()
	ch, err := fcm.New(w.t.Context(), fcm.Config{CredentialsFile: w.fcm.CredentialsFile(w.t), Endpoint: w.fcm.Endpoint(), SendTimeout: 20 * time.Second}, w.log)
	if err != nil {
		w.t.Fatal(err)
	}
	nc := w.nats.Conn()
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 100 * time.Millisecond
	}
	deps := dispatcher.Deps{NATS: nc, Redis: w.rdb.Client(), Registry: w.reg, FCM: ch, Log: w.log}
	if w.hooks != nil {
		sender := webhook.NewSender(*w.hooks, w.log)
		w.t.Cleanup(sender.Close)
		deps.Webhooks = sender
		deps.Attempts = webhook.NewAttemptLog(w.rdb.Client(), 50)
	}
	d, err := dispatcher.New(cfg, deps)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := d.EnsureStreams(w.t.Context()); err != nil {
		w.t.Fatal(err)
	}
	stopRun := run(w.t, d, 2*time.Second)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopRun()
			nc.Close()
			ch.Close()
		})
	}
	w.t.Cleanup(stop)
	return stop
}

// run runs d with grace until the test ends or stop is called, failing
// the test if Run returns an error.
func run(t *testing.T, d *dispatcher.Dispatcher, grace time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, grace) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dispatcher: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// devices registers n devices following topic in lang and returns their tokens.
func (w *world) devices(prefix string, n int, topic, lang string) []string {
	w.t.Helper()
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("%s-%05d", prefix, i)
		if _, _, err := w.reg.Upsert(w.t.Context(), subscribers.Device{Token: tokens[i], Platform: subscribers.PlatformAndroid, Lang: lang, Topics: []string{topic}}); err != nil {
			w.t.Fatal(err)
		}
	}
	return tokens
}

func (w *world) publish(a alert.Alert) alert.Alert {
	w.t.Helper()
	a = a.WithDefaults(time.Now())
	if _, err := w.pub.Publish(w.t.Context(), a); err != nil {
		w.t.Fatal(err)
	}
	return a
}

// waitFinal follows the alert until its status is final.
func (w *world) waitFinal(id string) alert.Status {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 30*time.Second)
	defer cancel()
	st, err := publisher.Follow(ctx, w.nc, id, 50*time.Millisecond, func(alert.Status) {})
	if err != nil {
		w.t.Fatalf("alert %s: %v (last status %+v)", id, err, st)
	}
	return st
}

func TestFanoutReachesEveryFollowerOnce(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	followers := w.devices("ar-breaking", 1203, "breaking", "ar-EG")
	others := append(w.devices("ar-sports", 7, "sports", "ar"), w.devices("en-breaking", 5, "breaking", "en")...)

	a := w.publish(alert.Alert{Headline: "عاجل: زلزال بقوة 6 درجات يضرب جنوب تركيا", URL: "https://example.com/quake?x=1&y=2"})
	st := w.waitFinal(a.ID)
	if st.State != "done" || st.Devices != 1203 || st.Sent != 1203 || st.Items != 3 || st.ItemsDone != 3 {
		t.Fatalf("status %+v; want done with 1203 devices sent in 3 items", st)
	}
	for _, tok := range followers {
		if n := w.fcm.CountFor(tok); n != 1 {
			t.Fatalf("token %s got %d messages, want 1", tok, n)
		}
	}
	for _, tok := range others {
		if n := w.fcm.CountFor(tok); n != 0 {
			t.Fatalf("token %s (not following) got %d messages", tok, n)
		}
	}
	m := w.fcm.Messages()[0].Message
	if m.Notification.Body != a.Headline || m.Notification.Title != "عاجل" {
		t.Errorf("notification %+v; want the Arabic headline intact under the title عاجل", m.Notification)
	}
	if m.Android.Notification.Tag != a.ID || m.APNS.Headers["apns-collapse-id"] != a.ID {
		t.Errorf("tag %q collapse %q; want the alert ID", m.Android.Notification.Tag, m.APNS.Headers["apns-collapse-id"])
	}
	if m.Data["url"] != a.URL || m.Data["id"] != a.ID || m.Data["dir"] != "rtl" {
		t.Errorf("data %v", m.Data)
	}
}

func TestSameAlertTwiceDeliversOnce(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	tokens := w.devices("d", 20, "breaking", "ar")
	a := w.publish(alert.Alert{ID: "fire-1", Headline: "حريق في مبنى حكومي"})
	w.waitFinal(a.ID)
	// A re-publish after JetStream's duplicate window reaches the stream
	// again; the dispatcher must still not plan it twice.
	st, err := w.js.Stream(t.Context(), publisher.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	raw, _ := alert.Encode(a)
	if _, err := w.js.Publish(t.Context(), a.Subject(), raw); err != nil {
		t.Fatal(err)
	}
	marker := w.publish(alert.Alert{Headline: "خبر آخر مختلف تماما"})
	w.waitFinal(marker.ID)
	for _, tok := range tokens {
		if n := w.fcm.CountFor(tok); n != 2 {
			t.Fatalf("token %s got %d messages, want 2 (the fire once, the marker once)", tok, n)
		}
	}
}

func TestDuplicateStorySuppressed(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	tokens := w.devices("d", 10, "breaking", "ar")
	first := w.publish(alert.Alert{Headline: "الرئيس يعلن حالة الطوارئ في البلاد"})
	w.waitFinal(first.ID)
	// The same story typed by a colleague: diacritics, tatweel, another alef.
	second := w.publish(alert.Alert{Headline: "الرَّئيس يُعلـــن حالة الطّوارئ في البلاد!"})
	st := w.waitFinal(second.ID)
	if st.State != "suppressed" || st.DuplicateOf != first.ID {
		t.Fatalf("second status %+v; want suppressed as a duplicate of %s", st, first.ID)
	}
	forced := w.publish(alert.Alert{Headline: "الرئيس يعلن حالة الطوارئ في البلاد", Force: true})
	if st := w.waitFinal(forced.ID); st.State != "done" {
		t.Fatalf("forced status %+v; want done", st)
	}
	for _, tok := range tokens {
		if n := w.fcm.CountFor(tok); n != 2 {
			t.Fatalf("token %s got %d messages, want 2 (first and forced)", tok, n)
		}
	}
}

func TestDeadTokensPruned(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	tokens := w.devices("d", 30, "breaking", "ar")
	w.fcm.FailToken(tokens[3], fcmtest.Unregistered)
	w.fcm.FailToken(tokens[7], fcmtest.SenderIDMismatch)
	a := w.publish(alert.Alert{Headline: "انقطاع الكهرباء عن العاصمة"})
	st := w.waitFinal(a.ID)
	if st.Sent != 28 || st.Pruned != 2 {
		t.Fatalf("status %+v; want 28 sent, 2 pruned", st)
	}
	for _, tok := range []string{tokens[3], tokens[7]} {
		if _, err := w.reg.Device(t.Context(), tok); !errors.Is(err, subscribers.ErrNotFound) {
			t.Errorf("dead token %s still registered (err %v)", tok, err)
		}
	}
	if n, _ := w.reg.Count(t.Context(), "breaking", "ar"); n != 28 {
		t.Errorf("audience %d after pruning, want 28", n)
	}
}

func TestQuotaRetriesAfterRetryAfter(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	tokens := w.devices("d", 10, "breaking", "ar")
	w.fcm.SetRetryAfter(time.Second)
	w.fcm.FailNext(3, fcmtest.QuotaExceeded)
	start := time.Now()
	a := w.publish(alert.Alert{Headline: "ارتفاع أسعار الوقود"})
	st := w.waitFinal(a.ID)
	if st.Sent != 10 {
		t.Fatalf("status %+v; want all 10 sent after the quota lifted", st)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("done after %s; the retry did not wait for Retry-After", el)
	}
	for _, tok := range tokens {
		if n := w.fcm.CountFor(tok); n != 1 {
			t.Fatalf("token %s delivered %d times, want 1", tok, n)
		}
	}
	// 10 first attempts, 3 of them refused, and 3 retries: no hot loop.
	if r := w.fcm.Requests(); r > 13 {
		t.Fatalf("%d requests to FCM, want at most 13", r)
	}
}

func TestUnavailableStormBacksOff(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	w.devices("d", 5, "breaking", "ar")
	w.fcm.FailNext(40, fcmtest.Unavailable)
	a := w.publish(alert.Alert{Headline: "إغلاق المطار بسبب العاصفة"})
	st := w.waitFinal(a.ID)
	if st.Sent != 5 {
		t.Fatalf("status %+v; want all 5 sent once the storm passed", st)
	}
	if r := w.fcm.Requests(); r > 60 {
		t.Fatalf("%d requests for 5 tokens through a 40-error storm: hot loop", r)
	}
}

func TestExpiredAlertNotSent(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	w.devices("d", 5, "breaking", "ar")
	a := w.publish(alert.Alert{Headline: "خبر قديم", TTL: time.Minute, CreatedAt: time.Now().Add(-2 * time.Minute)})
	st := w.waitFinal(a.ID)
	if st.State != "expired" {
		t.Fatalf("status %+v; want expired", st)
	}
	if r := w.fcm.Requests(); r != 0 {
		t.Fatalf("%d requests to FCM for an expired alert", r)
	}
}

func TestGarbageDoesNotBlockNextAlert(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	tokens := w.devices("d", 3, "breaking", "ar")
	if _, err := publisher.EnsureStream(t.Context(), w.js, publisher.Config{}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{[]byte("not json"), []byte(`{"v":99}`), {0xff, 0xfe}} {
		if _, err := w.js.Publish(t.Context(), "ajil.alerts.breaking", bad); err != nil {
			t.Fatal(err)
		}
	}
	a := w.publish(alert.Alert{Headline: "خبر سليم بعد رسائل تالفة"})
	w.waitFinal(a.ID)
	for _, tok := range tokens {
		if n := w.fcm.CountFor(tok); n != 1 {
			t.Fatalf("token %s got %d messages, want 1", tok, n)
		}
	}
	poll.Until(t, 5*time.Second, func() error {
		dead := natstest.Messages(t.Context(), t, w.js, dispatcher.DefaultDeadStream)
		if len(dead) != 3 {
			return fmt.Errorf("%d dead letters, want 3", len(dead))
		}
		for _, m := range dead {
			if m.Header.Get(dispatcher.HeaderReason) == "" {
				return fmt.Errorf("dead letter without a reason")
			}
		}
		return nil
	})
}

func TestCorrectionReplacesRetractionRemoves(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{})
	tokens := w.devices("d", 4, "sports", "ar")
	orig := w.publish(alert.Alert{ID: "match-1", Headline: "فوز المنتخب 2-0", Topics: []string{"sports"}})
	w.waitFinal(orig.ID)
	corr := w.publish(alert.Alert{Kind: alert.KindCorrected, Ref: orig.ID, Headline: "فوز المنتخب 3-0"})
	w.waitFinal(corr.ID)
	retr := w.publish(alert.Alert{Kind: alert.KindRetracted, Ref: orig.ID})
	w.waitFinal(retr.ID)

	for _, tok := range tokens {
		if n := w.fcm.CountFor(tok); n != 3 {
			t.Fatalf("token %s got %d messages, want 3 (the correction and retraction follow the original's topics)", tok, n)
		}
	}
	var corrMsg, retrMsg *fcmtest.Received
	for _, r := range w.fcm.Messages() {
		switch r.Message.Data["kind"] {
		case "corrected":
			corrMsg = &r
		case "retracted":
			retrMsg = &r
		}
	}
	if corrMsg == nil || corrMsg.Message.Android.Notification.Tag != orig.ID || corrMsg.Message.APNS.Headers["apns-collapse-id"] != orig.ID {
		t.Fatalf("correction does not reuse the original's tag and collapse ID: %+v", corrMsg)
	}
	if retrMsg == nil || retrMsg.Message.Notification != nil || retrMsg.Message.Data["ref"] != orig.ID {
		t.Fatalf("retraction is not a data message naming the original: %+v", retrMsg)
	}
}

func TestTopicMode(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{FCMMode: dispatcher.FCMTopic})
	a := w.publish(alert.Alert{Headline: "عاجل من الموضوع", Topics: []string{"breaking", "gaza"}})
	st := w.waitFinal(a.ID)
	msgs := w.fcm.Messages()
	if st.State != "done" || len(msgs) != 1 {
		t.Fatalf("status %+v, %d messages; want done with one topic send", st, len(msgs))
	}
	if want := "'breaking' in topics || 'gaza' in topics"; msgs[0].Condition != want {
		t.Fatalf("condition %q, want %q", msgs[0].Condition, want)
	}
}

func TestReplicaStoppedMidFanout(t *testing.T) {
	w := newWorld(t, fcmtest.WithLatency(20*time.Millisecond))
	tokens := w.devices("d", 3000, "breaking", "ar")
	stopA := w.start(dispatcher.Config{Name: "a", BatchSize: 100, Concurrency: 2})
	a := w.publish(alert.Alert{Headline: "انفجار قرب الميناء"})
	poll.Until(t, 20*time.Second, func() error {
		if n := w.fcm.Sent(); n < 500 {
			return fmt.Errorf("%d sent so far", n)
		}
		return nil
	})
	stopA()
	w.start(dispatcher.Config{Name: "b", BatchSize: 100, Concurrency: 2})
	st := w.waitFinal(a.ID)
	if st.State != "done" {
		t.Fatalf("status %+v", st)
	}
	missed, dup := 0, 0
	for _, tok := range tokens {
		switch n := w.fcm.CountFor(tok); {
		case n == 0:
			missed++
		case n > 1:
			dup += n - 1
		}
	}
	t.Logf("3000 tokens, replica stopped after %d+ sends: missed %d, duplicated %d", 500, missed, dup)
	if missed != 0 {
		t.Fatalf("%d tokens missed", missed)
	}
	// Only the items in flight when A stopped may repeat: 2 items of 100.
	if dup > 200 {
		t.Fatalf("%d duplicates; more than the in-flight work items", dup)
	}
	for _, r := range w.fcm.Messages() {
		if r.Message.Android.Notification.Tag != a.ID {
			t.Fatalf("a message with tag %q, want %q", r.Message.Android.Notification.Tag, a.ID)
		}
	}
}

func (w *world) status(id string) (alert.Status, error) {
	return publisher.QueryStatus(w.t.Context(), w.nc, id)
}

func TestTopicModeSplitsConditionsAtFCMLimit(t *testing.T) {
	w := newWorld(t)
	w.start(dispatcher.Config{FCMMode: dispatcher.FCMTopic})
	topics := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7"}
	a := w.publish(alert.Alert{Headline: "خبر لسبعة مواضيع", Topics: topics})
	st := w.waitFinal(a.ID)
	msgs := w.fcm.Messages()
	if st.State != "done" || len(msgs) != 2 {
		t.Fatalf("status %+v, %d sends; want done with two conditions of at most 5 topics", st, len(msgs))
	}
	for _, m := range msgs {
		if m.Error != "" {
			t.Fatalf("FCM refused condition %q: %s", m.Condition, m.Error)
		}
	}
}
