package natstest_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/internal/natstest"
)

func TestRestartKeepsStream(t *testing.T) {
	s := natstest.Start(t)
	js := s.JetStream()
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("خبر")); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	js = s.JetStream()
	msgs := natstest.Messages(ctx, t, js, "T")
	if len(msgs) != 1 || string(msgs[0].Data) != "خبر" {
		t.Fatalf("after restart got %d messages; want the one published", len(msgs))
	}
}
