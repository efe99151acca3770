package publisher_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/publisher"
)

func newAlert(headline string) alert.Alert {
	return alert.Alert{Headline: headline, Editor: "test"}.WithDefaults(time.Now())
}

func setup(t *testing.T) (jetstream.JetStream, *publisher.Publisher) {
	t.Helper()
	js := natstest.Start(t).JetStream()
	if _, err := publisher.EnsureStream(t.Context(), js, publisher.Config{}); err != nil {
		t.Fatal(err)
	}
	return js, publisher.New(js, publisher.Config{})
}

func TestPublish(t *testing.T) {
	js, p := setup(t)
	ctx := t.Context()

	tests := []struct {
		name      string
		alert     alert.Alert
		subject   string
		duplicate bool
	}{
		{"breaking lane", newAlert("انفجار في مرفأ بيروت"), "ajil.alerts.breaking", false},
		{"normal lane", func() alert.Alert {
			a := alert.Alert{Headline: "أسعار النفط ترتفع", Priority: alert.PriorityNormal}
			return a.WithDefaults(time.Now())
		}(), "ajil.alerts.normal", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Publish(ctx, tt.alert)
			if err != nil {
				t.Fatal(err)
			}
			if r.Duplicate || r.ID != tt.alert.ID || r.Stream != publisher.DefaultStream {
				t.Fatalf("receipt %+v", r)
			}
			st, _ := js.Stream(ctx, publisher.DefaultStream)
			m, err := st.GetMsg(ctx, r.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != tt.subject {
				t.Errorf("subject %q, want %q", m.Subject, tt.subject)
			}
			if got := m.Header.Get(jetstream.MsgIDHeader); got != tt.alert.ID {
				t.Errorf("Nats-Msg-Id %q, want %q", got, tt.alert.ID)
			}
			if got := m.Header.Get(publisher.HeaderKind); got != "published" {
				t.Errorf("kind header %q", got)
			}
			back, err := alert.Decode(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if back.Headline != tt.alert.Headline {
				t.Errorf("headline %q, want %q", back.Headline, tt.alert.Headline)
			}
		})
	}
}

func TestPublishSameIDTwice(t *testing.T) {
	js, p := setup(t)
	ctx := t.Context()
	a := newAlert("زلزال بقوة 6 درجات")
	first, err := p.Publish(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Publish(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("first %+v, second %+v; want the second reported as a duplicate of the first", first, second)
	}
	if n := len(natstest.Messages(ctx, t, js, publisher.DefaultStream)); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

func TestPublishInvalidPublishesNothing(t *testing.T) {
	js, p := setup(t)
	ctx := t.Context()
	a := newAlert("")
	_, err := p.Publish(ctx, a)
	fes := alert.FieldErrors(err)
	if len(fes) != 1 || fes[0].Field != "headline" {
		t.Fatalf("error %v; want one naming headline", err)
	}
	if n := len(natstest.Messages(ctx, t, js, publisher.DefaultStream)); n != 0 {
		t.Fatalf("stream holds %d messages, want 0", n)
	}
}

func TestPublishWithoutStream(t *testing.T) {
	js := natstest.Start(t).JetStream()
	p := publisher.New(js, publisher.Config{Timeout: 2 * time.Second})
	_, err := p.Publish(t.Context(), newAlert("خبر"))
	if !errors.Is(err, publisher.ErrNoStream) {
		t.Fatalf("error %v, want ErrNoStream", err)
	}
}

func TestEnsureStreamIsIdempotent(t *testing.T) {
	js := natstest.Start(t).JetStream()
	for range 2 {
		st, err := publisher.EnsureStream(t.Context(), js, publisher.Config{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		if cfg.Duplicates < 2*time.Minute || cfg.MaxAge != 7*24*time.Hour || cfg.Storage != jetstream.FileStorage {
			t.Fatalf("stream config %+v", cfg)
		}
	}
}
