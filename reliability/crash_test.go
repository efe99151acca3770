package reliability_test

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
)

// A dispatcher process (`ajil serve --roles dispatcher`, production
// settings but for the send deadline) is killed with SIGKILL a few seconds
// into a fan-out to 20,000 devices; a second process finishes it. No
// device misses the alert. The only repeats are devices of the work items
// that were being sent at the kill (at most Concurrency items of 500),
// never more than the pushes the killed process had sent, and every
// message carries the alert's collapse ID, so a repeat replaces the
// notification instead of adding one. The in-flight items wait out
// AckWait (45s) before the second process may take them, so this scenario
// runs in parallel.
//
// The fake FCM answers a few hundred messages a second under -race, far
// below FCM: with 16 batches of 500 in flight, the default 15s send
// deadline would cut batches short and add repeats that have nothing to
// do with the kill, so the processes run with --fcm-send-timeout 40s.
func TestDispatcherKilledMidFanout(t *testing.T) {
	t.Parallel()
	const devices = 20_000
	e := newEnv(t, fcmtest.WithLatency(50*time.Millisecond))
	ns := natstest.Start(t)
	tokens := e.devices("k", devices, "breaking", "ar")
	flags := []string{"--roles", "dispatcher", "--fcm-send-timeout", "40s"}
	first, _ := e.serve(ns.URL(), flags...)
	a := publishAlert(t, ns.JetStream(), alert.Alert{Headline: "عاجل: انهيار جسر في وسط المدينة وإغلاق الطرق المؤدية إليه"})
	poll.Until(t, 60*time.Second, func() error {
		if n := e.fcm.Sent(); n < devices/5 {
			return fmt.Errorf("%d sent so far", n)
		}
		return nil
	})
	atKill := e.fcm.Sent()
	first.Signal(t, syscall.SIGKILL)
	first.Wait(t, 10*time.Second)
	killed := time.Now()
	// What the killed process had handed to FCM still arrives.
	sentByKilled := settled(t, e.fcm.Sent)
	e.serve(ns.URL(), flags...)
	st := waitState(t, ns.Conn(), a.ID, "done", 4*dispatcher.DefaultAckWait)
	c := count(e.fcm, tokens, 1)
	ids := collapseIDs(e.fcm)
	t.Logf("SIGKILL after %d of %d sent (%d more in flight at FCM); second process done %s after the kill: %s; status items %d sent %d failed %d",
		atKill, devices, sentByKilled-atKill, time.Since(killed).Round(time.Second), c, st.Items, st.Sent, st.Failed)
	if c.Missed != 0 {
		t.Fatalf("%s: tokens missed", c)
	}
	if limit := min(dispatcher.DefaultConcurrency*dispatcher.DefaultBatchSize, int(sentByKilled)); c.Duplicated > limit || c.MaxPerTok > 2 {
		t.Fatalf("%s: more repeats than the %d pushes of the work items in flight", c, limit)
	}
	if want := []string{"apns:" + a.ID, "tag:" + a.ID}; !slices.Equal(ids, want) {
		t.Fatalf("collapse IDs %v, want only %v", ids, want)
	}
}
