package fcm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limiter paces sends at the project's FCM quota. Wait returns once n more
// messages may be sent. An error wrapping ErrQuota means the wait would
// outlast ctx; it may say how long the wait is through a
// RetryAfter() time.Duration method, and how many of the n it let through
// before that (which may be sent) through an Admitted() int method.
type Limiter interface {
	Wait(ctx context.Context, n int) error
}

var _ Limiter = (*RedisLimiter)(nil)

// limiterKey is the Redis key of the shared rate (redis_rate prefixes it
// with "rate:"): one FCM project, one quota, whatever the replica.
const limiterKey = "ajil:fcm"

// RedisLimiter is a Limiter shared by every replica through Redis, with
// the GCRA algorithm of redis_rate: one Lua script call per batch.
type RedisLimiter struct {
	lim   *redis_rate.Limiter
	limit redis_rate.Limit
}

// NewRedisLimiter returns a limiter of perMinute messages a minute
// (DefaultPerMinute when perMinute <= 0). Up to a second's worth may go at
// once, so a replica sends a batch as soon as it has one while any minute
// stays within the quota and a second's burst.
func NewRedisLimiter(rdb redis.UniversalClient, perMinute int) *RedisLimiter {
	if perMinute <= 0 {
		perMinute = DefaultPerMinute
	}
	return &RedisLimiter{
		lim:   redis_rate.NewLimiter(rdb),
		limit: redis_rate.Limit{Rate: perMinute, Period: time.Minute, Burst: max(perMinute/60, 1)},
	}
}

// Wait takes n messages from the shared rate, in pieces no larger than the
// burst, waiting for each as long as the rate requires. When a wait would
// end after ctx's deadline it returns at once an error wrapping ErrQuota.
func (l *RedisLimiter) Wait(ctx context.Context, n int) error {
	taken := 0
	for n > 0 {
		k := min(n, l.limit.Burst)
		res, err := l.lim.AllowN(ctx, limiterKey, l.limit, k)
		if err != nil {
			return fmt.Errorf("fcm: rate limiter: %w", err)
		}
		if res.Allowed >= k {
			n -= k
			taken += k
			continue
		}
		wait := max(res.RetryAfter, time.Millisecond)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return &quotaWait{after: wait, admitted: taken}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("fcm: rate limiter: %w", context.Cause(ctx))
		}
	}
	return nil
}

// quotaWait is a rate-limit wait that would outlast the caller's deadline.
type quotaWait struct {
	after    time.Duration
	admitted int
}

func (e *quotaWait) Error() string {
	return fmt.Sprintf("fcm: rate limit: next send allowed in %s, after the deadline", e.after.Round(time.Millisecond))
}

func (e *quotaWait) Is(target error) bool { return target == ErrQuota }

// RetryAfter is how long until the rate allows the send.
func (e *quotaWait) RetryAfter() time.Duration { return e.after }

// Admitted is how many messages the rate let through before the wait.
func (e *quotaWait) Admitted() int { return e.admitted }

// admittedOf is how many messages a limiter error says were let through.
func admittedOf(err error) int {
	var a interface{ Admitted() int }
	if errors.As(err, &a) {
		return a.Admitted()
	}
	return 0
}

// retryAfterOf is the wait an error says to make, or 0.
func retryAfterOf(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}
