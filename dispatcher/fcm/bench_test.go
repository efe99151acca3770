package fcm_test

import (
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"firebase.google.com/go/v4/messaging"

	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/internal/fcmtest"
)

var benchTokens = flag.Int("bench-tokens", 20_000, "devices per Send in BenchmarkSend")

// BenchmarkSend pushes one alert to -bench-tokens devices through the fake
// FCM server, which only counts: once with Channel.Send (signed in with a
// service-account key, cleartext HTTP/2), once with a bare loop of the
// SDK's SendEach at the channel's default concurrency over fcmtest's own
// client (cleartext HTTP/2, a static token: the lightest stack). The
// difference is the channel's cost: the auth transport, building and
// sizing the message, sorting the answers.
//
//	go test ./dispatcher/fcm/ -run '^$' -bench Send -benchtime 3x
func BenchmarkSend(b *testing.B) {
	srv := fcmtest.Start(b, fcmtest.CountOnly())
	creds := srv.CredentialsFile(b)
	devices := tokens("bench", *benchTokens)
	a := breaking("bench-1")
	report := func(b *testing.B) {
		b.ReportMetric(float64(len(devices)*b.N)/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(0, "ns/op")
	}

	b.Run("channel", func(b *testing.B) {
		ch, err := fcm.New(b.Context(), fcm.Config{CredentialsFile: creds, Endpoint: srv.Endpoint()}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		defer ch.Close()
		for b.Loop() {
			res, err := ch.Send(b.Context(), a, devices)
			if err != nil || res.Sent != len(devices) {
				b.Fatalf("Send = %d sent, %v", res.Sent, err)
			}
		}
		report(b)
	})

	b.Run("sdk", func(b *testing.B) {
		client := srv.Client(b)
		m := fcm.Message(a, "")
		for b.Loop() {
			sem := make(chan struct{}, fcm.DefaultConcurrency)
			var wg sync.WaitGroup
			for i := 0; i < len(devices); i += fcm.MaxBatch {
				batch := devices[i:min(i+fcm.MaxBatch, len(devices))]
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					msgs := make([]*messaging.Message, len(batch))
					for j, t := range batch {
						c := *m
						c.Token = t
						msgs[j] = &c
					}
					br, err := client.SendEach(b.Context(), msgs)
					if err != nil || br.SuccessCount != len(batch) {
						panic(fmt.Sprintf("SendEach = %v, %v", br, err))
					}
				})
			}
			wg.Wait()
		}
		report(b)
	})
}
