package fcm

import (
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/ajil-news/ajil/alert"
)

const (
	// MaxMessageBytes bounds the JSON encoding of a message to one device,
	// as the SDK encodes it, token and all. FCM limits a message's payload
	// to 4 KB without saying exactly what it counts; bounding the whole
	// message is the reading under which FCM can never refuse one for size.
	MaxMessageBytes = 4096
	// MaxTopicMessageBytes is the same bound for topic and condition
	// messages, which FCM holds to 2 KB.
	MaxTopicMessageBytes = 2048
	// TokenReserve is the token length every message to a device is sized
	// for, so that all devices get the same text: FCM tokens are about 160
	// bytes today. A longer token is sized for as it is.
	TokenReserve = 256

	// DefaultTitleArabic is the notification title of Arabic alerts:
	// "urgent", as Arabic newsrooms label breaking news.
	DefaultTitleArabic = "عاجل"
	// DefaultTitleEnglish is the notification title of English alerts.
	DefaultTitleEnglish = "Breaking"
	// DefaultFallbackTitle is the title of alerts in a language without
	// one: English is the language most readers of any desk can read.
	DefaultFallbackTitle = DefaultTitleEnglish
)

// DefaultTitles returns the notification titles by base language.
func DefaultTitles() map[string]string {
	return map[string]string{"ar": DefaultTitleArabic, "en": DefaultTitleEnglish}
}

// titles picks a notification title by the alert's language.
type titles struct {
	byLang   map[string]string // by lower-case base language
	fallback string
}

func defaultTitles() titles { return newTitles(nil, "") }

// newTitles merges custom over the defaults.
func newTitles(custom map[string]string, fallback string) titles {
	t := titles{byLang: DefaultTitles(), fallback: fallback}
	for lang, title := range custom {
		t.byLang[baseLang(lang)] = title
	}
	if t.fallback == "" {
		t.fallback = DefaultFallbackTitle
	}
	return t
}

func (t titles) title(lang string) string {
	if s, ok := t.byLang[baseLang(lang)]; ok {
		return s
	}
	return t.fallback
}

func baseLang(lang string) string {
	base, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(lang)), "-")
	return base
}

// Message returns the FCM message that tells the device behind token about
// a, with the default titles, its time to live counted from now. It does no
// I/O: `ajil publish --dry-run` prints it.
//
// A published or corrected alert is a notification: the title by language,
// the headline as the body (cut with alert.Truncate so the message's JSON
// fits MaxMessageBytes), data {id, kind, ref, url, lang, dir}, high
// priority (APNs 10, time-sensitive, with sound) when breaking, normal (APNs
// 5) otherwise, a time to live up to the alert's expiry, and a tag and APNs
// collapse ID of the story's first alert, so a correction replaces the
// original on the device. A retraction is a silent data message {id, kind,
// ref} that tells the app to remove the original.
func Message(a alert.Alert, token string) *messaging.Message {
	return defaultTitles().message(a, token, time.Now())
}

// TopicMessage is Message for an FCM topic condition such as
// "'breaking' in topics", sized for MaxTopicMessageBytes.
func TopicMessage(a alert.Alert, condition string) *messaging.Message {
	return defaultTitles().topicMessage(a, condition, time.Now())
}

func (t titles) message(a alert.Alert, token string, now time.Time) *messaging.Message {
	m := t.payload(a, now)
	m.Token = strings.Repeat("x", max(len(token), TokenReserve))
	fit(m, a, MaxMessageBytes)
	m.Token = token
	return m
}

func (t titles) topicMessage(a alert.Alert, condition string, now time.Time) *messaging.Message {
	m := t.payload(a, now)
	m.Condition = condition
	fit(m, a, MaxTopicMessageBytes)
	return m
}

// payload is the message for a without its target.
func (t titles) payload(a alert.Alert, now time.Time) *messaging.Message {
	ttl := max(a.ExpiresAt().Sub(now).Truncate(time.Second), 0)
	expiration := strconv.FormatInt(a.ExpiresAt().Unix(), 10)
	tag := a.ID
	if a.Ref != "" {
		tag = a.Ref // the story's first alert: the notification to replace
	}
	if a.Kind == alert.KindRetracted {
		return &messaging.Message{
			Data:    map[string]string{"id": a.ID, "kind": string(a.Kind), "ref": a.Ref},
			Android: &messaging.AndroidConfig{Priority: "normal", TTL: &ttl},
			APNS: &messaging.APNSConfig{
				Headers: map[string]string{
					"apns-push-type":   "background",
					"apns-priority":    "5", // APNs refuses background pushes at 10
					"apns-collapse-id": tag,
					"apns-expiration":  expiration,
				},
				Payload: &messaging.APNSPayload{Aps: &messaging.Aps{ContentAvailable: true}},
			},
		}
	}

	data := map[string]string{"id": a.ID, "kind": string(a.Kind), "lang": a.Lang, "dir": a.Dir()}
	if a.Ref != "" {
		data["ref"] = a.Ref
	}
	if a.URL != "" {
		data["url"] = a.URL
	}
	m := &messaging.Message{
		Notification: &messaging.Notification{Title: t.title(a.Lang), Body: strings.TrimSpace(a.Headline)},
		Data:         data,
		Android: &messaging.AndroidConfig{
			Priority:     "normal",
			TTL:          &ttl,
			Notification: &messaging.AndroidNotification{Tag: tag},
		},
		APNS: &messaging.APNSConfig{Headers: map[string]string{
			"apns-push-type":   "alert",
			"apns-priority":    "5",
			"apns-collapse-id": tag,
			"apns-expiration":  expiration,
		}},
	}
	if a.Priority == alert.PriorityBreaking {
		m.Android.Priority = "high"
		m.APNS.Headers["apns-priority"] = "10"
		m.APNS.Payload = &messaging.APNSPayload{Aps: &messaging.Aps{
			Sound:      "default",
			CustomData: map[string]any{"interruption-level": "time-sensitive"},
		}}
	}
	return m
}

// fit cuts the notification body, and as a last resort drops the URL, until
// the message's JSON, as the SDK encodes it, is at most limit bytes. The body
// is cut from the headline each time: JSON escaping can make a cut text
// longer than its bytes, so the loop measures again until it fits.
func fit(m *messaging.Message, a alert.Alert, limit int) {
	if m.Notification == nil {
		return // a retraction: IDs only, always small
	}
	headline := m.Notification.Body
	for {
		size := jsonSize(m)
		if size <= limit {
			return
		}
		body := m.Notification.Body
		if body == "" {
			if _, ok := m.Data["url"]; !ok {
				return // nothing left to cut; FCM will say what is wrong
			}
			// The app can still open the story by its ID.
			m.Data = maps.Clone(m.Data)
			delete(m.Data, "url")
			m.Notification.Body = headline
			continue
		}
		m.Notification.Body = alert.Truncate(headline, len(body)-(size-limit))
	}
}

func jsonSize(m *messaging.Message) int {
	b, err := json.Marshal(m)
	if err != nil {
		return 0 // the SDK fails to encode it too, and says why
	}
	return len(b)
}
