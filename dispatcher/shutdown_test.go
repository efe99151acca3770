package dispatcher_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/poll"
)

// A replica that stops mid-fan-out hands back the work items it fetched
// but had not started, so the next replica sends them at once instead of
// after AckWait: a rolling deploy must not hold breaking news for a minute.
func TestStoppedReplicaHandsBackFetchedWork(t *testing.T) {
	w := newWorld(t, fcmtest.WithLatency(20*time.Millisecond))
	tokens := w.devices("d", 3000, "breaking", "ar")
	cfg := dispatcher.Config{BatchSize: 100, Concurrency: 2, AckWait: 2 * time.Minute}
	cfg.Name = "a"
	stopA := w.start(cfg)
	a := w.publish(alert.Alert{Headline: "إغلاق الجسر الرئيسي بسبب الفيضان"})
	poll.Until(t, 20*time.Second, func() error {
		if n := w.fcm.Sent(); n < 500 {
			return fmt.Errorf("%d sent so far", n)
		}
		return nil
	})
	stopA()
	stopped := time.Now()
	cfg.Name = "b"
	w.start(cfg)
	if st := w.waitFinal(a.ID); st.State != "done" || st.Sent != 3000 {
		t.Fatalf("status %+v; want done with 3000 sent", st)
	}
	if el := time.Since(stopped); el > 20*time.Second {
		t.Fatalf("the next replica finished %s after the stop; fetched items waited out AckWait", el)
	}
	for _, tok := range tokens {
		if w.fcm.CountFor(tok) == 0 {
			t.Fatalf("token %s missed", tok)
		}
	}
}
