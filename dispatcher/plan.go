package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/subscribers"
)

const (
	workSubjectPrefix = "ajil.work."
	fcmSubject        = workSubjectPrefix + "fcm"
	deadSubjectPrefix = "ajil.dead."
)

// workItem is one unit of fan-out on the work stream: a batch of device
// tokens, or one topic send.
type workItem struct {
	V         int             `json:"v"`
	Alert     json.RawMessage `json:"alert"` // alert wire form
	N         int             `json:"n"`     // item number within the alert
	Tokens    []string        `json:"tokens,omitempty"`
	Condition string          `json:"condition,omitempty"` // FCM topic condition, in topic mode
}

// workID is the Nats-Msg-Id of item n of an alert: re-planning after a
// crash produces the same IDs, so JetStream drops what was already queued.
func workID(alertID string, n int) string { return alertID + "/fcm/" + strconv.Itoa(n) }

// handleAlert dedups and plans one alert from the ALERTS stream.
func (d *Dispatcher) handleAlert(ctx context.Context, msg jetstream.Msg) {
	a, err := alert.Decode(msg.Data())
	if err != nil {
		d.reject(ctx, msg, err)
		return
	}
	log := d.log.With("alert_id", a.ID)
	if err := d.plan(ctx, msg, a); err != nil {
		if d.lastDelivery(msg) {
			d.deadLetter(ctx, msg, "planning failed: "+err.Error())
			return
		}
		log.Warn("planning failed; will retry", "err", err)
		msg.NakWithDelay(d.retryDelay(msg))
		return
	}
	msg.Ack()
}

// reject terminates a message that can never be handled, recording why in
// the dead-letter stream, so it never blocks the alerts behind it.
func (d *Dispatcher) reject(ctx context.Context, msg jetstream.Msg, reason error) {
	d.log.Error("rejected undecodable message", "subject", msg.Subject(), "bytes", len(msg.Data()), "err", reason)
	d.metrics.AlertsRejected.Inc()
	d.deadLetter(ctx, msg, "rejected: "+reason.Error())
}

// deadLetter copies msg with reason to the dead-letter stream and
// terminates it. If the copy fails the message is left for redelivery.
func (d *Dispatcher) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) {
	dead := nats.NewMsg(deadSubjectPrefix + msg.Subject())
	dead.Data = msg.Data()
	dead.Header.Set(HeaderReason, reason)
	dead.Header.Set(HeaderOrigSubject, msg.Subject())
	if md, err := msg.Metadata(); err == nil {
		dead.Header.Set(HeaderOrigSeq, strconv.FormatUint(md.Sequence.Stream, 10))
		dead.Header.Set(HeaderOrigStream, md.Stream)
		dead.Header.Set(jetstream.MsgIDHeader, md.Stream+"/"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.AckWait/3)
	defer cancel()
	if _, err := d.js.PublishMsg(pctx, dead); err != nil {
		d.metrics.NATSErrors.Inc()
		d.log.Error("dead-letter failed; leaving message for redelivery", "subject", msg.Subject(), "err", err)
		msg.NakWithDelay(d.cfg.RetryDelay)
		return
	}
	d.metrics.DeadLetters.Inc()
	msg.TermWithReason(reason)
}

// Dead-letter headers.
const (
	HeaderReason      = "Ajil-Reason"
	HeaderOrigSubject = "Ajil-Subject"
	HeaderOrigStream  = "Ajil-Stream"
	HeaderOrigSeq     = "Ajil-Seq"
)

// plan runs the alert through content dedup and enqueues its work items,
// resuming from the checkpoint of an earlier attempt.
func (d *Dispatcher) plan(ctx context.Context, msg jetstream.Msg, a alert.Alert) error {
	log := d.log.With("alert_id", a.ID)
	now := d.now()
	keep := time.Until(a.ExpiresAt()) + d.cfg.Keep
	if keep < d.cfg.Keep {
		keep = d.cfg.Keep
	}
	// Only a new story is checked for duplicates; the claim is harmless
	// when this turns out to be a redelivery, as its owner is this alert.
	var fp string
	if a.Kind == alert.KindPublished && !a.Force {
		fp = alert.Fingerprint(a.Lang, a.Headline)
	}
	state, cp, owner, err := d.store.begin(ctx, a.ID, map[string]any{
		"state": statePlanning, "kind": string(a.Kind), "ref": a.Ref, "lang": a.Lang,
		"topics": joinTopics(a.Topics), "created_at": a.CreatedAt.Format(time.RFC3339Nano),
	}, keep, fp, d.cfg.DuplicateWindow)
	if err != nil {
		return err
	}
	if state != statePlanning {
		log.Debug("alert already planned", "state", state)
		return nil
	}
	if fp != "" && owner != a.ID {
		log.Info("suppressed duplicate story", "duplicate_of", owner)
		d.metrics.AlertsSuppressed.Inc()
		if err := d.store.setFields(ctx, a.ID, "state", stateSuppressed, "duplicate_of", owner); err != nil {
			return err
		}
		d.publishStatus(ctx, a.ID)
		return nil
	}
	if a.Expired(now) {
		log.Warn("alert expired before planning; not sent", "expired_at", a.ExpiresAt())
		if err := d.store.setFields(ctx, a.ID, "state", stateExpired); err != nil {
			return err
		}
		d.publishStatus(ctx, a.ID)
		return nil
	}

	target := a
	if a.Kind != alert.KindPublished {
		// A correction or retraction goes to the original's audience.
		if orig, err := d.store.summary(ctx, a.Ref); err == nil && orig["topics"] != "" {
			target.Topics = splitTopics(orig["topics"])
		}
	}
	wire := msg.Data()
	hooks, err := d.planHooks(ctx, a, target, wire, keep)
	if err != nil {
		return err
	}
	if hooks > 0 {
		if err := d.store.setFields(ctx, a.ID, "webhooks", hooks); err != nil {
			return err
		}
	}
	var devices int64
	if d.cfg.FCMMode == FCMTopic {
		// FCM takes at most five topics in a condition; more topics take
		// more sends, all with the same collapse ID.
		conds := TopicConditions(target.Topics)
		for ; cp.Items < len(conds); cp.Items++ {
			if err := d.enqueue(ctx, a.ID, workItem{V: 1, Alert: wire, N: cp.Items, Condition: conds[cp.Items]}); err != nil {
				return err
			}
		}
	} else {
		devices, err = d.planTokens(ctx, msg, target, wire, &cp)
		if err != nil {
			return err
		}
	}
	if err := d.store.setFields(ctx, a.ID, "state", statePlanned, "items", cp.Items, "planned_at", now.UTC().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	if err := d.store.addCounts(ctx, a.ID, map[string]int64{"devices": devices}); err != nil {
		return err
	}
	d.metrics.AlertsPublished.Inc()
	log.Info("alert planned", "kind", a.Kind, "items", cp.Items, "devices", devices, "webhooks", hooks)
	if _, err := d.store.finishItem(ctx, a.ID, "", keep, now); err != nil {
		return err
	}
	d.publishStatus(ctx, a.ID)
	return nil
}

// planTokens walks the audience of every topic in the alert's language and
// enqueues it in batches, saving a checkpoint after each, and telling
// JetStream the alert is still in progress so it is not redelivered while
// a large audience is walked.
func (d *Dispatcher) planTokens(ctx context.Context, msg jetstream.Msg, a alert.Alert, wire []byte, cp *planCheckpoint) (int64, error) {
	var devices int64
	lang := baseLang(a.Lang)
	lastBeat := time.Now()
	for ; cp.Topic < len(a.Topics); cp.Topic, cp.Cursor = cp.Topic+1, 0 {
		for {
			tokens, next, err := d.reg.Page(ctx, a.Topics[cp.Topic], lang, subscribers.Cursor(cp.Cursor), d.cfg.BatchSize)
			if err != nil {
				return devices, fmt.Errorf("resolve audience: %w", err)
			}
			if len(tokens) == 0 {
				break
			}
			if err := d.enqueue(ctx, a.ID, workItem{V: 1, Alert: wire, N: cp.Items, Tokens: tokens}); err != nil {
				return devices, err
			}
			devices += int64(len(tokens))
			cp.Items++
			cp.Cursor = uint64(next)
			if err := d.store.saveCheckpoint(ctx, a.ID, *cp); err != nil {
				return devices, err
			}
			if time.Since(lastBeat) > d.cfg.AckWait/4 {
				msg.InProgress()
				lastBeat = time.Now()
			}
		}
	}
	return devices, nil
}

// enqueue publishes one work item with its deterministic ID.
func (d *Dispatcher) enqueue(ctx context.Context, alertID string, it workItem) error {
	data, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("encode work item: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.AckWait/3)
	defer cancel()
	if _, err := d.js.Publish(pctx, fcmSubject, data, jetstream.WithMsgID(workID(alertID, it.N))); err != nil {
		d.metrics.NATSErrors.Inc()
		return fmt.Errorf("enqueue work item %d: %w", it.N, err)
	}
	return nil
}

// MaxConditionTopics is FCM's limit of topics in one condition.
const MaxConditionTopics = 5

// TopicConditions are the FCM conditions that together reach every device
// subscribed to any of topics, each within FCM's limit.
func TopicConditions(topics []string) []string {
	var conds []string
	for len(topics) > 0 {
		n := min(len(topics), MaxConditionTopics)
		parts := make([]string, n)
		for i, t := range topics[:n] {
			parts[i] = "'" + t + "' in topics"
		}
		conds = append(conds, strings.Join(parts, " || "))
		topics = topics[n:]
	}
	return conds
}

func baseLang(lang string) string {
	for i := range len(lang) {
		if lang[i] == '-' {
			return lang[:i]
		}
	}
	return lang
}

func joinTopics(ts []string) string {
	b, _ := json.Marshal(ts)
	return string(b)
}

func splitTopics(s string) []string {
	var ts []string
	if err := json.Unmarshal([]byte(s), &ts); err != nil {
		return nil
	}
	return ts
}
