package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/internal/proctest"
	"github.com/ajil-news/ajil/internal/redistest"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

// serveEnv is a production-shaped environment: an external NATS and Redis,
// a fake FCM behind the real SDK.
type serveEnv struct {
	t     *testing.T
	nats  *natstest.Server
	redis *redistest.Server
	fcm   *fcmtest.Server
	key   string
	creds string
}

func newServeEnv(t *testing.T, opts ...fcmtest.Option) *serveEnv {
	e := &serveEnv{t: t, nats: natstest.Start(t), redis: redistest.Start(t), fcm: fcmtest.Start(t, opts...), key: subscribers.GenerateKey()}
	e.creds = e.fcm.CredentialsFile(t)
	return e
}

// start runs `ajil serve` and waits until it is ready.
func (e *serveEnv) start(extra ...string) (*proctest.Proc, string) {
	e.t.Helper()
	listen := proctest.FreeAddr(e.t)
	env := []string{
		"AJIL_NATS_URL=" + e.nats.URL(), "AJIL_REDIS_URL=" + e.redis.URL(), "AJIL_API_KEYS=admin:" + e.key,
		"AJIL_FCM_CREDENTIALS=" + e.creds, "AJIL_FCM_ENDPOINT=" + e.fcm.Endpoint(), "AJIL_LISTEN=" + listen,
	}
	p := proctest.Start(e.t, ajilBin, env, append([]string{"serve", "--shutdown-timeout", "10s"}, extra...)...)
	base := "http://" + listen
	poll.Until(e.t, 30*time.Second, func() error {
		code, body := httpGet(base + "/readyz")
		if code != 200 {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	return p, base
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *serveEnv) devices(n int) []string {
	e.t.Helper()
	reg := subscribers.New(e.redis.Client(), subscribers.Config{})
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tok-%05d", i)
		if _, _, err := reg.Upsert(e.t.Context(), subscribers.Device{Token: tokens[i], Platform: subscribers.PlatformIOS, Lang: "ar", Topics: []string{"breaking"}}); err != nil {
			e.t.Fatal(err)
		}
	}
	return tokens
}

func (e *serveEnv) publish(headline string) alert.Alert {
	e.t.Helper()
	a := alert.Alert{Headline: headline}.WithDefaults(time.Now())
	if _, err := publisher.New(e.nats.JetStream(), publisher.Config{}).Publish(e.t.Context(), a); err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *serveEnv) waitDone(id string) alert.Status {
	e.t.Helper()
	var st alert.Status
	nc := e.nats.Conn()
	poll.Until(e.t, 60*time.Second, func() error {
		var err error
		st, err = publisher.QueryStatus(e.t.Context(), nc, id)
		if err != nil {
			return err
		}
		if st.State != "done" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	return st
}

func metricValue(body, name string) string {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

func TestServeDeliversAndReportsMetrics(t *testing.T) {
	e := newServeEnv(t)
	tokens := e.devices(50)
	p, base := e.start()
	a := e.publish("عاجل: هزة أرضية في العاصمة")
	st := e.waitDone(a.ID)
	if st.Sent != 50 {
		t.Fatalf("status %+v, want 50 sent", st)
	}
	for _, tok := range tokens {
		if n := e.fcm.CountFor(tok); n != 1 {
			t.Fatalf("token %s got %d messages", tok, n)
		}
	}
	code, body := httpGet(base + "/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	for name, want := range map[string]string{
		"ajil_alerts_published_total":              "1",
		`ajil_fcm_sends_total{result="ok"}`:        "50",
		"ajil_publish_to_done_seconds_count":       "1",
		"ajil_publish_to_first_send_seconds_count": "1",
	} {
		if got := metricValue(body, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}

	// Readiness follows Redis.
	e.redis.Stop()
	poll.Until(t, 10*time.Second, func() error {
		if code, _ := httpGet(base + "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d with Redis down", code)
		}
		return nil
	})
	if code, _ := httpGet(base + "/healthz"); code != 200 {
		t.Fatalf("healthz %d with Redis down; the process itself is alive", code)
	}
	e.redis.Start()
	poll.Until(t, 15*time.Second, func() error {
		if code, body := httpGet(base + "/readyz"); code != 200 {
			return fmt.Errorf("readyz %d after Redis returned: %s", code, body)
		}
		return nil
	})

	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
}

func TestServeSIGTERMDuringFanoutLosesNothing(t *testing.T) {
	e := newServeEnv(t, fcmtest.WithLatency(30*time.Millisecond))
	tokens := e.devices(3000)
	p, _ := e.start("--shutdown-timeout", "2s")
	a := e.publish("عاجل: إخلاء المباني قرب النهر")
	poll.Until(t, 30*time.Second, func() error {
		if n := e.fcm.Sent(); n < 300 {
			return fmt.Errorf("%d sent", n)
		}
		return nil
	})
	p.Signal(t, syscall.SIGTERM)
	start := time.Now()
	if code := p.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("took %s to stop with a 2s shutdown timeout", el)
	}
	sentBefore := e.fcm.Sent()
	e.start()
	st := e.waitDone(a.ID)
	missed := 0
	for _, tok := range tokens {
		if e.fcm.CountFor(tok) == 0 {
			missed++
		}
	}
	t.Logf("stopped after %d of 3000 sent; next process finished: status %+v, missed %d", sentBefore, st, missed)
	if missed != 0 {
		t.Fatalf("%d tokens missed after the restart", missed)
	}
}

func TestServeConfigErrors(t *testing.T) {
	natsSrv := natstest.Start(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	badKeys := filepath.Join(dir, "keys")
	os.WriteFile(badKeys, []byte("wizard:short\n"), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"nats unreachable", []string{"--nats-url", "nats://" + proctest.FreeAddr(t), "--api-keys", "admin:" + subscribers.GenerateKey()}, 3, "--nats-url"},
		{"redis unreachable", []string{"--nats-url", natsSrv.URL(), "--redis-url", "redis://" + proctest.FreeAddr(t), "--api-keys", "admin:" + subscribers.GenerateKey()}, 3, "--redis-url"},
		{"bad redis url", []string{"--redis-url", "mysql://x", "--api-keys", "admin:" + subscribers.GenerateKey()}, 2, "--redis-url"},
		{"no api keys", []string{"--roles", "api"}, 2, "--api-keys"},
		{"bad keys file", []string{"--api-keys-file", badKeys}, 2, "--api-keys-file"},
		{"unreadable fcm credentials", []string{"--fcm-credentials", missing, "--api-keys", "admin:" + subscribers.GenerateKey()}, 2, "--fcm-credentials"},
		{"bad role", []string{"--roles", "api,worker"}, 2, "--roles"},
		{"bad replicas", []string{"--stream-replicas", "2"}, 2, "--stream-replicas"},
		{"bad fcm mode", []string{"--fcm-mode", "carrier-pigeon", "--api-keys", "admin:" + subscribers.GenerateKey()}, 2, "--fcm-mode"},
		{"bad log format", []string{"--log-format", "xml"}, 2, "--log-format"},
		{"bad nats creds", []string{"--nats-creds", missing, "--api-keys", "admin:" + subscribers.GenerateKey()}, 2, "--nats-creds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := proctest.Run(t, ajilBin, nil, append([]string{"serve"}, tt.args...)...)
			if r.Code != tt.code || !strings.Contains(r.Stderr, tt.want) {
				t.Fatalf("exit %d (want %d), stderr should name %s:\n%s", r.Code, tt.code, tt.want, r.Stderr)
			}
		})
	}
}
