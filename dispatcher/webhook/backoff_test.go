package webhook_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ajil-news/ajil/dispatcher/webhook"
)

func fixed(v float64) func() float64 { return func() float64 { return v } }

func TestBackoffSchedule(t *testing.T) {
	want := []time.Duration{
		5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
		time.Hour, time.Hour, time.Hour, time.Hour, time.Hour, // then hourly
	}
	for i, base := range want {
		attempt := i + 1
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		if got := webhook.Backoff(attempt, 0, fixed(0.5)); got != base {
			t.Errorf("attempt %d without jitter: %s, want %s", attempt, got, base)
		}
		if got := webhook.Backoff(attempt, 0, fixed(0)); got != lo {
			t.Errorf("attempt %d at the low end: %s, want %s", attempt, got, lo)
		}
		if got := webhook.Backoff(attempt, 0, fixed(1-1e-12)); got < hi-time.Millisecond || got > hi {
			t.Errorf("attempt %d at the high end: %s, want just under %s", attempt, got, hi)
		}
		for range 200 {
			if got := webhook.Backoff(attempt, 0, rand.Float64); got < lo || got > hi {
				t.Fatalf("attempt %d: %s outside %s to %s", attempt, got, lo, hi)
			}
		}
	}
	if got := webhook.Backoff(1000, 0, fixed(0.5)); got != time.Hour {
		t.Errorf("attempt 1000: %s, want hourly", got)
	}
	if got := webhook.Backoff(0, 0, fixed(0.5)); got != 5*time.Second {
		t.Errorf("attempt 0 counts as the first: %s", got)
	}
}

func TestBackoffSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[webhook.Backoff(3, 0, rand.Float64)] = true
	}
	if len(seen) < 40 {
		t.Fatalf("50 retries of endpoints that failed together land on only %d distinct delays", len(seen))
	}
}

func TestBackoffRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"longer than the schedule wins", 1, 2 * time.Minute, 2 * time.Minute},
		{"shorter than the schedule is ignored", 4, time.Minute, 10 * time.Minute},
		{"equal to the jittered delay", 2, 30 * time.Second, 30 * time.Second},
		{"capped", 1, 48 * time.Hour, webhook.MaxRetryAfter},
		{"at the cap", 1, webhook.MaxRetryAfter, webhook.MaxRetryAfter},
		{"negative is ignored", 1, -time.Hour, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := webhook.Backoff(tt.attempt, tt.retryAfter, fixed(0.5)); got != tt.want {
				t.Fatalf("Backoff(%d, %s) = %s, want %s", tt.attempt, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestScheduleCustom(t *testing.T) {
	s := webhook.Schedule{10 * time.Millisecond, 50 * time.Millisecond}
	for attempt, want := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 50 * time.Millisecond, 9: 50 * time.Millisecond} {
		if got := s.Backoff(attempt, 0, fixed(0.5)); got != want {
			t.Errorf("attempt %d: %s, want %s", attempt, got, want)
		}
	}
	if got := webhook.Schedule(nil).Backoff(2, 0, fixed(0.5)); got != 30*time.Second {
		t.Errorf("empty schedule: %s, want the default's 30s", got)
	}

	// Sender.Backoff follows Config.Schedule and the endpoint's Retry-After.
	sender := webhook.NewSender(webhook.Config{Schedule: s}, nil)
	defer sender.Close()
	if got := sender.Backoff(1, webhook.Result{Outcome: webhook.Retry}); got < 8*time.Millisecond || got > 12*time.Millisecond {
		t.Errorf("Sender.Backoff(1) = %s, want 10ms ±20%%", got)
	}
	if got := sender.Backoff(1, webhook.Result{Outcome: webhook.Retry, RetryAfter: time.Second}); got != time.Second {
		t.Errorf("Sender.Backoff with Retry-After 1s = %s", got)
	}
}

func TestSenderDefaults(t *testing.T) {
	s := webhook.NewSender(webhook.Config{}, nil)
	defer s.Close()
	if got := s.DisableAfter(); got != webhook.DefaultDisableAfter {
		t.Errorf("DisableAfter = %s, want %s", got, webhook.DefaultDisableAfter)
	}
}

func TestOutcomeText(t *testing.T) {
	for _, o := range []webhook.Outcome{webhook.Delivered, webhook.Retry, webhook.Gone, webhook.Permanent, webhook.Forbidden} {
		b, err := o.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back webhook.Outcome
		if err := back.UnmarshalText(b); err != nil || back != o || string(b) != o.String() {
			t.Errorf("%s: round trip gave %s, %v", o, back, err)
		}
	}
	if _, err := webhook.Outcome(0).MarshalText(); err == nil {
		t.Error("the zero Outcome marshals")
	}
	var o webhook.Outcome
	if err := o.UnmarshalText([]byte("lost")); err == nil {
		t.Error("an unknown outcome name unmarshals")
	}
}
