package alert_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
)

// validAlert is an alert every rule accepts, with text that exercises the
// Arabic handling: harakat, tatweel, an RLM, Arabic-Indic digits and emoji.
func validAlert() alert.Alert {
	return alert.Alert{
		ID:        "0190d7a0-7c1e-7000-8000-000000000001",
		Kind:      alert.KindPublished,
		Headline:  "عاجـل: مَقْتَلُ ٣ أشخاص في انفجار ببغداد \u200f🇮🇶",
		Body:      "قالت الشرطة العراقية إن انفجارا وقع صباح اليوم في حي الكرادة.",
		URL:       "https://example.com/news/2024/03/baghdad?ref=push",
		Lang:      "ar-IQ",
		Topics:    []string{"breaking", "iraq"},
		Priority:  alert.PriorityBreaking,
		TTL:       90 * time.Minute,
		Editor:    "ليلى حسن",
		CreatedAt: time.Date(2024, 3, 1, 9, 30, 0, 123456789, time.UTC),
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*alert.Alert)
		fields []string // the fields named by the errors, in order; none for a valid alert
	}{
		{"valid", func(*alert.Alert) {}, nil},
		{"id empty", func(a *alert.Alert) { a.ID = "" }, []string{"id"}},
		{"id with a space", func(a *alert.Alert) { a.ID = "story 1" }, []string{"id"}},
		{"id starting with a dash", func(a *alert.Alert) { a.ID = "-1" }, []string{"id"}},
		{"id too long", func(a *alert.Alert) { a.ID = strings.Repeat("a", alert.MaxIDBytes+1) }, []string{"id"}},
		{"id at the limit", func(a *alert.Alert) { a.ID = strings.Repeat("a", alert.MaxIDBytes) }, nil},
		{"editor's idempotency key", func(a *alert.Alert) { a.ID = "desk:2024-03-01.baghdad_1" }, nil},
		{"unknown kind", func(a *alert.Alert) { a.Kind = "deleted" }, []string{"kind"}},
		{"published with a ref", func(a *alert.Alert) { a.Ref = "other" }, []string{"ref"}},
		{"correction without a ref", func(a *alert.Alert) { a.Kind = alert.KindCorrected }, []string{"ref"}},
		{"correction of another alert", func(a *alert.Alert) { a.Kind, a.Ref = alert.KindCorrected, "orig-1" }, nil},
		{"retraction of itself", func(a *alert.Alert) { a.Kind, a.Ref = alert.KindRetracted, a.ID }, []string{"ref"}},
		{"retraction without a headline", func(a *alert.Alert) { a.Kind, a.Ref, a.Headline = alert.KindRetracted, "orig-1", "" }, nil},
		{"headline empty", func(a *alert.Alert) { a.Headline = "" }, []string{"headline"}},
		{"headline only spaces", func(a *alert.Alert) { a.Headline = " \t\n " }, []string{"headline"}},
		{"headline invalid UTF-8", func(a *alert.Alert) { a.Headline = "عاجل \xff" }, []string{"headline"}},
		{"headline with a control character", func(a *alert.Alert) { a.Headline = "عاجل\x07" }, []string{"headline"}},
		{"headline over the limit", func(a *alert.Alert) { a.Headline = strings.Repeat("ب", alert.MaxHeadlineGraphemes+1) }, []string{"headline"}},
		{
			"headline at the limit counted in graphemes, not bytes",
			func(a *alert.Alert) { a.Headline = strings.Repeat("بَّ", alert.MaxHeadlineGraphemes) },
			nil,
		},
		{
			"headline of few characters but stacked marks over the byte limit",
			func(a *alert.Alert) { a.Headline = "ب" + strings.Repeat("\u064e", alert.MaxHeadlineBytes) },
			[]string{"headline"},
		},
		{"body invalid UTF-8", func(a *alert.Alert) { a.Body = "\xc3\x28" }, []string{"body"}},
		{"body over the limit", func(a *alert.Alert) { a.Body = strings.Repeat("a", alert.MaxBodyBytes+1) }, []string{"body"}},
		{"body at the limit", func(a *alert.Alert) { a.Body = strings.Repeat("a", alert.MaxBodyBytes) }, nil},
		{"body with paragraphs and tabs", func(a *alert.Alert) { a.Body = "سطر\n\tسطر\r\n" }, nil},
		{"url not http", func(a *alert.Alert) { a.URL = "ftp://example.com/a" }, []string{"url"}},
		{"url without host", func(a *alert.Alert) { a.URL = "https:///news" }, []string{"url"}},
		{"url relative", func(a *alert.Alert) { a.URL = "/news/1" }, []string{"url"}},
		{"url over the limit", func(a *alert.Alert) { a.URL = "https://example.com/" + strings.Repeat("a", alert.MaxURLBytes) }, []string{"url"}},
		{"url empty", func(a *alert.Alert) { a.URL = "" }, nil},
		{"lang empty", func(a *alert.Alert) { a.Lang = "" }, []string{"lang"}},
		{"lang a word", func(a *alert.Alert) { a.Lang = "arabic" }, []string{"lang"}},
		{"lang underscore", func(a *alert.Alert) { a.Lang = "ar_EG" }, []string{"lang"}},
		{"too many topics", func(a *alert.Alert) {
			a.Topics = nil
			for i := range alert.MaxTopics + 1 {
				a.Topics = append(a.Topics, "t"+strings.Repeat("x", i))
			}
		}, []string{"topics"}},
		{"topic upper case", func(a *alert.Alert) { a.Topics = []string{"Sports"} }, []string{"topics"}},
		{"topic Arabic", func(a *alert.Alert) { a.Topics = []string{"رياضة"} }, []string{"topics"}},
		{"topic twice", func(a *alert.Alert) { a.Topics = []string{"breaking", "breaking"} }, []string{"topics"}},
		{"unknown priority", func(a *alert.Alert) { a.Priority = "urgent" }, []string{"priority"}},
		{"ttl under a minute", func(a *alert.Alert) { a.TTL = 30 * time.Second }, []string{"ttl"}},
		{"ttl over 28 days", func(a *alert.Alert) { a.TTL = alert.MaxTTL + time.Millisecond }, []string{"ttl"}},
		{"ttl at the minimum", func(a *alert.Alert) { a.TTL = alert.MinTTL }, nil},
		{"ttl at the maximum", func(a *alert.Alert) { a.TTL = alert.MaxTTL }, nil},
		{"ttl negative", func(a *alert.Alert) { a.TTL = -time.Hour }, []string{"ttl"}},
		{"editor too long", func(a *alert.Alert) { a.Editor = strings.Repeat("a", alert.MaxEditorBytes+1) }, []string{"editor"}},
		{"editor with a control character", func(a *alert.Alert) { a.Editor = "ليلى\x00" }, []string{"editor"}},
		{"created_at unset", func(a *alert.Alert) { a.CreatedAt = time.Time{} }, []string{"created_at"}},
		{"every problem reported, in order", func(a *alert.Alert) {
			*a = alert.Alert{Kind: "x", Headline: "", Lang: "?", Topics: []string{"A"}, Priority: "p"}
		}, []string{"id", "kind", "headline", "lang", "topics", "priority", "ttl", "created_at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validAlert()
			tt.change(&a)
			err := a.Validate()
			var got []string
			for _, fe := range alert.FieldErrors(err) {
				got = append(got, fe.Field)
				if fe.Problem == "" || fe.Fix == "" {
					t.Errorf("%s: error %q lacks a problem or a fix", fe.Field, fe.Error())
				}
				if !strings.HasPrefix(fe.Error(), fe.Field+": ") {
					t.Errorf("error %q does not start with its field", fe.Error())
				}
			}
			if !slices.Equal(got, tt.fields) {
				t.Fatalf("Validate() fields = %q, want %q (err: %v)", got, tt.fields, err)
			}
			if (err != nil) != errors.Is(err, alert.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = %v", err, errors.Is(err, alert.ErrInvalid))
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.FixedZone("AST", 3*3600))
	tests := []struct {
		name string
		in   alert.Alert
		want func(t *testing.T, a alert.Alert)
	}{
		{"breaking", alert.Alert{Headline: "عاجل"}, func(t *testing.T, a alert.Alert) {
			if a.Kind != alert.KindPublished || a.Lang != "ar" || !slices.Equal(a.Topics, []string{"breaking"}) ||
				a.Priority != alert.PriorityBreaking || a.TTL != alert.DefaultTTL || a.ID == "" {
				t.Errorf("defaults = %+v", a)
			}
			if !a.CreatedAt.Equal(now) || a.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt = %v, want %v in UTC", a.CreatedAt, now)
			}
			if err := a.Validate(); err != nil {
				t.Errorf("defaulted alert invalid: %v", err)
			}
		}},
		{"normal lasts longer", alert.Alert{Headline: "x", Priority: alert.PriorityNormal}, func(t *testing.T, a alert.Alert) {
			if a.TTL != alert.DefaultNormalTTL {
				t.Errorf("TTL = %v, want %v", a.TTL, alert.DefaultNormalTTL)
			}
		}},
		{"set fields kept", validAlert(), func(t *testing.T, a alert.Alert) {
			want := validAlert()
			if a.ID != want.ID || a.TTL != want.TTL || a.Lang != want.Lang || !a.CreatedAt.Equal(want.CreatedAt) {
				t.Errorf("WithDefaults changed set fields: %+v", a)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.want(t, tt.in.WithDefaults(now)) })
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a, b := alert.NewID(), alert.NewID()
	if a == b || a > b {
		t.Errorf("NewID() gave %q then %q, want increasing", a, b)
	}
}

func TestDir(t *testing.T) {
	for lang, want := range map[string]string{"ar": "rtl", "ar-EG": "rtl", "FA": "rtl", "he": "rtl", "en": "ltr", "fr-CA": "ltr", "": "ltr"} {
		if got := alert.Dir(lang); got != want {
			t.Errorf("Dir(%q) = %q, want %q", lang, got, want)
		}
	}
}
