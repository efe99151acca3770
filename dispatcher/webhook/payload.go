package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ajil-news/ajil/alert"
)

// MaxPayloadBytes bounds a webhook body. The alert's own limits keep a
// payload far under it unless its text is mostly characters JSON must
// escape; then the body is shortened. 20 KiB passes every web framework's
// default request limit and keeps a work item small.
const MaxPayloadBytes = 20 << 10

// EventType is the Standard Webhooks event type of an alert kind:
// alert.published, alert.corrected or alert.retracted.
func EventType(kind alert.Kind) string { return "alert." + string(kind) }

// event is the Standard Webhooks envelope.
type event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      data      `json:"data"`
}

// data is the alert as partners see it. Every key is always present except
// ref, which only corrections and retractions carry.
type data struct {
	ID          string         `json:"id"`
	Ref         string         `json:"ref,omitempty"`
	Headline    string         `json:"headline"`
	Body        string         `json:"body"`
	URL         string         `json:"url"`
	Lang        string         `json:"lang"`
	Dir         string         `json:"dir"`
	Topics      []string       `json:"topics"`
	Priority    alert.Priority `json:"priority"`
	PublishedAt time.Time      `json:"published_at"`
	ExpiresAt   time.Time      `json:"expires_at"`
}

// Payload is the webhook body for a: the Standard Webhooks envelope with
// the event type of a's kind, the timestamp now, and the alert as data.
// Pass the time the event happened (when the alert was planned), not the
// attempt's: every retry must carry the same body.
//
// Text is written as is, without HTML escaping, so Arabic and '&' arrive
// byte for byte as the editor wrote them. The result is at most
// MaxPayloadBytes; if escaping alone would push it over, the body is
// shortened with alert.Truncate.
func Payload(a alert.Alert, now time.Time) ([]byte, error) {
	switch a.Kind {
	case alert.KindPublished, alert.KindCorrected, alert.KindRetracted:
	default:
		return nil, fmt.Errorf("webhook payload: alert %s: unknown kind %q", a.ID, a.Kind)
	}
	topics := a.Topics
	if topics == nil {
		topics = []string{}
	}
	ev := event{
		Type:      EventType(a.Kind),
		Timestamp: now.UTC(),
		Data: data{
			ID: a.ID, Ref: a.Ref, Headline: a.Headline, Body: a.Body, URL: a.URL,
			Lang: a.Lang, Dir: a.Dir(), Topics: topics, Priority: a.Priority,
			PublishedAt: a.CreatedAt.UTC(), ExpiresAt: a.ExpiresAt().UTC(),
		},
	}
	for {
		b, err := encode(ev)
		if err != nil {
			return nil, fmt.Errorf("webhook payload: alert %s: %w", a.ID, err)
		}
		over := len(b) - MaxPayloadBytes
		if over <= 0 {
			return b, nil
		}
		if ev.Data.Body == "" {
			return nil, fmt.Errorf("webhook payload: alert %s: %d bytes without a body, over the limit of %d", a.ID, len(b), MaxPayloadBytes)
		}
		// Each byte cut from the body removes at least one encoded byte,
		// so this ends within a few rounds.
		ev.Data.Body = alert.Truncate(ev.Data.Body, max(len(ev.Data.Body)-over, 0))
	}
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
