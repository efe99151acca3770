package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/publisher"
)

// replayIdle is how long a replay waits for the next stored alert before
// concluding it has read them all.
const replayIdle = 2 * time.Second

// ReplayEndpoint queues every alert published since since for delivery
// to endpoint id again, as it was first sent (same webhook-id, so a partner
// that already has one drops it). The dispatcher skips the alerts the
// endpoint's filters exclude. It returns how many it queued.
func ReplayEndpoint(ctx context.Context, js jetstream.JetStream, id string, since time.Time) (int, error) {
	cons, err := js.OrderedConsumer(ctx, publisher.DefaultStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return 0, fmt.Errorf("replay: read %s: %w", publisher.DefaultStream, err)
	}
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	n := 0
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return n, fmt.Errorf("replay: fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			a, err := alert.Decode(m.Data())
			if err != nil {
				continue // rejected when it was first read
			}
			item := hookItem{V: 1, Alert: m.Data(), Endpoint: id, Planned: time.Now().UTC(), Replay: true}
			if err := publishHook(ctx, js, hookID(a.ID, id)+"/replay/"+stamp, item); err != nil {
				return n, err
			}
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return n, fmt.Errorf("replay: fetch: %w", err)
		}
		if got == 0 {
			info, err := cons.Info(ctx)
			if err != nil || info.NumPending == 0 {
				return n, nil
			}
			select {
			case <-ctx.Done():
				return n, ctx.Err()
			case <-time.After(replayIdle / 10):
			}
		}
	}
}

// DeadLetter is one message in the dead-letter stream.
type DeadLetter struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"` // where it came from
	Reason  string    `json:"reason"`
	Bytes   int       `json:"bytes"`
}

// DeadLetters lists up to limit dead letters, oldest first.
func DeadLetters(ctx context.Context, js jetstream.JetStream, limit int) ([]DeadLetter, error) {
	st, err := js.Stream(ctx, DefaultDeadStream)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	var out []DeadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0 && len(out) < limit; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		out = append(out, DeadLetter{Seq: m.Sequence, Time: m.Time, Subject: m.Header.Get(HeaderOrigSubject), Reason: m.Header.Get(HeaderReason), Bytes: len(m.Data)})
	}
	return out, nil
}

// ReplayDead puts dead letter seq back where it came from and removes it
// from the dead-letter stream. Delivery marks keep devices and endpoints
// that already have the alert from getting it twice.
func ReplayDead(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	st, err := js.Stream(ctx, DefaultDeadStream)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	subject := m.Header.Get(HeaderOrigSubject)
	if subject == "" {
		return fmt.Errorf("dead letter %d: no original subject", seq)
	}
	out := nats.NewMsg(subject)
	out.Data = m.Data
	msgID := "dead/" + strconv.FormatUint(seq, 10)
	if _, err := js.PublishMsg(ctx, out, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("replay dead letter %d to %s: %w", seq, subject, err)
	}
	if err := st.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("remove replayed dead letter %d: %w", seq, err)
	}
	return nil
}
