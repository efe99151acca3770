package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/fcm"
)

// markSlack keeps delivery marks a little past the alert's expiry, for
// clock skew between replicas and Redis.
const markSlack = 10 * time.Minute

// leaseSlack is added to the wait for another attempt's lease to lapse,
// so the next attempt finds it lapsed rather than a millisecond short.
const leaseSlack = 100 * time.Millisecond

// handleWork delivers one FCM work item.
func (d *Dispatcher) handleWork(ctx context.Context, msg jetstream.Msg) {
	var it workItem
	err := json.Unmarshal(msg.Data(), &it)
	if err == nil && it.V != 1 {
		err = fmt.Errorf("version %d, want 1", it.V)
	}
	if err != nil {
		d.reject(ctx, msg, fmt.Errorf("undecodable work item: %w", err))
		return
	}
	a, err := alert.Decode(it.Alert)
	if err != nil {
		d.reject(ctx, msg, err)
		return
	}
	log := d.log.With("alert_id", a.ID, "item", it.N)
	retryAfter, err := func() (time.Duration, error) {
		// Deferred, so that a panic in deliver stops the keep-alive too.
		defer d.keepAlive(msg)()
		return d.deliver(ctx, msg, a, it)
	}()
	switch {
	case err == nil && retryAfter == 0:
		msg.Ack()
	case d.lastDelivery(msg):
		reason := "gave up after the last delivery"
		if err != nil {
			reason += ": " + err.Error()
		}
		d.giveUp(ctx, a, it)
		d.deadLetter(ctx, msg, reason)
	case err != nil:
		log.Warn("work item failed; will retry", "err", err)
		msg.NakWithDelay(d.retryDelay(msg))
	default:
		log.Info("work item has tokens to retry", "retry_after", retryAfter)
		msg.NakWithDelay(retryAfter)
	}
}

// deliver sends the item's tokens that no earlier attempt delivered. It
// returns a positive delay when some tokens must be retried later.
func (d *Dispatcher) deliver(ctx context.Context, msg jetstream.Msg, a alert.Alert, it workItem) (time.Duration, error) {
	now := d.now()
	keep := time.Until(a.ExpiresAt()) + d.cfg.Keep
	item := strconv.Itoa(it.N)
	if a.Expired(now) {
		d.log.Warn("alert expired; work item dropped", "alert_id", a.ID, "item", it.N, "expired_at", a.ExpiresAt())
		if err := d.store.addCounts(ctx, a.ID, map[string]int64{"expired": int64(len(it.Tokens))}); err != nil {
			return 0, err
		}
		return 0, d.finish(ctx, a.ID, item, keep)
	}
	if it.Condition != "" {
		err := d.push.SendTopic(ctx, a, it.Condition)
		switch {
		case errors.Is(err, fcm.ErrQuota), errors.Is(err, fcm.ErrUnavailable):
			return d.cfg.RetryDelay, nil
		case err != nil:
			return 0, err
		}
		d.metrics.FCMSends.WithLabelValues("ok").Inc()
		d.firstSend(ctx, a)
		if err := d.store.addCounts(ctx, a.ID, map[string]int64{"sent": 1}); err != nil {
			return 0, err
		}
		return 0, d.finish(ctx, a.ID, item, keep)
	}

	md, err := msg.Metadata()
	if err != nil {
		return 0, fmt.Errorf("work item metadata: %w", err)
	}
	// One claim per delivery attempt: a retried Redis call finds its own
	// claim and proceeds; another replica's live claim is left alone.
	claim := fmt.Sprintf("%s/%d/%d", d.cfg.Name, md.Sequence.Stream, md.NumDelivered)
	// Marks only need to outlive the alert: after its expiry nothing is
	// sent anyway, and a million marks are worth freeing early.
	marks, leaseLeft, err := d.store.claimMarks(ctx, a.ID, claim, d.cfg.AckWait, time.Until(a.ExpiresAt())+markSlack, it.Tokens)
	if err != nil {
		return 0, err
	}
	var send []string
	leased := 0
	for i, m := range marks {
		switch m {
		case markClaimed:
			send = append(send, it.Tokens[i])
		case markLeased:
			leased++
		}
	}
	var res fcm.Result
	if len(send) > 0 {
		res, err = d.push.Send(ctx, a, send)
		if err != nil {
			// Nothing is known to have been sent: release the claims so the
			// retry sends them all.
			if rerr := d.store.settleMarks(ctx, a.ID, claim, nil, send); rerr != nil {
				d.log.Warn("release claims failed", "alert_id", a.ID, "err", rerr)
			}
			switch {
			case errors.Is(err, fcm.ErrExpired):
				return 0, d.finish(ctx, a.ID, item, keep)
			case (errors.Is(err, fcm.ErrQuota) || errors.Is(err, fcm.ErrUnavailable)) && res.RetryAfter > 0:
				// FCM said when to come back: wait that long, not the
				// generic retry delay.
				d.countSends(res, errors.Is(err, fcm.ErrQuota))
				return res.RetryAfter, nil
			}
			return 0, err
		}
	}
	retry := make(map[string]bool, len(res.Retry))
	for _, t := range res.Retry {
		retry[t] = true
	}
	done := make([]string, 0, len(send))
	for _, t := range send {
		if !retry[t] {
			done = append(done, t)
		}
	}
	if err := d.store.settleMarks(ctx, a.ID, claim, done, res.Retry); err != nil {
		return 0, err
	}
	d.countSends(res, false)
	if res.Sent > 0 {
		d.firstSend(ctx, a)
	}
	pruned := 0
	if len(res.Dead) > 0 {
		if pruned, err = d.reg.RemoveTokens(ctx, res.Dead); err != nil {
			d.log.Warn("prune dead tokens failed", "alert_id", a.ID, "err", err)
		}
		d.metrics.TokensPruned.Add(float64(pruned))
	}
	if err := d.store.addCounts(ctx, a.ID, map[string]int64{
		"sent": int64(res.Sent), "failed": int64(res.Failed + res.AuthFailed + len(res.Dead)), "pruned": int64(pruned),
	}); err != nil {
		return 0, err
	}
	if len(res.Retry) > 0 || leased > 0 {
		wait := res.RetryAfter
		if wait <= 0 {
			wait = d.cfg.RetryDelay
		}
		if leased > 0 {
			// Another attempt holds some tokens; come back once its lease
			// has lapsed, in case it died. After a crash that is soon:
			// the item came back when the dead attempt's AckWait ran out.
			wait = max(wait, leaseLeft+leaseSlack)
		}
		d.publishStatus(ctx, a.ID)
		return wait, nil
	}
	return 0, d.finish(ctx, a.ID, item, keep)
}

// finish records the item as finished and reports progress.
func (d *Dispatcher) finish(ctx context.Context, alertID, item string, keep time.Duration) error {
	done, err := d.store.finishItem(ctx, alertID, item, keep, d.now())
	if err != nil {
		return err
	}
	if done {
		d.log.Info("alert fan-out done", "alert_id", alertID)
		d.observeDone(ctx, alertID)
	}
	d.publishStatus(ctx, alertID)
	return nil
}

// giveUp counts the item's undelivered tokens as failed and finishes it,
// so the alert still completes after a dead letter.
func (d *Dispatcher) giveUp(ctx context.Context, a alert.Alert, it workItem) {
	keep := time.Until(a.ExpiresAt()) + d.cfg.Keep
	if err := d.store.addCounts(ctx, a.ID, map[string]int64{"failed": int64(len(it.Tokens))}); err != nil {
		d.log.Warn("count failed tokens", "alert_id", a.ID, "err", err)
	}
	if err := d.finish(ctx, a.ID, strconv.Itoa(it.N), keep); err != nil {
		d.log.Warn("finish dead item", "alert_id", a.ID, "err", err)
	}
}

// keepAlive tells JetStream the message is still being worked on every
// third of AckWait until stop is called, so a slow FCM answer never gets
// the item redelivered to another replica while this one still sends it.
func (d *Dispatcher) keepAlive(msg jetstream.Msg) (stop func()) {
	t := time.NewTicker(d.cfg.AckWait / 3)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-t.C:
				msg.InProgress()
			}
		}
	}()
	return func() { t.Stop(); close(done); <-exited }
}

// countSends adds a batch's results to the FCM metrics; quota says the
// retries were refused for quota, which operators watch on its own.
func (d *Dispatcher) countSends(res fcm.Result, quota bool) {
	retry := "retry"
	if quota {
		retry = "quota"
	}
	for result, n := range map[string]int{
		"ok": res.Sent, "dead": len(res.Dead), retry: len(res.Retry), "auth": res.AuthFailed, "failed": res.Failed,
	} {
		if n > 0 {
			d.metrics.FCMSends.WithLabelValues(result).Add(float64(n))
		}
	}
}
