package fcm_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/redistest"
)

// TestLimiterSharedByReplicas runs two channels, as two replicas would,
// each with its own limiter on one Redis, and checks that together they
// never send faster than the rate: at any moment since the start, at most
// a second's burst plus the rate times the time passed.
func TestLimiterSharedByReplicas(t *testing.T) {
	rdb := redistest.Start(t).Client()
	srv := fcmtest.Start(t, fcmtest.CountOnly())
	const (
		perMinute = 1800 // 30 a second: several times under what the fake takes, even under -race
		perSecond = perMinute / 60
		burst     = perSecond
		each      = 45 // over the burst: one batch is let through in two pieces
	)
	var chans []*fcm.Channel
	for range 2 {
		ch, _ := newChannel(t, srv, fcm.Config{Limiter: fcm.NewRedisLimiter(rdb, perMinute)})
		chans = append(chans, ch)
	}

	start := time.Now()
	var over atomic.Value
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			elapsed := time.Since(start)
			if sent, allowed := srv.Sent(), int64(burst+perSecond*elapsed.Seconds()); sent > allowed {
				over.Store(fmt.Sprintf("%d sent after %s, rate allows %d", sent, elapsed, allowed))
			}
		}
	}()
	var wg sync.WaitGroup
	for i, ch := range chans {
		wg.Go(func() {
			res, err := ch.Send(t.Context(), breaking("a-1"), tokens(fmt.Sprint("r", i), each))
			if err != nil || res.Sent != each {
				t.Errorf("replica %d: Send = %d sent, %v", i, res.Sent, err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-watched
	if msg := over.Load(); msg != nil {
		t.Error(msg)
	}
	// 90 messages at 30 a second after a burst of 30 take 2 seconds.
	if min := time.Duration(float64(2*each-burst)/perSecond*float64(time.Second)) - 200*time.Millisecond; elapsed < min {
		t.Errorf("%d messages took %s, want at least %s", 2*each, elapsed, min)
	}
	if srv.Sent() != 2*each {
		t.Errorf("server got %d, want %d", srv.Sent(), 2*each)
	}
}

// TestLimiterDeadline checks that a wait that would outlast the send
// timeout fails at once as a quota refusal that says how long to wait.
func TestLimiterDeadline(t *testing.T) {
	rdb := redistest.Start(t).Client()
	lim := fcm.NewRedisLimiter(rdb, 60) // one a second
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := lim.Wait(ctx, 1); err != nil {
		t.Fatalf("first message: %v", err)
	}
	start := time.Now()
	err := lim.Wait(ctx, 1)
	if !errors.Is(err, fcm.ErrQuota) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Wait = %v after %s, want ErrQuota at once", err, time.Since(start))
	}

	srv := fcmtest.Start(t)
	ch, _ := newChannel(t, srv, fcm.Config{Limiter: lim, SendTimeout: 200 * time.Millisecond})
	res, err := ch.Send(t.Context(), breaking("a-1"), tokens("tok", 3))
	if !errors.Is(err, fcm.ErrQuota) || len(res.Retry) != 3 || res.RetryAfter < 500*time.Millisecond || res.RetryAfter > 2*time.Second {
		t.Errorf("Send = %+v, %v; want every token to retry in about a second, ErrQuota", res, err)
	}
	if err := ch.SendTopic(t.Context(), breaking("a-1"), "'breaking' in topics"); !errors.Is(err, fcm.ErrQuota) {
		t.Errorf("SendTopic = %v, want ErrQuota", err)
	}
	if srv.Requests() != 0 {
		t.Errorf("%d requests made over the rate", srv.Requests())
	}
}

// TestLimiterRedisDown checks that a limiter that cannot reach Redis stops
// the send, with the reason, rather than sending past the quota.
func TestLimiterRedisDown(t *testing.T) {
	redis := redistest.Start(t)
	srv := fcmtest.Start(t)
	ch, _ := newChannel(t, srv, fcm.Config{Limiter: fcm.NewRedisLimiter(redis.Client(), 0), SendTimeout: time.Second})
	redis.Stop()
	res, err := ch.Send(t.Context(), breaking("a-1"), tokens("tok", 2))
	if err == nil || errors.Is(err, fcm.ErrQuota) || len(res.Retry) != 2 || res.RetryAfter <= 0 {
		t.Errorf("Send = %+v, %v; want every token to retry and the Redis error", res, err)
	}
	if srv.Requests() != 0 {
		t.Errorf("%d requests made without the limiter", srv.Requests())
	}
}
