package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/hooktest"
)

// BenchmarkDeliver1000Endpoints delivers one alert to 1,000 endpoints, 32
// at a time, through Sender, and as a ceiling through a bare net/http
// client posting the same signed bodies with the same concurrency. The
// endpoints are paths on 16 loopback servers (63 or 62 each), so that each
// host sees about as many requests at once as Sender keeps connections
// for, while the file descriptors stay few. Both clients are warmed up
// first: the figures are for reused connections.
//
// Reported: deliveries/s through Sender, bare-deliveries/s through the
// bare client, and sender/bare, the share of the ceiling Sender reaches.
func BenchmarkDeliver1000Endpoints(b *testing.B) {
	const endpoints, servers, concurrency = 1000, 16, 32

	var received atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	urls := make([]string, servers)
	for i := range urls {
		srv := httptest.NewServer(handler)
		b.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	body, err := webhook.Payload(readAlert(b, "published"), planned)
	if err != nil {
		b.Fatal(err)
	}
	ds := make([]webhook.Delivery, endpoints)
	for i := range ds {
		id := fmt.Sprintf("ep_%04d", i)
		ds[i] = webhook.Delivery{
			EndpointID: id, URL: fmt.Sprintf("%s/partners/%d", urls[i%servers], i),
			Secrets: []string{webhook.NewSecret()}, MsgID: webhook.MessageID(testAlertID, id), Body: body, Attempt: 1,
		}
	}

	sender := webhook.NewSender(devConfig(), nil)
	b.Cleanup(sender.Close)
	viaSender := func(d webhook.Delivery) error {
		if r := sender.Deliver(b.Context(), d); r.Outcome != webhook.Delivered {
			return fmt.Errorf("%s: %s %v", d.URL, r.Outcome, r.Err)
		}
		return nil
	}

	bare := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: concurrency}}
	b.Cleanup(bare.CloseIdleConnections)
	viaBare := func(d webhook.Delivery) error { return hooktest.Post(b.Context(), bare, d) }

	// fanOut delivers the alert to every endpoint and returns how long it took.
	fanOut := func(deliver func(webhook.Delivery) error) time.Duration {
		start := time.Now()
		next := make(chan webhook.Delivery)
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for d := range next {
					if err := deliver(d); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for _, d := range ds {
			next <- d
		}
		close(next)
		wg.Wait()
		return time.Since(start)
	}

	fanOut(viaSender)
	fanOut(viaBare)
	received.Store(0)
	var senderTime, bareTime time.Duration
	for b.Loop() {
		senderTime += fanOut(viaSender)
		bareTime += fanOut(viaBare)
	}
	if got, want := received.Load(), int64(2*endpoints*b.N); got != want {
		b.Fatalf("receivers got %d requests, want %d", got, want)
	}
	n := float64(endpoints * b.N)
	b.ReportMetric(n/senderTime.Seconds(), "deliveries/s")
	b.ReportMetric(n/bareTime.Seconds(), "bare-deliveries/s")
	b.ReportMetric(bareTime.Seconds()/senderTime.Seconds(), "sender/bare")
}
