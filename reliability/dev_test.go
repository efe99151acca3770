package reliability_test

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/proctest"
)

// devProc is an `ajil dev` process: embedded NATS with its store in a
// directory that outlives the process, the env's Redis and fake FCM.
type devProc struct {
	e       *env
	args    []string
	natsURL string
	apiURL  string
	proc    *proctest.Proc
}

func (e *env) dev() *devProc {
	natsAddr, apiAddr := proctest.FreeAddr(e.t), proctest.FreeAddr(e.t)
	d := &devProc{e: e, natsURL: "nats://" + natsAddr, apiURL: "http://" + apiAddr}
	d.args = []string{"dev", "--data", e.t.TempDir(), "--nats-listen", natsAddr, "--listen", apiAddr,
		"--redis-url", e.redis.URL(), "--admin-key", adminKey,
		"--fcm-credentials", e.fcm.CredentialsFile(e.t), "--fcm-endpoint", e.fcm.Endpoint()}
	d.start()
	return d
}

func (d *devProc) start() {
	d.e.t.Helper()
	d.proc = proctest.Start(d.e.t, ajilBin, nil, d.args...)
	d.proc.WaitOutput(d.e.t, "Ajil dev is running", 30*time.Second)
}

// register registers a device through the HTTP API, as an app's backend.
func (d *devProc) register(token string) {
	d.e.t.Helper()
	req, err := http.NewRequestWithContext(d.e.t.Context(), http.MethodPut, d.apiURL+"/v1/devices/"+token,
		strings.NewReader(`{"platform":"ios","lang":"ar","topics":["breaking"]}`))
	if err != nil {
		d.e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		d.e.t.Fatalf("register %s: %s", token, resp.Status)
	}
}

// `ajil dev` is killed with SIGKILL while an editor publishes alerts one
// after another with `ajil publish`, FCM answering slowly so that several
// acknowledged alerts are still waiting to be sent. After a restart on the
// same data directory, every alert whose publish said "published" reaches
// every device: the embedded JetStream syncs each write before it
// acknowledges, and the delivery marks are in the real Redis given with
// --redis-url. Alerts in flight at the kill wait out AckWait (45s), so
// this scenario runs in parallel.
func TestDevKilledKeepsAcknowledgedAlerts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fcmtest.WithLatency(300*time.Millisecond))
	d := e.dev()
	var tokens []string
	for i := range 40 {
		tokens = append(tokens, fmt.Sprintf("dev-%03d", i))
		d.register(tokens[i])
	}

	// The editor publishes until the server is gone.
	const attempts = 30
	acked := make(chan string, attempts)
	var failed []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(acked)
		for i := range attempts {
			id := fmt.Sprintf("dev-alert-%02d", i)
			r := proctest.Run(t, ajilBin, []string{"AJIL_NATS_URL=" + d.natsURL}, "publish", "--id", id,
				"--headline", fmt.Sprintf("عاجل %d: تطورات جديدة في قضية الفساد الكبرى", i))
			if r.Code != 0 || !strings.Contains(r.Stdout, "published alert "+id) {
				failed = append(failed, fmt.Sprintf("%s (exit %d)", id, r.Code))
				return
			}
			acked <- id
		}
	}()
	var ids []string
	for id := range acked {
		ids = append(ids, id)
		if len(ids) == 8 {
			break
		}
	}
	sentAtKill := e.fcm.Sent()
	d.proc.Signal(t, syscall.SIGKILL)
	d.proc.Wait(t, 10*time.Second)
	killed := time.Now()
	<-done
	for id := range acked {
		ids = append(ids, id)
	}
	// What the killed process had handed to FCM still arrives: FCM does
	// not take back a request because its sender died.
	sentByKilled := settled(t, e.fcm.Sent)
	d.start()

	nc, err := nats.Connect(d.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var missed, dups, delivered int
	for _, id := range ids {
		waitState(t, nc, id, "done", 3*dispatcher.DefaultAckWait)
		c := countAlert(e.fcm, id, tokens)
		missed += c.Missed
		dups += c.Duplicated
		delivered += c.Delivered
	}
	t.Logf("SIGKILL of ajil dev with %d alerts acknowledged, %d of their %d pushes sent (%d more in flight at FCM); the publish after it failed: %v; "+
		"after the restart all %d done within %s: %d pushes, %d missed, %d repeated",
		len(ids), sentAtKill, len(ids)*len(tokens), sentByKilled-sentAtKill, failed, len(ids), time.Since(killed).Round(time.Second), delivered, missed, dups)
	if int64(dups) > sentByKilled {
		t.Errorf("%d repeats, more than the %d pushes the killed process sent", dups, sentByKilled)
	}
	if missed != 0 {
		t.Fatalf("%d pushes of acknowledged alerts missed after the restart", missed)
	}
	d.proc.Signal(t, syscall.SIGTERM)
	if code := d.proc.Wait(t, 20*time.Second); code != 0 {
		t.Errorf("ajil dev exited %d after SIGTERM", code)
	}
}
