package fcm_test

import (
	"testing"
	"time"

	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/redistest"
)

// TestSmallQuotaSendsWhatItAdmits: at a quota too small to let a whole
// batch through before the send deadline, a send delivers what the rate
// admitted and retries only the rest, rather than spending the quota on
// waiting and sending nothing, attempt after attempt.
func TestSmallQuotaSendsWhatItAdmits(t *testing.T) {
	rdb := redistest.Start(t).Client()
	srv := fcmtest.Start(t)
	// 10 a second: 60 messages need 5 seconds, the deadline is 2.
	ch, _ := newChannel(t, srv, fcm.Config{Limiter: fcm.NewRedisLimiter(rdb, 600), SendTimeout: 2 * time.Second})
	const n = 60
	sent := 0
	for attempt := 1; sent < n; attempt++ {
		if attempt > 5 {
			t.Fatalf("%d of %d sent after %d attempts", sent, n, attempt-1)
		}
		res, err := ch.Send(t.Context(), breaking("a-1"), tokens("tok", n)[sent:])
		if err != nil {
			t.Fatalf("attempt %d: Send = %+v, %v; want some sent", attempt, res, err)
		}
		if res.Sent == 0 || res.Sent+len(res.Retry) != n-sent {
			t.Fatalf("attempt %d: %d sent, %d to retry of %d", attempt, res.Sent, len(res.Retry), n-sent)
		}
		if len(res.Retry) > 0 && (res.RetryAfter <= 0 || res.RetryAfter > 2*time.Second) {
			t.Fatalf("attempt %d: retry after %s, want about the next second's quota", attempt, res.RetryAfter)
		}
		sent += res.Sent
		time.Sleep(res.RetryAfter) // as the dispatcher's NakWithDelay would
	}
	if got := srv.Sent(); got != n {
		t.Fatalf("the fake got %d messages, want %d", got, n)
	}
}
