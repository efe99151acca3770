package dispatcher

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// store keeps the dispatcher's keyed, expiring state in Redis: content
// fingerprints, per-alert plan state and counters, and per-destination
// delivery marks. Every key of one alert carries the hash tag {ID}, so the
// scripts below touch a single Redis Cluster slot.
type store struct {
	rdb    redis.UniversalClient
	errors prometheus.Counter // failed Redis calls
}

// fail counts a failed Redis call and wraps its error with reason.
func (s *store) fail(reason string, err error) error {
	s.errors.Inc()
	return fmt.Errorf("%s: %w", reason, err)
}

func alertKey(id string) string       { return "ajil:alert:{" + id + "}" }
func marksKey(id string) string       { return "ajil:marks:{" + id + "}" }
func itemsKey(id string) string       { return "ajil:items:{" + id + "}" }
func fingerprintKey(fp string) string { return "ajil:fp:" + fp }

// claimScript sets KEYS[1] to ARGV[1] unless it holds another value, and
// returns the value it holds. A command retried by go-redis after its first
// attempt landed finds its own value and so still succeeds.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`)

// Mark states returned by claimMarks, one per token.
const (
	markClaimed = 0 // this attempt owns the token: send it
	markDone    = 1 // already sent (or pruned): skip it
	markLeased  = 2 // another attempt is sending it right now: retry later
)

// markField is a token's field in the marks hash: 12 bytes of its
// SHA-256 in base64, 16 characters instead of a 163-byte FCM token, so the
// marks of a million-device alert take tens of megabytes of Redis, not
// hundreds. 96 bits make a collision (which would skip a device) about
// 1e-17 likely within one alert of a million.
func markField(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawStdEncoding.EncodeToString(sum[:12])
}

// MarksKey is the Redis hash of alert id's delivery marks, for operators
// measuring its size.
func MarksKey(id string) string { return marksKey(id) }

// claimMarksScript leases each token in ARGV[4:] to claim ARGV[1] for
// ARGV[2] ms, unless it is done or under another live lease. A lease that
// is ours (a retried command) or has lapsed (its holder died) is taken.
// After the per-token answers comes the time in ms until the last of the
// other leases lapses.
var claimMarksScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = 'c:' .. ARGV[1] .. ':'
local lease = mine .. (now + tonumber(ARGV[2]))
local out = {}
local wait = 0
for i = 4, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v == 'd' then
    out[#out + 1] = 1
  else
    local exp = 0
    if v then exp = tonumber(string.match(v, ':(%d+)$')) or 0 end
    if (not v) or string.sub(v, 1, #mine) == mine or exp <= now then
      redis.call('HSET', KEYS[1], ARGV[i], lease)
      out[#out + 1] = 0
    else
      out[#out + 1] = 2
      wait = math.max(wait, exp - now)
    end
  end
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
out[#out + 1] = wait
return out
`)

// claimMarks leases tokens of alert id to claim for lease; keep bounds how
// long the marks outlive the alert so a late redelivery still skips them.
// It returns a mark per token and how long until the other attempts'
// leases on the rest lapse.
func (s *store) claimMarks(ctx context.Context, id, claim string, lease, keep time.Duration, tokens []string) ([]int64, time.Duration, error) {
	args := make([]any, 0, 3+len(tokens))
	args = append(args, claim, lease.Milliseconds(), keep.Milliseconds())
	for _, t := range tokens {
		args = append(args, markField(t))
	}
	res, err := claimMarksScript.Run(ctx, s.rdb, []string{marksKey(id)}, args...).Int64Slice()
	if err != nil {
		return nil, 0, s.fail("claim delivery marks", err)
	}
	if len(res) != len(tokens)+1 {
		return nil, 0, fmt.Errorf("claim delivery marks: %d answers for %d tokens", len(res), len(tokens))
	}
	return res[:len(tokens)], time.Duration(res[len(tokens)]) * time.Millisecond, nil
}

// settleMarksScript marks ARGV[2..n+1] done and releases the leases of
// claim ARGV[1] on the rest, so that the next attempt sends those.
var settleMarksScript = redis.NewScript(`
local mine = 'c:' .. ARGV[1] .. ':'
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  redis.call('HSET', KEYS[1], ARGV[i], 'd')
end
for i = 3 + n, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, #mine) == mine then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
`)

func (s *store) settleMarks(ctx context.Context, id, claim string, done, release []string) error {
	if len(done)+len(release) == 0 {
		return nil
	}
	args := make([]any, 0, 2+len(done)+len(release))
	args = append(args, claim, len(done))
	for _, t := range done {
		args = append(args, markField(t))
	}
	for _, t := range release {
		args = append(args, markField(t))
	}
	if err := settleMarksScript.Run(ctx, s.rdb, []string{marksKey(id)}, args...).Err(); err != nil {
		return s.fail("settle delivery marks", err)
	}
	return nil
}

// Alert states kept in the alert hash.
const (
	statePlanning   = "planning"
	statePlanned    = "planned"
	stateDone       = "done"
	stateSuppressed = "suppressed"
	stateExpired    = "expired"
)

// planCheckpoint is how far planning got: items enqueued so far, and where
// the audience walk resumes.
type planCheckpoint struct {
	Items  int
	Topic  int
	Cursor uint64
}

// begin records a new alert's metadata unless it is already known, reads
// its state and plan checkpoint and, when fp is not empty, claims that
// fingerprint for window, returning the alert that owns it (this one or
// an earlier one with the same story): one round trip, as this
// is on the way of every alert's first delivery.
func (s *store) begin(ctx context.Context, id string, fields map[string]any, keep time.Duration, fp string, window time.Duration) (state string, cp planCheckpoint, owner string, err error) {
	pipe := s.rdb.Pipeline()
	for k, v := range fields {
		pipe.HSetNX(ctx, alertKey(id), k, v)
	}
	pipe.PExpire(ctx, alertKey(id), keep)
	get := pipe.HMGet(ctx, alertKey(id), "state", "plan_items", "plan_topic", "plan_cursor")
	var claim *redis.Cmd
	if fp != "" {
		claim = claimScript.Eval(ctx, pipe, []string{fingerprintKey(fp)}, id, window.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return "", planCheckpoint{}, "", s.fail("record alert", err)
	}
	vals := get.Val()
	str := func(v any) string { s, _ := v.(string); return s }
	num := func(v any) uint64 { n, _ := strconv.ParseUint(str(v), 10, 64); return n }
	cp = planCheckpoint{Items: int(num(vals[1])), Topic: int(num(vals[2])), Cursor: num(vals[3])}
	if claim != nil {
		owner = str(claim.Val())
	}
	return str(vals[0]), cp, owner, nil
}

func (s *store) setFields(ctx context.Context, id string, fields ...any) error {
	if err := s.rdb.HSet(ctx, alertKey(id), fields...).Err(); err != nil {
		return s.fail("update alert state", err)
	}
	return nil
}

func (s *store) saveCheckpoint(ctx context.Context, id string, c planCheckpoint) error {
	return s.setFields(ctx, id, "plan_items", c.Items, "plan_topic", c.Topic, "plan_cursor", c.Cursor)
}

func (s *store) addCounts(ctx context.Context, id string, counts map[string]int64) error {
	pipe := s.rdb.Pipeline()
	for k, n := range counts {
		if n != 0 {
			pipe.HIncrBy(ctx, alertKey(id), k, n)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return s.fail("count deliveries", err)
	}
	return nil
}

// hookRecord is the answer to queueHookDelivered.
type hookRecord struct {
	delivered *redis.IntCmd    // deliveries of the alert so far
	webhooks  *redis.StringCmd // deliveries planned
	first     *redis.BoolCmd   // whether this was the alert's first send
}

func (r hookRecord) planned() int64 {
	n, _ := strconv.ParseInt(r.webhooks.Val(), 10, 64)
	return n
}

// queueHookDelivered adds to p the commands recording the delivery of
// alert id to an endpoint and counting it.
func queueHookDelivered(ctx context.Context, p redis.Pipeliner, id, endpointID string, now time.Time) hookRecord {
	p.HSet(ctx, hooksKey(id), endpointID, hookDelivered)
	return hookRecord{
		delivered: p.HIncrBy(ctx, alertKey(id), "delivered", 1),
		webhooks:  p.HGet(ctx, alertKey(id), "webhooks"),
		first:     p.HSetNX(ctx, alertKey(id), "first_sent_at", now.UTC().Format(time.RFC3339Nano)),
	}
}

// finishScript records work item ARGV[1] as finished and, when planning is
// complete and every planned item has finished, moves the alert to done.
// It returns 1 only to the call that made the alert done.
var finishScript = redis.NewScript(`
if ARGV[1] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'planned' then return 0 end
local planned = tonumber(redis.call('HGET', KEYS[1], 'items') or '0')
if redis.call('SCARD', KEYS[2]) >= planned then
  redis.call('HSET', KEYS[1], 'state', 'done', 'done_at', ARGV[3])
  return 1
end
return 0
`)

// finishItem records a finished work item (item "" only re-checks) and
// reports whether this call completed the alert.
func (s *store) finishItem(ctx context.Context, id, item string, keep time.Duration, now time.Time) (bool, error) {
	n, err := finishScript.Run(ctx, s.rdb, []string{alertKey(id), itemsKey(id)}, item, keep.Milliseconds(), now.UTC().Format(time.RFC3339Nano)).Int()
	if err != nil {
		return false, s.fail("finish work item", err)
	}
	return n == 1, nil
}

// summary returns every field of the alert hash.
func (s *store) summary(ctx context.Context, id string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, alertKey(id)).Result()
	if err != nil {
		return nil, s.fail("read alert summary", err)
	}
	if len(m) == 0 {
		return nil, errUnknownAlert
	}
	return m, nil
}

// progress returns every field of the alert hash and how many of its work
// items have finished, in one round trip: it is read for every status
// event.
func (s *store) progress(ctx context.Context, id string) (map[string]string, int64, error) {
	pipe := s.rdb.Pipeline()
	all := pipe.HGetAll(ctx, alertKey(id))
	items := pipe.SCard(ctx, itemsKey(id))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, s.fail("read alert summary", err)
	}
	if len(all.Val()) == 0 {
		return nil, 0, errUnknownAlert
	}
	return all.Val(), items.Val(), nil
}

var errUnknownAlert = errors.New("unknown alert")

func isNil(err error) bool { return errors.Is(err, redis.Nil) }
