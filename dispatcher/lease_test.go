package dispatcher_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
)

// A replica that died while sending left its tokens leased; when its work
// item comes back, the next replica sends them as soon as the lease lapses,
// not half an AckWait later: after a crash, the in-flight devices wait
// AckWait, not one and a half.
func TestDeadReplicasLeaseWaitedOutExactly(t *testing.T) {
	w := newWorld(t)
	tokens := w.devices("d", 10, "breaking", "ar")
	a := alert.Alert{ID: "lease-1", Headline: "انقطاع المياه عن الأحياء الشرقية"}
	// The dead replica's claim, as the dispatcher writes it: its lease
	// lapses in 2s by Redis's clock.
	rdb := w.rdb.Client()
	now, err := rdb.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	lease := "c:dead/1/1:" + strconv.FormatInt(now.Add(2*time.Second).UnixMilli(), 10)
	for _, tok := range tokens {
		if err := rdb.HSet(t.Context(), "ajil:marks:{"+a.ID+"}", tok, lease).Err(); err != nil {
			t.Fatal(err)
		}
	}
	w.start(dispatcher.Config{AckWait: 30 * time.Second})
	start := time.Now()
	a = w.publish(a)
	if st := w.waitFinal(a.ID); st.State != "done" || st.Sent != 10 {
		t.Fatalf("status %+v; want done with 10 sent", st)
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Fatalf("done %s after the publish; the 2s lease was waited out as half of AckWait (15s)", el)
	}
	for _, tok := range tokens {
		if n := w.fcm.CountFor(tok); n != 1 {
			t.Fatalf("token %s got %d messages, want 1", tok, n)
		}
	}
}
