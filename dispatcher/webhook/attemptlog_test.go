package webhook_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/redistest"
)

func TestAttemptLog(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	log := webhook.NewAttemptLog(rdb, 3)
	ctx := t.Context()
	t0 := time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC)

	attempt := func(i int) webhook.Attempt {
		return webhook.Attempt{
			At: t0.Add(time.Duration(i) * time.Second), MsgID: webhook.MessageID(testAlertID, "ep_1"), AlertID: testAlertID,
			Attempt: i, Status: 500 + i, Latency: time.Duration(i) * time.Millisecond, Outcome: webhook.Retry,
			Error: fmt.Sprintf("webhook: endpoint answered %d: \"خطأ\"", 500+i),
		}
	}
	for i := 1; i <= 5; i++ {
		if err := log.Record(ctx, "ep_1", attempt(i)); err != nil {
			t.Fatal(err)
		}
	}
	delivered := webhook.Attempt{At: t0, MsgID: "msg_x", AlertID: "a2", Attempt: 1, Status: 204, Latency: time.Millisecond, Outcome: webhook.Delivered}
	if err := log.Record(ctx, "ep_2", delivered); err != nil {
		t.Fatal(err)
	}

	got, err := log.List(ctx, "ep_1", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []webhook.Attempt{attempt(5), attempt(4), attempt(3)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("List = %+v\nwant the last 3, newest first: %+v", got, want)
	}
	for i := range got {
		if !got[i].At.Equal(want[i].At) || got[i].Error != want[i].Error || got[i].Outcome != want[i].Outcome {
			t.Errorf("attempt %d came back as %+v", i, got[i])
		}
	}
	if got, _ := log.List(ctx, "ep_1", 2); len(got) != 2 || got[0].Attempt != 5 {
		t.Errorf("List n=2 = %+v", got)
	}
	if got, _ := log.List(ctx, "ep_1", 0); len(got) != 3 {
		t.Errorf("List n=0 = %d attempts, want all 3 kept", len(got))
	}
	if got, _ := log.List(ctx, "ep_2", 10); len(got) != 1 || got[0].Outcome != webhook.Delivered || got[0].Status != 204 {
		t.Errorf("other endpoint's log = %+v", got)
	}
	if got, err := log.List(ctx, "ep_never", 10); err != nil || len(got) != 0 {
		t.Errorf("unknown endpoint: %v, %v; want empty", got, err)
	}

	// The log of a deleted endpoint goes away on its own.
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		ttl, err := rdb.TTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > webhook.LogTTL {
			t.Errorf("key %s has TTL %s (%v), want up to %s", k, ttl, err, webhook.LogTTL)
		}
	}
	if n, _ := rdb.LLen(ctx, keys[0]).Result(); n > 3 {
		t.Errorf("key %s holds %d entries, over the 3 kept", keys[0], n)
	}
}

func TestAttemptLogDefaultKeep(t *testing.T) {
	rdb := redistest.Start(t).Client()
	log := webhook.NewAttemptLog(rdb, 0)
	for i := range webhook.DefaultKeep + 20 {
		if err := log.Record(t.Context(), "ep", webhook.Attempt{Attempt: i + 1, Outcome: webhook.Retry}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := log.List(t.Context(), "ep", 0)
	if err != nil || len(got) != webhook.DefaultKeep || got[0].Attempt != webhook.DefaultKeep+20 {
		t.Fatalf("List = %d attempts (%v), want the last %d", len(got), err, webhook.DefaultKeep)
	}
}

func TestFailing(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	log := webhook.NewAttemptLog(rdb, 10)
	ctx := t.Context()
	t0 := time.Date(2024, 3, 1, 9, 30, 0, 123456789, time.UTC)
	disableAfter := webhook.DefaultDisableAfter

	since := func(endpoint string, now time.Time) time.Time {
		t.Helper()
		s, err := log.Failing(ctx, endpoint, now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := since("ep_1", t0); !s.Equal(t0) {
		t.Fatalf("first failure: since %s, want %s", s, t0)
	}
	if s := since("ep_1", t0.Add(time.Hour)); !s.Equal(t0) {
		t.Fatalf("second failure: since %s, want the first's %s", s, t0)
	}
	if s := since("ep_2", t0.Add(time.Hour)); !s.Equal(t0.Add(time.Hour)) {
		t.Fatalf("another endpoint shares the mark: since %s", s)
	}
	late := t0.Add(disableAfter)
	if s := since("ep_1", late); late.Sub(s) < disableAfter {
		t.Fatalf("a day of failures: since %s, %s ago; want the caller to see %s", s, late.Sub(s), disableAfter)
	}

	delivered := webhook.Attempt{At: t0.Add(24 * time.Hour), MsgID: "msg_1", AlertID: "a1", Attempt: 9, Status: 200, Outcome: webhook.Delivered}
	if err := log.Record(ctx, "ep_1", delivered); err != nil {
		t.Fatal(err)
	}
	restart := t0.Add(25 * time.Hour)
	if s := since("ep_1", restart); !s.Equal(restart) {
		t.Fatalf("failure after a success: since %s, want a new count from %s", s, restart)
	}
	if err := log.Record(ctx, "ep_never_failed", delivered); err != nil {
		t.Fatalf("a delivery without a failure mark: %v", err)
	}
	if ttl, err := rdb.TTL(ctx, "ajil:webhook:failing:{ep_1}").Result(); err != nil || ttl <= 0 {
		t.Errorf("failure mark TTL %s (%v): a deleted endpoint's mark would stay forever", ttl, err)
	}

	// Dispatchers failing the same endpoint at once agree on the first failure.
	var wg sync.WaitGroup
	results := make([]time.Time, 20)
	for i := range results {
		wg.Go(func() {
			s, err := log.Failing(ctx, "ep_busy", t0.Add(time.Duration(i)*time.Second))
			if err != nil {
				t.Error(err)
			}
			results[i] = s
		})
	}
	wg.Wait()
	for _, s := range results {
		if !s.Equal(results[0]) {
			t.Fatalf("concurrent failures disagree: %v", results)
		}
	}

	// Without Redis the caller gets an error, not a zero time.
	noRetry := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer noRetry.Close()
	log = webhook.NewAttemptLog(noRetry, 10)
	srv.Stop()
	if _, err := log.Failing(ctx, "ep_1", t0); err == nil {
		t.Fatal("Failing without Redis returned no error")
	}
	if err := log.Record(ctx, "ep_1", webhook.Attempt{Outcome: webhook.Retry}); err == nil {
		t.Fatal("Record without Redis returned no error")
	}
	if _, err := log.List(ctx, "ep_1", 1); err == nil {
		t.Fatal("List without Redis returned no error")
	}
}
