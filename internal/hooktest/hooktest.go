// Package hooktest runs partner webhook receivers for tests: real HTTP
// servers on loopback that record what they get, verify it with the
// official Standard Webhooks library, and answer as scripted.
package hooktest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Delivery is one request a receiver got.
type Delivery struct {
	At     time.Time
	Header http.Header
	Body   []byte
	Status int // what the receiver answered
}

// ID is the delivery's webhook-id.
func (d Delivery) ID() string { return d.Header.Get("webhook-id") }

// Receiver is a partner's webhook endpoint.
type Receiver struct {
	srv *httptest.Server

	mu         sync.Mutex
	deliveries []Delivery
	script     []int // statuses to answer next, in order; then 200
	retryAfter string
	hang       chan struct{} // closed at cleanup; requests block on it while hanging
	hanging    bool
}

// Start starts a receiver, closed at test cleanup.
func Start(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{hang: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		close(r.hang)
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	return r
}

// URL is the receiver's endpoint URL.
func (r *Receiver) URL() string { return r.srv.URL + "/hooks/ajil" }

// Fail makes the next len(statuses) requests answer those statuses.
func (r *Receiver) Fail(statuses ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = append(r.script, statuses...)
}

// SetRetryAfter sets the Retry-After header sent with failures.
func (r *Receiver) SetRetryAfter(v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAfter = v
}

// Hang makes every request block until the test ends, as a partner whose
// server accepts connections but never answers.
func (r *Receiver) Hang() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hanging = true
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	if r.hanging {
		r.mu.Unlock()
		select {
		case <-r.hang:
		case <-req.Context().Done():
		}
		return
	}
	status := http.StatusOK
	if len(r.script) > 0 {
		status, r.script = r.script[0], r.script[1:]
	}
	r.deliveries = append(r.deliveries, Delivery{At: time.Now(), Header: req.Header.Clone(), Body: body, Status: status})
	retryAfter := r.retryAfter
	r.mu.Unlock()
	if status >= 300 && retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
}

// Deliveries returns every request received so far.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.deliveries...)
}

// Accepted returns the requests answered with a 2xx.
func (r *Receiver) Accepted() []Delivery {
	var out []Delivery
	for _, d := range r.Deliveries() {
		if d.Status/100 == 2 {
			out = append(out, d)
		}
	}
	return out
}

// Verify checks d's signature with the official Standard Webhooks library
// and the given secret, as a partner would.
func Verify(d Delivery, secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("hooktest: secret: %w", err)
	}
	return wh.Verify(d.Body, d.Header)
}
