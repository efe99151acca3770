package fcm_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode"
	"unicode/utf8"

	"firebase.google.com/go/v4/messaging"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/fcm"
)

var update = flag.Bool("update", false, "rewrite testdata/messages/*.json from the code")

type messageCase struct {
	Name      string          `json:"name"`
	Token     string          `json:"token"`
	Condition string          `json:"condition"`
	Alert     json.RawMessage `json:"alert"`
}

func loadMessageCases(t *testing.T) []messageCase {
	t.Helper()
	b, err := os.ReadFile("testdata/messages.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []messageCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatalf("testdata/messages.json: %v", err)
	}
	return cases
}

func decodeAlert(t *testing.T, raw []byte) alert.Alert {
	t.Helper()
	a, err := alert.Decode(raw)
	if err != nil {
		t.Fatalf("test alert: %v", err)
	}
	return a
}

// TestMessage compares each message with its golden file, at the fixed
// clock of a synctest bubble (2000-01-01T00:00:00Z), so the TTL is exact.
func TestMessage(t *testing.T) {
	for _, tc := range loadMessageCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := decodeAlert(t, tc.Alert)
				var m *messaging.Message
				if tc.Condition != "" {
					m = fcm.TopicMessage(a, tc.Condition)
				} else {
					m = fcm.Message(a, tc.Token)
				}
				got, err := json.MarshalIndent(m, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join("testdata", "messages", tc.Name+".json")
				if *update {
					if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, bytes.TrimSpace(want)) {
					t.Errorf("message differs from %s:\n%s", path, got)
				}
			})
		})
	}
}

// TestMessageTags checks what makes a correction replace the original on
// the device, and a retraction remove it.
func TestMessageTags(t *testing.T) {
	now := time.Now()
	orig := alert.Alert{ID: "orig-1", Headline: "عاجل: انفجار في بغداد"}.WithDefaults(now)
	corr := alert.Alert{ID: "corr-1", Kind: alert.KindCorrected, Ref: "orig-1", Headline: "عاجل: انفجاران في بغداد"}.WithDefaults(now)
	retr := alert.Alert{ID: "retr-1", Kind: alert.KindRetracted, Ref: "orig-1"}.WithDefaults(now)
	for _, a := range []alert.Alert{orig, corr} {
		m := fcm.Message(a, "tok")
		if m.Android.Notification.Tag != "orig-1" || m.APNS.Headers["apns-collapse-id"] != "orig-1" {
			t.Errorf("%s: tag %q, collapse id %q, want the original's ID", a.ID, m.Android.Notification.Tag, m.APNS.Headers["apns-collapse-id"])
		}
		if m.Data["id"] != a.ID {
			t.Errorf("%s: data id %q", a.ID, m.Data["id"])
		}
	}
	m := fcm.Message(retr, "tok")
	if m.Notification != nil || m.Android.Notification != nil || m.APNS.Payload.Aps.Alert != nil {
		t.Errorf("retraction shows a notification: %+v", m)
	}
	if m.Data["kind"] != "retracted" || m.Data["ref"] != "orig-1" || m.APNS.Headers["apns-collapse-id"] != "orig-1" ||
		m.APNS.Headers["apns-push-type"] != "background" || !m.APNS.Payload.Aps.ContentAvailable {
		t.Errorf("retraction = data %v, headers %v", m.Data, m.APNS.Headers)
	}
}

func TestTitles(t *testing.T) {
	ch := newLogOnly(t, fcm.Config{Titles: map[string]string{"AR": "خبر عاجل", "fr": "Alerte"}, FallbackTitle: "News"})
	now := time.Now()
	for lang, want := range map[string]string{"ar-EG": "خبر عاجل", "fr": "Alerte", "en-GB": "Breaking", "de": "News"} {
		a := alert.Alert{Headline: "x", Lang: lang}.WithDefaults(now)
		if got := ch.Message(a, "tok").Notification.Title; got != want {
			t.Errorf("title for %s = %q, want %q", lang, got, want)
		}
	}
	a := alert.Alert{Headline: "x", Lang: "de"}.WithDefaults(now)
	if got := fcm.Message(a, "tok").Notification.Title; got != fcm.DefaultFallbackTitle {
		t.Errorf("default fallback title = %q", got)
	}
}

// vowelled is fully vowelled Arabic, as an editor types it.
const vowelled = "قَالَتِ الشُّرْطَةُ العِرَاقِيَّةُ إِنَّ انْفِجَارًا وَقَعَ صَبَاحَ اليَوْمِ فِي حَيِّ الكَرَّادَةِ بِبَغْدَادَ "

// stacked is Arabic words whose every letter carries five marks: twelve
// bytes a character, the heaviest text the headline limits let through.
const stacked = "بّٰٓٔ" + "تّٰٓٔ" + "ثّٰٓٔ" + "جّٰٓٔ" + " "

// headlineOf repeats text to the longest headline that stays within both
// MaxHeadlineGraphemes and MaxHeadlineBytes.
func headlineOf(text string) string {
	h := ""
	for {
		next := strings.TrimSpace(h + text)
		if alert.GraphemeCount(next) > alert.MaxHeadlineGraphemes || len(next) > alert.MaxHeadlineBytes {
			return strings.TrimSpace(h)
		}
		h += text
	}
}

func urlOf(n int, filler string) string {
	u := "https://example.com/news/2024/03/baghdad?q="
	for len(u)+len(filler) <= n {
		u += filler
	}
	return u + strings.Repeat("a", n-len(u))
}

func jsonLen(t *testing.T, m *messaging.Message) int {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// TestMessageFitsLimit checks that the SDK's JSON of a message stays within
// FCM's limit with Arabic at every input limit, cutting the headline
// between whole characters, harakat kept with their letters.
func TestMessageFitsLimit(t *testing.T) {
	token := strings.Repeat("t", fcm.TokenReserve) // sized for exactly
	longID := strings.Repeat("a", alert.MaxIDBytes)
	longRef := strings.Repeat("b", alert.MaxIDBytes)
	tests := []struct {
		name     string
		alert    alert.Alert
		topic    bool
		limit    int
		cut      bool // the headline must be cut to fit
		dropsURL bool
	}{
		{"vowelled headline, URL and IDs at their limits", alert.Alert{ID: longID, Kind: alert.KindCorrected, Ref: longRef,
			Headline: headlineOf(vowelled), URL: urlOf(alert.MaxURLBytes, "x")}, false, fcm.MaxMessageBytes, false, false},
		{"stacked marks at the headline limits", alert.Alert{ID: longID, Headline: headlineOf(stacked)}, false, fcm.MaxMessageBytes, false, false},
		{"stacked marks, URL and IDs at their limits", alert.Alert{ID: longID, Kind: alert.KindCorrected, Ref: longRef,
			Headline: headlineOf(stacked), URL: urlOf(alert.MaxURLBytes, "x")}, false, fcm.MaxMessageBytes, true, false},
		{"URL that JSON escaping makes huge", alert.Alert{Headline: headlineOf(stacked), URL: urlOf(alert.MaxURLBytes, "&a")}, false, fcm.MaxMessageBytes, false, true},
		{"topic message", alert.Alert{ID: longID, Headline: headlineOf(vowelled), URL: urlOf(1200, "x")}, true, fcm.MaxTopicMessageBytes, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.alert.WithDefaults(time.Now())
			if err := a.Validate(); err != nil {
				t.Fatalf("test alert is not one an editor could send: %v", err)
			}
			var m *messaging.Message
			if tt.topic {
				m = fcm.TopicMessage(a, "'breaking' in topics")
			} else {
				m = fcm.Message(a, token)
			}
			size := jsonLen(t, m)
			if size > tt.limit {
				t.Fatalf("message is %d bytes, limit %d", size, tt.limit)
			}
			body := m.Notification.Body
			if !tt.cut {
				if body != a.Headline {
					t.Errorf("headline cut to %q though it fits", body)
				}
			} else {
				if size < tt.limit-64 {
					t.Errorf("message is %d bytes: cut far more than the limit of %d needs", size, tt.limit)
				}
				cut, ok := strings.CutSuffix(body, alert.Ellipsis)
				if !ok || !strings.HasPrefix(a.Headline, cut) || cut == "" {
					t.Fatalf("body %q is not a cut of the headline with an ellipsis", body)
				}
				if !utf8.ValidString(body) {
					t.Errorf("body is not valid UTF-8")
				}
				if r, _ := utf8.DecodeRuneInString(a.Headline[len(cut):]); unicode.Is(unicode.Mn, r) {
					t.Errorf("cut separates a letter from its mark %U", r)
				}
			}
			if _, has := m.Data["url"]; a.URL != "" && has == tt.dropsURL {
				t.Errorf("url kept = %v, want %v", has, !tt.dropsURL)
			}
		})
	}
}

// TestMessageLimitBoundary finds the URL length that puts a message at
// exactly MaxMessageBytes: there the headline is whole, one letter more
// and it is cut.
func TestMessageLimitBoundary(t *testing.T) {
	token := strings.Repeat("t", fcm.TokenReserve)
	headline := headlineOf(stacked)
	base := alert.Alert{ID: "boundary-1", Headline: headline, URL: urlOf(100, "x")}.WithDefaults(time.Now())
	room := fcm.MaxMessageBytes - jsonLen(t, fcm.Message(base, token))
	a := base
	a.URL = urlOf(100+room, "x")
	m := fcm.Message(a, token)
	if n := jsonLen(t, m); n != fcm.MaxMessageBytes || m.Notification.Body != headline {
		t.Fatalf("at the limit: %d bytes, body cut = %v", n, m.Notification.Body != headline)
	}
	a.Headline += "ب"
	m = fcm.Message(a, token)
	if n := jsonLen(t, m); n > fcm.MaxMessageBytes || !strings.HasSuffix(m.Notification.Body, alert.Ellipsis) {
		t.Errorf("one letter over: %d bytes, body %q", n, m.Notification.Body)
	}
}
