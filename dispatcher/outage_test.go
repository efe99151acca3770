package dispatcher_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
)

// An alert published while Redis is down is planned and sent once Redis
// is back, even when the outage outlasts MaxDeliver attempts spaced by
// RetryDelay: the retries back off, so that the attempts span an outage
// of minutes (a Redis failover), not MaxDeliver times RetryDelay.
func TestRedisOutageOutlastingRetryDelay(t *testing.T) {
	w := newWorld(t)
	tokens := w.devices("d", 20, "breaking", "ar")
	ch, err := fcm.New(t.Context(), fcm.Config{CredentialsFile: w.fcm.CredentialsFile(t), Endpoint: w.fcm.Endpoint()}, w.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ch.Close)
	// A client that fails at once while Redis is down, so that attempts
	// are spaced by the dispatcher's delays, not go-redis's own retries.
	rdb := redis.NewClient(&redis.Options{Addr: w.rdb.Addr(), MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	// Without backoff 7 attempts span 0.6s, well inside the 1.5s outage;
	// with it they span 6.3s, room for a slow restart on a loaded machine.
	d, err := dispatcher.New(dispatcher.Config{MaxDeliver: 7, RetryDelay: 100 * time.Millisecond},
		dispatcher.Deps{NATS: w.nats.Conn(), Redis: rdb, Registry: w.reg, FCM: ch, Log: w.log})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d, time.Second)
	if err := d.EnsureStreams(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.rdb.Stop()
	a := w.publish(alert.Alert{Headline: "انقطاع التيار عن مركز البيانات"})
	time.Sleep(1500 * time.Millisecond) // the injected outage, not a wait for a condition
	w.rdb.Start()
	if st := w.waitFinal(a.ID); st.State != "done" || st.Sent != 20 {
		t.Fatalf("status %+v; want done with 20 sent", st)
	}
	for _, tok := range tokens {
		if n := w.fcm.CountFor(tok); n != 1 {
			t.Fatalf("token %s got %d messages, want 1", tok, n)
		}
	}
}
