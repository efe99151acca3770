package natstest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
)

// An R3 stream keeps taking and serving messages when its leader's node
// dies, and the node catches up when it comes back.
func TestClusterSurvivesLeaderLoss(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	if c.Len() != 3 {
		t.Fatalf("Len = %d", c.Len())
	}
	ctx := t.Context()
	js := c.JetStream(0)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(js jetstream.JetStream, n int) {
		t.Helper()
		for i := range n {
			if _, err := js.Publish(ctx, "t.a", fmt.Appendf(nil, "خبر %d", i), jetstream.WithRetryAttempts(50), jetstream.WithRetryWait(100*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(js, 10)
	leader := c.WaitStreamLeader("T", 10*time.Second)
	c.Kill(leader)
	other := (leader + 1) % 3
	js = c.JetStream(other)
	publish(js, 10)
	if l := c.WaitStreamLeader("T", 20*time.Second); l == leader {
		t.Fatalf("killed node %d still leads", leader)
	}
	c.Restart(leader)
	c.WaitStreamCurrent("T", 20*time.Second)
	back := c.JetStream(leader)
	poll.Until(t, 20*time.Second, func() error {
		if n := len(natstest.Messages(ctx, t, back, "T")); n != 20 {
			return fmt.Errorf("%d messages after the restart, want 20", n)
		}
		return nil
	})
}
