package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultKeep is how many attempts are kept per endpoint: a day of
	// alerts with their retries, enough to see a pattern, at a few tens of
	// kilobytes per endpoint.
	DefaultKeep = 100
	// LogTTL is how long an endpoint's log outlives its last attempt: a
	// month without a single attempt means the endpoint was deleted or
	// disabled long ago.
	LogTTL = 30 * 24 * time.Hour
	// failingTTL lets the failure mark of a deleted endpoint go; a failing
	// endpoint refreshes it at every failure, hours apart at most.
	failingTTL = 7 * 24 * time.Hour
)

// Attempt is one line of an endpoint's delivery log.
type Attempt struct {
	At      time.Time     `json:"at"`
	MsgID   string        `json:"msg_id"`
	AlertID string        `json:"alert_id"`
	Attempt int           `json:"attempt"`
	Status  int           `json:"status,omitempty"` // 0 when no response came
	Latency time.Duration `json:"latency_ns"`
	Outcome Outcome       `json:"outcome"`
	Error   string        `json:"error,omitempty"`
}

// AttemptLog keeps each endpoint's last attempts in Redis, for operators
// and partners asking what happened to their webhooks, and marks how long
// an endpoint has been failing, for auto-disable. It is safe for
// concurrent use; several dispatchers may share one Redis.
type AttemptLog struct {
	rdb  redis.UniversalClient
	keep int
}

// NewAttemptLog returns a log keeping the last keep attempts per endpoint;
// keep <= 0 means DefaultKeep.
func NewAttemptLog(rdb redis.UniversalClient, keep int) *AttemptLog {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &AttemptLog{rdb: rdb, keep: keep}
}

func attemptsKey(endpointID string) string { return "ajil:webhook:attempts:{" + endpointID + "}" }
func failingKey(endpointID string) string  { return "ajil:webhook:failing:{" + endpointID + "}" }

// Record adds at to the front of the endpoint's log and drops the oldest
// beyond the limit, in one transaction; a delivered attempt also clears
// the failure mark, so that the next failure starts a new count.
func (l *AttemptLog) Record(ctx context.Context, endpointID string, at Attempt) error {
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		return l.Queue(ctx, p, endpointID, at)
	})
	if err != nil {
		return fmt.Errorf("webhook log: record attempt for endpoint %s: %w", endpointID, err)
	}
	return nil
}

// Queue adds Record's commands to p, so that a caller recording more
// about the same delivery spends one round trip on it all.
func (l *AttemptLog) Queue(ctx context.Context, p redis.Pipeliner, endpointID string, at Attempt) error {
	b, err := json.Marshal(at)
	if err != nil {
		return fmt.Errorf("webhook log: encode attempt: %w", err)
	}
	key := attemptsKey(endpointID)
	p.LPush(ctx, key, b)
	p.LTrim(ctx, key, 0, int64(l.keep-1))
	p.Expire(ctx, key, LogTTL)
	if at.Outcome == Delivered {
		p.Del(ctx, failingKey(endpointID))
	}
	return nil
}

// List returns the endpoint's last n attempts, newest first; n <= 0 means
// all that are kept.
func (l *AttemptLog) List(ctx context.Context, endpointID string, n int) ([]Attempt, error) {
	if n <= 0 || n > l.keep {
		n = l.keep
	}
	raw, err := l.rdb.LRange(ctx, attemptsKey(endpointID), 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("webhook log: list attempts for endpoint %s: %w", endpointID, err)
	}
	out := make([]Attempt, 0, len(raw))
	for _, r := range raw {
		var at Attempt
		if err := json.Unmarshal([]byte(r), &at); err != nil {
			return nil, fmt.Errorf("webhook log: endpoint %s: undecodable attempt: %w", endpointID, err)
		}
		out = append(out, at)
	}
	return out, nil
}

// Failing records a failed attempt at now and returns since when the
// endpoint has been failing without a success in between: now for the
// first failure, the first failure's time after that. The caller disables
// the endpoint once now - since reaches Config.DisableAfter.
func (l *AttemptLog) Failing(ctx context.Context, endpointID string, now time.Time) (time.Time, error) {
	key := failingKey(endpointID)
	var get *redis.StringCmd
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, key, now.UTC().Format(time.RFC3339Nano), 0)
		p.Expire(ctx, key, failingTTL)
		get = p.Get(ctx, key)
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("webhook log: mark endpoint %s failing: %w", endpointID, err)
	}
	since, err := time.Parse(time.RFC3339Nano, get.Val())
	if err != nil {
		return time.Time{}, fmt.Errorf("webhook log: endpoint %s: undecodable failure mark: %w", endpointID, err)
	}
	return since, nil
}
