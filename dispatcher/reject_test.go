package dispatcher_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
)

// A work item the dispatcher cannot use is dead-lettered with a reason
// that says what is wrong with it, for the operator reading `ajil dlq list`.
func TestUndecodableItemsSayWhy(t *testing.T) {
	w := newHookWorld(t)
	w.start(dispatcher.Config{})
	items := []struct{ subject, data, reason string }{
		{"ajil.work.fcm", `{"v":2,"alert":{},"n":0}`, "version 2"},
		{dispatcher.HookSubject("ep_x"), `{"v":3,"endpoint":"ep_x"}`, "version 3"},
		{dispatcher.HookSubject("ep_x"), `{"v":1,"alert":{}}`, "no endpoint"},
	}
	for _, it := range items {
		if _, err := w.js.Publish(t.Context(), it.subject, []byte(it.data)); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 10*time.Second, func() error {
		dead := natstest.Messages(t.Context(), t, w.js, dispatcher.DefaultDeadStream)
		if len(dead) != len(items) {
			return fmt.Errorf("%d dead letters, want %d", len(dead), len(items))
		}
		for _, it := range items {
			found := false
			for _, m := range dead {
				found = found || strings.Contains(m.Header.Get(dispatcher.HeaderReason), it.reason)
			}
			if !found {
				return fmt.Errorf("no dead letter says %q", it.reason)
			}
		}
		return nil
	})
}
