// Package metrics defines Ajil's Prometheus metrics on a registry of its
// own, so that tests and several servers in one process never collide.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// latencyBuckets span a breaking alert's life: first pushes in tens of
// milliseconds, a million-device fan-out in a minute or two.
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Metrics holds every Ajil collector.
type Metrics struct {
	reg *prometheus.Registry

	AlertsPublished   prometheus.Counter
	AlertsSuppressed  prometheus.Counter
	AlertsRejected    prometheus.Counter
	FanoutDuration    prometheus.Histogram
	PublishToFirst    prometheus.Histogram
	PublishToDone     prometheus.Histogram
	FCMSends          *prometheus.CounterVec // by result
	TokensPruned      prometheus.Counter
	WebhookDeliveries *prometheus.CounterVec // by result
	RetriesPending    prometheus.Gauge
	DeadLetters       prometheus.Counter
	ConsumerPending   *prometheus.GaugeVec // by consumer
	ConsumerAckPend   *prometheus.GaugeVec // by consumer
	RedisErrors       prometheus.Counter
	NATSErrors        prometheus.Counter
}

// New returns metrics registered on a new registry, with the Go runtime
// and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "ajil", Name: name, Help: help})
		f(c)
		return c
	}
	hist := func(name, help string) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "ajil", Name: name, Help: help, Buckets: latencyBuckets})
		f(h)
		return h
	}
	m := &Metrics{
		reg:              reg,
		AlertsPublished:  counter("alerts_published_total", "Alerts accepted for fan-out."),
		AlertsSuppressed: counter("alerts_suppressed_total", "Alerts suppressed as a duplicate story."),
		AlertsRejected:   counter("alerts_rejected_total", "Messages on the alert stream that could not be decoded."),
		FanoutDuration:   hist("fanout_duration_seconds", "From planning an alert to its last work item."),
		PublishToFirst:   hist("publish_to_first_send_seconds", "From the editor's publish to the first push or webhook sent."),
		PublishToDone:    hist("publish_to_done_seconds", "From the editor's publish to the end of the fan-out."),
		FCMSends: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ajil", Name: "fcm_sends_total",
			Help: "FCM messages by result: ok, dead (token pruned), retry, quota (refused for quota, retried), auth, failed."}, []string{"result"}),
		TokensPruned: counter("tokens_pruned_total", "Dead device tokens removed from the registry."),
		WebhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ajil", Name: "webhook_deliveries_total",
			Help: "Webhook delivery attempts by result: delivered, retry, gone, permanent, forbidden."}, []string{"result"}),
		RetriesPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "ajil", Name: "retries_pending",
			Help: "Work items waiting for a delayed retry."}),
		DeadLetters: counter("dead_letters_total", "Messages moved to the dead-letter stream."),
		ConsumerPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "ajil", Name: "consumer_pending",
			Help: "Messages not yet delivered to a consumer."}, []string{"consumer"}),
		ConsumerAckPend: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "ajil", Name: "consumer_ack_pending",
			Help: "Messages delivered to a consumer and not yet acknowledged."}, []string{"consumer"}),
		RedisErrors: counter("redis_errors_total", "Failed Redis operations."),
		NATSErrors:  counter("nats_errors_total", "Failed NATS operations."),
	}
	f(m.FCMSends)
	f(m.WebhookDeliveries)
	f(m.RetriesPending)
	f(m.ConsumerPending)
	f(m.ConsumerAckPend)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
