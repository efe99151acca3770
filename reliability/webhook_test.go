package reliability_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/hooktest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/subscribers"
)

// flakyEndpoint stands in front of a partner's receiver on a port of its
// own and can be told to answer 503 itself (the partner's load balancer
// with no backend), to be down (nothing listens: connection refused), or
// to pass requests through.
type flakyEndpoint struct {
	t     *testing.T
	addr  string
	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	srv     *http.Server
	refused map[string][]byte // bodies answered 503 while failing, by webhook-id
	failing bool
}

func newFlakyEndpoint(t *testing.T, r *hooktest.Receiver) *flakyEndpoint {
	u, err := url.Parse(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyEndpoint{t: t, addr: "127.0.0.1:0", refused: map[string][]byte{}, proxy: httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})}
	f.up()
	t.Cleanup(f.down)
	return f
}

// URL is the endpoint partners register.
func (f *flakyEndpoint) URL() string { return "http://" + f.addr + "/hooks/ajil" }

func (f *flakyEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.failing {
		body, _ := io.ReadAll(r.Body)
		f.refused[r.Header.Get("webhook-id")] = body
		f.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	f.mu.Unlock()
	f.proxy.ServeHTTP(w, r)
}

// fail makes the endpoint answer 503 to everything.
func (f *flakyEndpoint) fail(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = on
}

// down closes the listener and every connection.
func (f *flakyEndpoint) down() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens again, on the same port once it has one.
func (f *flakyEndpoint) up() {
	var l net.Listener
	poll.Until(f.t, 5*time.Second, func() error {
		var err error
		l, err = net.Listen("tcp", f.addr)
		return err
	})
	f.addr = l.Addr().String()
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			f.t.Errorf("flaky endpoint: %v", err)
		}
	}()
}

func (f *flakyEndpoint) refusedBodies() map[string][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.refused)
}

// A partner's endpoint fails: first its load balancer answers 503 to each
// of five alerts, then nothing listens at all, for about four seconds in
// all. When it comes back, each of the five events arrives
// exactly once, with the webhook-id its failed attempts carried and the
// same signed body, so the partner can tell it is the same event. The four
// other partners get every event once, at once, as if nothing happened.
func TestWebhookEndpointDownThenBack(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	ns := natstest.Start(t)
	e.start(ns.Conn(), replica{
		Config: dispatcher.Config{Name: "a"},
		Hooks: &webhook.Config{AllowHTTP: true, AllowPrivate: true, Timeout: 2 * time.Second,
			Schedule: webhook.Schedule{300 * time.Millisecond, 600 * time.Millisecond, time.Second}},
	})
	partner := hooktest.Start(t)
	flaky := newFlakyEndpoint(t, partner)
	ep, err := e.reg.CreateEndpoint(t.Context(), subscribers.EndpointSpec{URL: flaky.URL(), Description: "شريك متعثر"})
	if err != nil {
		t.Fatal(err)
	}
	var others []*hooktest.Receiver
	for range 4 {
		r := hooktest.Start(t)
		e.endpoint(r)
		others = append(others, r)
	}

	flaky.fail(true)
	failed := time.Now()
	js := ns.JetStream()
	const alerts = 5
	var ids []string
	for i := range alerts {
		a := publishAlert(t, js, alert.Alert{Headline: fmt.Sprintf("عاجل رقم %d: تطورات متسارعة في العاصمة", i+1)})
		ids = append(ids, webhook.MessageID(a.ID, ep.ID))
	}
	poll.Until(t, 10*time.Second, func() error {
		if n := len(flaky.refusedBodies()); n != alerts {
			return fmt.Errorf("%d of %d events refused so far", n, alerts)
		}
		return nil
	})
	flaky.down() // from 503s to connection refused
	poll.Until(t, 10*time.Second, func() error {
		for i, r := range others {
			if n := len(r.Accepted()); n != alerts {
				return fmt.Errorf("healthy partner %d has %d of %d", i, n, alerts)
			}
		}
		return nil
	})
	time.Sleep(time.Until(failed.Add(4 * time.Second))) // the rest of the outage
	flaky.fail(false)
	flaky.up()
	back := time.Now()
	poll.Until(t, 30*time.Second, func() error {
		if n := len(partner.Accepted()); n < alerts {
			return fmt.Errorf("the partner has %d of %d after coming back", n, alerts)
		}
		return nil
	})
	caughtUp := time.Since(back)
	// Let any stray repeat arrive before counting.
	time.Sleep(2 * time.Second)

	got := map[string]int{}
	bodies := map[string][]byte{}
	for _, d := range partner.Accepted() {
		got[d.ID()]++
		bodies[d.ID()] = d.Body
		if err := hooktest.Verify(d, ep.Secret); err != nil {
			t.Errorf("event %s: the official verifier rejects it: %v", d.ID(), err)
		}
	}
	refused := flaky.refusedBodies()
	dups := 0
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("event %s delivered %d times after the outage, want once", id, got[id])
		}
		dups += max(got[id]-1, 0)
	}
	for id, body := range refused {
		switch {
		case got[id] == 0:
			t.Errorf("a failed attempt carried webhook-id %s, which no delivery after the outage has", id)
		case !bytes.Equal(body, bodies[id]):
			t.Errorf("event %s: the body delivered after the outage differs from the failed attempts'", id)
		}
	}
	for i, r := range others {
		seen := map[string]int{}
		for _, d := range r.Accepted() {
			seen[d.ID()]++
		}
		if len(r.Deliveries()) != alerts || len(seen) != alerts {
			t.Errorf("healthy partner %d: %d requests for %d events; want each once", i, len(r.Deliveries()), len(seen))
		}
	}
	// The delivery log (ajil endpoints attempts) holds the failed tries.
	log, err := webhook.NewAttemptLog(e.rdb, 50).List(t.Context(), ep.ID, 50)
	if err != nil {
		t.Fatal(err)
	}
	failures := map[int]int{} // by status, 0 for no answer
	for _, at := range log {
		if at.Outcome != webhook.Delivered {
			failures[at.Status]++
		}
	}
	t.Logf("%d events to 1 failing + 4 healthy partners: the healthy ones had each event once, at once; the failing one failed %d attempts with 503 and %d unreachable, "+
		"and %s after it came back had %d events (%d repeated), each with the webhook-id and body of its failed attempts",
		alerts, failures[http.StatusServiceUnavailable], failures[0], caughtUp.Round(time.Millisecond), len(got), dups)
}
