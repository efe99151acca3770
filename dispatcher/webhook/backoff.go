package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// Jitter is the spread around each scheduled delay, ±20%: endpoints
	// that failed together (a partner's shared host went down) do not all
	// come back at the same second.
	Jitter = 0.2
	// MaxRetryAfter caps a partner's Retry-After: a longer wait would
	// deliver news that is no longer news, and a bogus header must not park
	// a delivery for days.
	MaxRetryAfter = 6 * time.Hour
)

// Schedule is the delay before each retry: after the first failed attempt
// wait Schedule[0], after the second Schedule[1], and so on, the last
// delay repeating.
type Schedule []time.Duration

// DefaultSchedule is about 5 s, 30 s, 2 m, 10 m, 30 m, 1 h, then hourly:
// quick enough to ride out a blip while the news is fresh, slow enough that
// a partner recovering from an outage is not flattened by retries.
func DefaultSchedule() Schedule {
	return Schedule{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}
}

// Backoff is DefaultSchedule().Backoff.
func Backoff(attempt int, retryAfter time.Duration, jitter func() float64) time.Duration {
	return DefaultSchedule().Backoff(attempt, retryAfter, jitter)
}

// Backoff returns how long to wait after attempt (1 for the first) failed:
// the scheduled delay spread by ±Jitter, where jitter returns a number in
// [0, 1) such as math/rand/v2.Float64, or the endpoint's Retry-After when
// that is longer, capped at MaxRetryAfter.
func (s Schedule) Backoff(attempt int, retryAfter time.Duration, jitter func() float64) time.Duration {
	if len(s) == 0 {
		s = DefaultSchedule()
	}
	base := s[min(max(attempt, 1), len(s))-1]
	d := time.Duration(float64(base) * (1 - Jitter + 2*Jitter*jitter()))
	if retryAfter > d {
		return min(retryAfter, MaxRetryAfter)
	}
	return d
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110, section 10.2.3). It returns 0 when there is none or
// it cannot be read, and at most MaxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	secs, err := strconv.ParseUint(v, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange), err == nil && secs >= uint64(MaxRetryAfter/time.Second):
		return MaxRetryAfter
	case err == nil:
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), MaxRetryAfter)
	}
	return 0
}
