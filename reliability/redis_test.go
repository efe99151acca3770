package reliability_test

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/publisher"
)

// redisOutage is how long Redis stays down.
const redisOutage = 10 * time.Second

// The real redis-server is stopped for 10s in the middle of a fan-out to
// 2,000 devices, and an editor publishes a second alert while it is down.
// The two dispatcher replicas keep running and finish both alerts once
// Redis is back, with no device missing either; the only repeats are
// batches that were being sent when Redis went away, whose delivery marks
// could not be written. /readyz of an `ajil serve` process answers 503
// naming Redis during the outage and 200 after it, without a restart.
func TestRedisOutageMidFanout(t *testing.T) {
	noLeaks(t)
	e := newEnv(t, fcmtest.WithLatency(20*time.Millisecond))
	ns := natstest.Start(t)
	for _, name := range []string{"a", "b"} {
		e.start(ns.Conn(), replica{Config: dispatcher.Config{Name: name}})
	}
	proc, base := e.serve(ns.URL(), "--roles", "api")
	tokens := e.devices("o", 2000, "breaking", "ar")
	js := ns.JetStream()
	first := publishAlert(t, js, alert.Alert{Headline: "عاجل: إعصار يقترب من الساحل الشرقي"})
	poll.Until(t, 30*time.Second, func() error {
		if n := e.fcm.Sent(); n < 500 {
			return fmt.Errorf("%d sent so far", n)
		}
		return nil
	})
	e.redis.Stop()
	down := time.Now()
	atStop := e.fcm.Sent()
	var notReady time.Duration
	poll.Until(t, 5*time.Second, func() error {
		code, body := httpGet(base + "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "redis") {
			return fmt.Errorf("readyz %d %q with Redis down", code, body)
		}
		notReady = time.Since(down)
		return nil
	})
	if code, _ := httpGet(base + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz %d with Redis down; the process itself is alive", code)
	}
	// Editors publish to NATS, which is up.
	second := publishAlert(t, js, alert.Alert{Headline: "عاجل: إجلاء سكان القرى الساحلية"})
	time.Sleep(time.Until(down.Add(redisOutage))) // the outage
	e.redis.Start()
	up := time.Now()
	var ready time.Duration
	poll.Until(t, 15*time.Second, func() error {
		if code, body := httpGet(base + "/readyz"); code != http.StatusOK {
			return fmt.Errorf("readyz %d after Redis returned: %s", code, body)
		}
		ready = time.Since(up)
		return nil
	})
	st1 := waitState(t, ns.Conn(), first.ID, "done", 60*time.Second)
	st2 := waitState(t, ns.Conn(), second.ID, "done", 60*time.Second)
	c1, c2 := countAlert(e.fcm, first.ID, tokens), countAlert(e.fcm, second.ID, tokens)
	t.Logf("Redis down %s from %d of 2000 sent; readyz 503 after %s, 200 %s after the restart; both alerts done %s after it; first alert %s; second alert %s; status sent %d+%d",
		redisOutage, atStop, notReady.Round(time.Millisecond), ready.Round(time.Millisecond), time.Since(up).Round(time.Millisecond), c1, c2, st1.Sent, st2.Sent)
	if c1.Missed != 0 || c2.Missed != 0 {
		t.Fatalf("devices missed an alert: first %s; second %s", c1, c2)
	}
	if c1.MaxPerTok > 2 || c2.Duplicated != 0 {
		t.Fatalf("first alert %s, second %s; want repeats only of the first, at most once", c1, c2)
	}
	proc.Signal(t, syscall.SIGTERM)
	if code := proc.Wait(t, 20*time.Second); code != 0 {
		t.Errorf("ajil serve exited %d after SIGTERM", code)
	}
}

// Redis comes back empty in the middle of a fan-out, as after losing a
// node without replicas: the delivery marks, the alert's progress and the
// registry are gone. The work items already queued in JetStream still
// carry their devices, so every device still gets the alert; devices of
// items that were being sent may get it twice, since the marks that said
// so are lost. Devices register again, as apps do, and the next alert
// reaches each once.
func TestRedisRestartedEmpty(t *testing.T) {
	noLeaks(t)
	e := newEnv(t, fcmtest.WithLatency(20*time.Millisecond))
	ns := natstest.Start(t)
	for _, name := range []string{"a", "b"} {
		e.start(ns.Conn(), replica{Config: dispatcher.Config{Name: name}})
	}
	tokens := e.devices("w", 2000, "breaking", "ar")
	js := ns.JetStream()
	a := publishAlert(t, js, alert.Alert{Headline: "عاجل: زلزال يضرب المنطقة الجبلية"})
	// Wait until the whole audience is queued: a wipe during planning loses
	// the rest of the audience with the registry itself.
	poll.Until(t, 30*time.Second, func() error {
		st, err := publisher.QueryStatus(t.Context(), ns.Conn(), a.ID)
		if err != nil || st.State != "planned" || e.fcm.Sent() < 500 {
			return fmt.Errorf("status %+v, %v; %d sent", st, err, e.fcm.Sent())
		}
		return nil
	})
	atWipe := e.fcm.Sent()
	e.redis.Wipe()
	e.redis.Start()
	wiped := time.Now()
	var c tally
	poll.Until(t, 60*time.Second, func() error {
		if c = countAlert(e.fcm, a.ID, tokens); c.Missed != 0 {
			return fmt.Errorf("%s", c)
		}
		return nil
	})
	t.Logf("Redis wiped after %d of 2000 sent; every device had the alert %s later: %s", atWipe, time.Since(wiped).Round(time.Millisecond), c)
	if c.MaxPerTok > 2 {
		t.Fatalf("%s: a device got the alert three times", c)
	}
	e.devices("w", 2000, "breaking", "ar")
	next := publishAlert(t, js, alert.Alert{Headline: "عاجل: هزة ارتدادية بعد الزلزال"})
	waitState(t, ns.Conn(), next.ID, "done", 60*time.Second)
	if after := countAlert(e.fcm, next.ID, tokens); after.Missed != 0 || after.Duplicated != 0 {
		t.Fatalf("the next alert: %s; want every device once", after)
	}
}
