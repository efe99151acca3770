package reliability_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
)

// `ajil serve --roles dispatcher` gets SIGTERM in the middle of a fan-out
// to 10,000 devices (20 work items, 16 sent at once), as in a rolling deploy. It stops fetching, lets the
// batches it is sending finish within --shutdown-timeout, hands back what
// it fetched but had not started, and exits 0. The next process finishes
// the fan-out at once, not after AckWait; no device misses the alert and
// none gets it twice.
func TestSIGTERMDuringFanout(t *testing.T) {
	e := newEnv(t, fcmtest.WithLatency(50*time.Millisecond))
	ns := natstest.Start(t)
	tokens := e.devices("s", 10_000, "breaking", "ar")
	flags := []string{"--roles", "dispatcher", "--shutdown-timeout", "20s", "--fcm-send-timeout", "15s"}
	p, _ := e.serve(ns.URL(), flags...)
	a := publishAlert(t, ns.JetStream(), alert.Alert{Headline: "عاجل: تحويل حركة القطارات بعد عطل في الإشارات"})
	poll.Until(t, 30*time.Second, func() error {
		if n := e.fcm.Sent(); n < 2000 {
			return fmt.Errorf("%d sent so far", n)
		}
		return nil
	})
	atTerm := e.fcm.Sent()
	p.Signal(t, syscall.SIGTERM)
	termed := time.Now()
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	stopped := time.Since(termed)
	if strings.Contains(p.Stderr(), "panic") {
		t.Fatalf("the shutdown panicked:\n%s", p.Stderr())
	}
	atExit := e.fcm.Sent()
	e.serve(ns.URL(), flags...)
	restarted := time.Now()
	st := waitState(t, ns.Conn(), a.ID, "done", 2*dispatcher.DefaultAckWait)
	c := count(e.fcm, tokens, 1)
	t.Logf("SIGTERM after %d of 10000 sent; exited 0 in %s having sent %d; the next process finished in %s: %s; status sent %d",
		atTerm, stopped.Round(time.Millisecond), atExit, time.Since(restarted).Round(time.Millisecond), c, st.Sent)
	if c.Missed != 0 || c.Duplicated != 0 {
		t.Fatalf("%s; want every device once", c)
	}
	if el := time.Since(restarted); el > dispatcher.DefaultAckWait/2 {
		t.Fatalf("the next process took %s; the stopped one's work waited out AckWait", el)
	}
}

// An in-process replica stopped during a fan-out returns from Run within
// its grace period, and nothing it started keeps running (noLeaks checks
// the goroutines once the test's servers are gone); a second replica
// finishes the fan-out.
func TestStopDuringFanoutLeaksNothing(t *testing.T) {
	noLeaks(t)
	e := newEnv(t, fcmtest.WithLatency(50*time.Millisecond))
	ns := natstest.Start(t)
	tokens := e.devices("g", 2000, "breaking", "ar")
	const grace = 3 * time.Second
	stop := e.start(ns.Conn(), replica{Config: dispatcher.Config{Name: "a"}, Grace: grace})
	a := publishAlert(t, ns.JetStream(), alert.Alert{Headline: "عاجل: توقف حركة الملاحة في المضيق"})
	poll.Until(t, 30*time.Second, func() error {
		if n := e.fcm.Sent(); n < 400 {
			return fmt.Errorf("%d sent so far", n)
		}
		return nil
	})
	start := time.Now()
	stop()
	stopped := time.Since(start)
	if stopped > grace+2*time.Second {
		t.Fatalf("Run returned %s after the stop; the grace period is %s", stopped, grace)
	}
	e.start(ns.Conn(), replica{Config: dispatcher.Config{Name: "b"}})
	waitState(t, ns.Conn(), a.ID, "done", 30*time.Second)
	c := count(e.fcm, tokens, 1)
	t.Logf("stopped in %s (grace %s) during a fan-out; the next replica finished: %s", stopped.Round(time.Millisecond), grace, c)
	if c.Missed != 0 || c.Duplicated != 0 {
		t.Fatalf("%s; want every device once", c)
	}
}
