package dispatcher_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
)

// panicPusher is an FCM channel with a bug: every send panics.
type panicPusher struct{}

func (panicPusher) Send(context.Context, alert.Alert, []string) (fcm.Result, error) {
	panic("send bug")
}

func (panicPusher) SendTopic(context.Context, alert.Alert, string) error { panic("send bug") }

// A work item whose send panics is dead-lettered, and the goroutine that
// kept it alive stops with it: a replica that meets the same bug on every
// alert must not pile up goroutines and tickers.
func TestPanickingSendStopsItsKeepAlive(t *testing.T) {
	w := newWorld(t)
	w.devices("d", 5, "breaking", "ar")
	d, err := dispatcher.New(dispatcher.Config{MaxDeliver: 2, AckWait: 3 * time.Second, RetryDelay: 50 * time.Millisecond},
		dispatcher.Deps{NATS: w.nats.Conn(), Redis: w.rdb.Client(), Registry: w.reg, FCM: panicPusher{}, Log: w.log})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d, time.Second)
	w.publish(alert.Alert{Headline: "خبر يصطدم بخلل في الإرسال"})
	poll.Until(t, 20*time.Second, func() error {
		if n := len(natstest.Messages(t.Context(), t, w.js, dispatcher.DefaultDeadStream)); n != 1 {
			return fmt.Errorf("%d dead letters, want the work item", n)
		}
		return nil
	})
	poll.Until(t, 5*time.Second, func() error {
		buf := make([]byte, 1<<20)
		if n := strings.Count(string(buf[:runtime.Stack(buf, true)]), "dispatcher.(*Dispatcher).keepAlive"); n > 0 {
			return fmt.Errorf("%d keep-alive goroutines outlived their work item", n)
		}
		return nil
	})
}
