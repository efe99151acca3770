package webhook_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden payloads in testdata/payloads")

// planned is when the test alerts were planned: the event's timestamp.
var planned = time.Date(2024, 3, 1, 9, 30, 1, 500_000_000, time.FixedZone("Baghdad", 3*3600))

func readAlert(t testing.TB, name string) alert.Alert {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/alerts", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := alert.Decode(bytes.TrimSpace(b))
	if err != nil {
		t.Fatalf("testdata/alerts/%s.json: %v", name, err)
	}
	return a
}

func TestPayloadGolden(t *testing.T) {
	for _, tt := range []struct {
		alert, event string
	}{
		{"published", "alert.published"},
		{"corrected", "alert.corrected"},
		{"retracted", "alert.retracted"},
	} {
		t.Run(tt.alert, func(t *testing.T) {
			a := readAlert(t, tt.alert)
			got, err := webhook.Payload(a, planned)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata/payloads", tt.alert+".json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.TrimSuffix(want, []byte("\n"))) {
				t.Errorf("payload differs from %s (rerun with -update if intended)\ngot:  %s\nwant: %s", golden, got, want)
			}

			var ev struct {
				Type      string `json:"type"`
				Timestamp string `json:"timestamp"`
				Data      struct {
					ID, Ref, Headline, Body, URL, Lang, Dir, Priority string
					Topics                                            []string
					PublishedAt                                       string `json:"published_at"`
					ExpiresAt                                         string `json:"expires_at"`
				} `json:"data"`
			}
			if err := json.Unmarshal(got, &ev); err != nil {
				t.Fatalf("payload is not JSON: %v", err)
			}
			if ev.Type != tt.event || ev.Type != webhook.EventType(a.Kind) {
				t.Errorf("type = %q, want %q", ev.Type, tt.event)
			}
			if _, err := time.Parse(time.RFC3339, ev.Timestamp); err != nil || !strings.HasSuffix(ev.Timestamp, "Z") {
				t.Errorf("timestamp %q is not RFC 3339 in UTC: %v", ev.Timestamp, err)
			}
			d := ev.Data
			if d.ID != a.ID || d.Ref != a.Ref || d.Headline != a.Headline || d.Body != a.Body || d.URL != a.URL ||
				d.Lang != a.Lang || d.Dir != a.Dir() || d.Priority != string(a.Priority) || strings.Join(d.Topics, ",") != strings.Join(a.Topics, ",") {
				t.Errorf("data %+v does not carry the alert %+v", d, a)
			}
			if d.PublishedAt != a.CreatedAt.Format(time.RFC3339Nano) || d.ExpiresAt != a.ExpiresAt().Format(time.RFC3339Nano) {
				t.Errorf("published_at %s, expires_at %s; want %s and %s", d.PublishedAt, d.ExpiresAt, a.CreatedAt, a.ExpiresAt())
			}
			// Byte-exact: no \u0026 for '&', no \u003c for '<', no \u escapes of Arabic.
			for _, s := range []string{a.Headline, a.URL} {
				if !bytes.Contains(got, []byte(s)) {
					t.Errorf("payload does not contain %q byte for byte", s)
				}
			}
			if bytes.Contains(got, []byte(`\u00`)) {
				t.Errorf("payload has HTML escapes: %s", got)
			}
			if len(got) > webhook.MaxPayloadBytes {
				t.Errorf("payload is %d bytes, over %d", len(got), webhook.MaxPayloadBytes)
			}
		})
	}
}

func TestPayloadDirection(t *testing.T) {
	for _, tt := range []struct{ lang, dir string }{
		{"ar", "rtl"}, {"ar-IQ", "rtl"}, {"fa", "rtl"}, {"he", "rtl"}, {"en", "ltr"}, {"fr-CA", "ltr"},
	} {
		a := readAlert(t, "published")
		a.Lang = tt.lang
		b, err := webhook.Payload(a, planned)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"dir":"`+tt.dir+`"`)) {
			t.Errorf("lang %s: want dir %s in %s", tt.lang, tt.dir, b)
		}
	}
}

// TestPayloadLimit feeds alerts at every limit Validate allows, with text
// chosen so that JSON escaping makes it as large as it can get.
func TestPayloadLimit(t *testing.T) {
	longURL := "https://example.com/?" + strings.Repeat(`q="&`, (alert.MaxURLBytes-21)/4)
	topics := make([]string, alert.MaxTopics)
	for i := range topics {
		topics[i] = strings.Repeat(string(rune('a'+i)), 63)
	}
	for _, tt := range []struct {
		name      string
		body      string
		truncated bool
		minBytes  int // the payload is at least this long: cut no more than needed
	}{
		{"Arabic body at the byte limit", strings.Repeat("خبر ", alert.MaxBodyBytes/len("خبر ")), false, 0},
		{"line separators at the byte limit", strings.Repeat("ب\u2028\u2028\u2028", alert.MaxBodyBytes/11), false, 0},
		{"quotes between letters at the byte limit", strings.Repeat("a"+strings.Repeat(`"`, 63), alert.MaxBodyBytes/64), true, webhook.MaxPayloadBytes - 2*127},
		// Truncate trims punctuation before the ellipsis: nothing is left.
		{"only quotes at the byte limit", strings.Repeat(`"`, alert.MaxBodyBytes), true, 0},
		{"only backslashes at the byte limit", strings.Repeat(`\`, alert.MaxBodyBytes), true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := readAlert(t, "published")
			a.ID = strings.Repeat("i", alert.MaxIDBytes)
			a.Headline = strings.Repeat(`"`, alert.MaxHeadlineGraphemes)
			a.Body = tt.body
			a.URL = longURL
			a.Topics = topics
			if err := a.Validate(); err != nil {
				t.Fatalf("test alert is not valid: %v", err)
			}
			b, err := webhook.Payload(a, planned)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > webhook.MaxPayloadBytes {
				t.Fatalf("payload is %d bytes, over %d", len(b), webhook.MaxPayloadBytes)
			}
			var ev struct {
				Data struct{ Headline, Body, URL string } `json:"data"`
			}
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatalf("payload is not JSON: %v", err)
			}
			if ev.Data.Headline != a.Headline || ev.Data.URL != a.URL {
				t.Errorf("headline or URL changed; only the body may be shortened")
			}
			if !tt.truncated {
				if ev.Data.Body != a.Body {
					t.Errorf("body shortened though it fits")
				}
				return
			}
			if !strings.HasSuffix(ev.Data.Body, alert.Ellipsis) || len(ev.Data.Body) >= len(a.Body) {
				t.Errorf("body of %d bytes not shortened with an ellipsis: %d bytes", len(a.Body), len(ev.Data.Body))
			}
			if len(b) < tt.minBytes {
				t.Errorf("payload is %d bytes: the body was cut more than needed", len(b))
			}
		})
	}
}

func TestPayloadUnknownKind(t *testing.T) {
	a := readAlert(t, "published")
	a.Kind = "deleted"
	if _, err := webhook.Payload(a, planned); err == nil || !strings.Contains(err.Error(), `"deleted"`) {
		t.Fatalf("err = %v, want one naming the unknown kind", err)
	}
}

func TestEventType(t *testing.T) {
	for kind, want := range map[alert.Kind]string{
		alert.KindPublished: "alert.published",
		alert.KindCorrected: "alert.corrected",
		alert.KindRetracted: "alert.retracted",
	} {
		if got := webhook.EventType(kind); got != want {
			t.Errorf("EventType(%s) = %q, want %q", kind, got, want)
		}
	}
}
