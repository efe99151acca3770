package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/internal/hooktest"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/internal/proctest"
	"github.com/ajil-news/ajil/publisher"
)

// devServer is an `ajil dev` subprocess on free ports.
type devServer struct {
	t       *testing.T
	dataDir string
	natsURL string
	args    []string
	proc    *proctest.Proc
}

func startDev(t *testing.T) *devServer {
	t.Helper()
	natsAddr := proctest.FreeAddr(t)
	d := &devServer{t: t, dataDir: t.TempDir(), natsURL: "nats://" + natsAddr}
	d.args = []string{"dev", "--data", d.dataDir, "--nats-listen", natsAddr, "--listen", proctest.FreeAddr(t)}
	d.start()
	return d
}

func (d *devServer) start() {
	d.t.Helper()
	d.proc = proctest.Start(d.t, ajilBin, nil, d.args...)
	d.proc.WaitOutput(d.t, "Ajil dev is running", 30*time.Second)
}

// stop interrupts dev as Ctrl-C would and expects a clean exit.
func (d *devServer) stop() {
	d.t.Helper()
	d.proc.Signal(d.t, syscall.SIGINT)
	if code := d.proc.Wait(d.t, 20*time.Second); code != 0 {
		d.t.Fatalf("ajil dev exited %d after Ctrl-C, want 0", code)
	}
}

// publish runs `ajil publish` against this server, the URL passed through
// the environment as an editor's shell profile would.
func (d *devServer) publish(args ...string) proctest.Result {
	d.t.Helper()
	return proctest.Run(d.t, ajilBin, []string{"AJIL_NATS_URL=" + d.natsURL}, append([]string{"publish"}, args...)...)
}

func (d *devServer) alerts() []alert.Alert {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.t.Context(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(d.natsURL)
	if err != nil {
		d.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var out []alert.Alert
	for _, m := range natstest.Messages(ctx, d.t, js, publisher.DefaultStream) {
		a, err := alert.Decode(m.Data)
		if err != nil {
			d.t.Fatalf("stream holds an undecodable alert: %v", err)
		}
		out = append(out, a)
	}
	return out
}

func TestDevPublishSurvivesRestart(t *testing.T) {
	d := startDev(t)
	if !strings.Contains(d.proc.Stdout(), "publish") || !strings.Contains(d.proc.Stdout(), "--headline") {
		t.Fatalf("dev banner has no publish example:\n%s", d.proc.Stdout())
	}
	const headline = "زلزال بقوة 6 درجات يضرب جنوب تركيا"
	r := d.publish("--headline", headline, "--topic", "breaking", "--topic", "turkey", "--id", "quake-1")
	if r.Code != 0 || !strings.Contains(r.Stdout, "quake-1") || !strings.Contains(r.Stdout, "seq 1") {
		t.Fatalf("publish: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	again := d.publish("--headline", headline, "--id", "quake-1")
	if again.Code != 0 || !strings.Contains(again.Stdout, "already published") {
		t.Fatalf("second publish of the same ID: exit %d, stdout %q; want exit 0 saying it was a duplicate", again.Code, again.Stdout)
	}

	d.stop()
	d.start()
	got := d.alerts()
	if len(got) != 1 {
		t.Fatalf("after restart the stream holds %d alerts, want 1", len(got))
	}
	a := got[0]
	if a.ID != "quake-1" || a.Headline != headline || strings.Join(a.Topics, ",") != "breaking,turkey" || a.Lang != "ar" {
		t.Fatalf("alert after restart: %+v", a)
	}
	d.stop()
}

func TestPublishArticle(t *testing.T) {
	d := startDev(t)
	r := d.publish("--article", "../../publisher/testdata/seed-article.txt", "--url", "https://example.com/belarus")
	if r.Code != 0 {
		t.Fatalf("publish --article: exit %d: %s", r.Code, r.Stderr)
	}
	got := d.alerts()
	if len(got) != 1 {
		t.Fatalf("stream holds %d alerts, want 1", len(got))
	}
	const want = "بيلاروسيا تطلب من روسيا ضمانات للدفاع عنها إذا تعرضت لعدوان"
	if got[0].Headline != want {
		t.Fatalf("headline %q, want %q", got[0].Headline, want)
	}
	if !strings.HasPrefix(got[0].Body, "شدد الرئيس البيلاروسي") {
		t.Fatalf("body %q does not start with the first paragraph", got[0].Body)
	}
}

func TestPublishInvalidInput(t *testing.T) {
	d := startDev(t)
	tests := []struct {
		name  string
		args  []string
		field string
	}{
		{"empty headline", []string{"--headline", "  "}, "headline"},
		{"ftp url", []string{"--headline", "خبر", "--url", "ftp://example.com/x"}, "url"},
		{"ttl too short", []string{"--headline", "خبر", "--ttl", "10s"}, "ttl"},
		{"bad topic", []string{"--headline", "خبر", "--topic", "Bad Topic"}, "topics"},
		{"bad priority", []string{"--headline", "خبر", "--priority", "urgent"}, "priority"},
		{"bad lang", []string{"--headline", "خبر", "--lang", "123"}, "lang"},
		{"headline too long", []string{"--headline", strings.Repeat("خبر ", 80)}, "headline"},
		{"unknown flag", []string{"--headlin", "خبر"}, "headlin"},
		{"stray argument", []string{"خبر"}, "--headline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := d.publish(tt.args...)
			if r.Code != 2 {
				t.Fatalf("exit %d, want 2\nstderr: %s", r.Code, r.Stderr)
			}
			if !strings.Contains(r.Stderr, tt.field) {
				t.Fatalf("stderr does not name %q:\n%s", tt.field, r.Stderr)
			}
		})
	}
	if n := len(d.alerts()); n != 0 {
		t.Fatalf("invalid input published %d alerts", n)
	}
}

func TestPublishNATSDown(t *testing.T) {
	url := "nats://" + proctest.FreeAddr(t)
	r := proctest.Run(t, ajilBin, nil, "publish", "--nats-url", url, "--headline", "خبر")
	if r.Code != 3 {
		t.Fatalf("exit %d, want 3\nstderr: %s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, url) || !strings.Contains(r.Stderr, "ajil dev") {
		t.Fatalf("stderr should name %s and suggest `ajil dev`:\n%s", url, r.Stderr)
	}
}

func TestCorrectAndRetract(t *testing.T) {
	d := startDev(t)
	if r := d.publish("--headline", "مقتل 10 في انفجار", "--id", "blast-1"); r.Code != 0 {
		t.Fatalf("publish: %s", r.Stderr)
	}
	env := []string{"AJIL_NATS_URL=" + d.natsURL}
	if r := proctest.Run(t, ajilBin, env, "correct", "blast-1", "--headline", "مقتل 12 في انفجار"); r.Code != 0 {
		t.Fatalf("correct: exit %d: %s", r.Code, r.Stderr)
	}
	if r := proctest.Run(t, ajilBin, env, "retract", "blast-1"); r.Code != 0 {
		t.Fatalf("retract: exit %d: %s", r.Code, r.Stderr)
	}
	if r := proctest.Run(t, ajilBin, env, "correct", "--headline", "x"); r.Code != 2 || !strings.Contains(r.Stderr, "ID") {
		t.Fatalf("correct without ID: exit %d: %s", r.Code, r.Stderr)
	}
	got := d.alerts()
	if len(got) != 3 {
		t.Fatalf("stream holds %d alerts, want 3", len(got))
	}
	for i, want := range []alert.Kind{alert.KindPublished, alert.KindCorrected, alert.KindRetracted} {
		if got[i].Kind != want {
			t.Errorf("alert %d kind %s, want %s", i, got[i].Kind, want)
		}
		if i > 0 && got[i].Ref != "blast-1" {
			t.Errorf("alert %d ref %q, want blast-1", i, got[i].Ref)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"publish", "-h"}, {"dev", "-h"}, {"help", "correct"}} {
		r := proctest.Run(t, ajilBin, nil, args...)
		out := r.Stdout + r.Stderr
		if r.Code != 0 || !strings.Contains(out, "Example") && !strings.Contains(out, "example") {
			t.Errorf("ajil %s: exit %d, output lacks an example:\n%s", strings.Join(args, " "), r.Code, out)
		}
	}
}

func TestPublishDryRunPrintsPayloadsAndPublishesNothing(t *testing.T) {
	url := "nats://" + proctest.FreeAddr(t) // nothing listens: a dry run must not connect
	r := proctest.Run(t, ajilBin, nil, "publish", "--dry-run", "--nats-url", url,
		"--article", "../../publisher/testdata/seed-article.txt", "--url", "https://example.com/a?x=1&y=2")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{
		"alert (", "FCM v1 request for one device (", "limit 4096", "webhook body (",
		`"headline": "بيلاروسيا تطلب من روسيا ضمانات للدفاع عنها إذا تعرضت لعدوان"`,
		`"apns-collapse-id"`, `"type": "alert.published"`, `"url": "https://example.com/a?x=1&y=2"`,
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(r.Stdout)
	}
}

// TestDevEditorAndPartnerFlow is the README's walk-through: a device and a
// partner endpoint registered with the CLI, an alert published with
// --wait, the partner verifying the signed delivery with the official
// Standard Webhooks library, and the delivery log.
func TestDevEditorAndPartnerFlow(t *testing.T) {
	d := startDev(t)
	apiURL := "http://" + d.args[len(d.args)-1]
	key := ""
	for _, line := range strings.Split(d.proc.Stdout(), "\n") {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "export AJIL_KEY="); ok {
			key = k
		}
	}
	if key == "" {
		t.Fatalf("dev banner prints no admin key:\n%s", d.proc.Stdout())
	}
	env := []string{"AJIL_API=" + apiURL, "AJIL_KEY=" + key, "AJIL_NATS_URL=" + d.natsURL}
	run := func(args ...string) proctest.Result {
		t.Helper()
		r := proctest.Run(t, ajilBin, env, args...)
		if r.Code != 0 {
			t.Fatalf("ajil %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	run("devices", "add", "demo-token-1", "--platform", "android", "--lang", "ar", "--topic", "breaking")
	run("devices", "add", "demo-token-2", "--platform", "ios", "--lang", "ar-EG", "--topic", "breaking")
	if r := run("devices", "count", "--topic", "breaking", "--lang", "ar"); !strings.Contains(r.Stdout, "2") {
		t.Fatalf("devices count: %s", r.Stdout)
	}
	recv := hooktest.Start(t)
	added := run("endpoints", "add", recv.URL(), "--description", "موقع الشريك", "--json")
	var ep struct {
		ID, Secret string
	}
	if err := json.Unmarshal([]byte(added.Stdout), &ep); err != nil || ep.Secret == "" {
		t.Fatalf("endpoints add --json: %v\n%s", err, added.Stdout)
	}

	pub := run("publish", "--headline", "عاجل: افتتاح الجسر الجديد", "--wait")
	if !strings.Contains(pub.Stdout, "done") || !strings.Contains(pub.Stdout, "sent 2") {
		t.Fatalf("publish --wait did not report the fan-out done with 2 sent:\n%s\n%s", pub.Stdout, pub.Stderr)
	}
	poll.Until(t, 10*time.Second, func() error {
		if len(recv.Accepted()) != 1 {
			return fmt.Errorf("partner has %d deliveries", len(recv.Accepted()))
		}
		return nil
	})
	if err := hooktest.Verify(recv.Accepted()[0], ep.Secret); err != nil {
		t.Fatalf("partner cannot verify the delivery: %v", err)
	}
	if r := run("endpoints", "attempts", ep.ID); !strings.Contains(r.Stdout, "delivered") || !strings.Contains(r.Stdout, "200") {
		t.Fatalf("endpoints attempts:\n%s", r.Stdout)
	}
	if r := run("dlq", "list"); !strings.Contains(r.Stdout, "No dead letters") {
		t.Fatalf("dlq list:\n%s", r.Stdout)
	}
	if r := run("endpoints", "replay", ep.ID, "--since", "1h"); !strings.Contains(r.Stdout, "Queued 1 alerts") {
		t.Fatalf("endpoints replay:\n%s", r.Stdout)
	}
	poll.Until(t, 10*time.Second, func() error {
		if n := len(recv.Accepted()); n != 2 {
			return fmt.Errorf("partner has %d deliveries after the replay, want 2", n)
		}
		return nil
	})
	if a, b := recv.Accepted()[0].ID(), recv.Accepted()[1].ID(); a != b {
		t.Fatalf("replay changed the webhook-id: %s then %s", a, b)
	}
	if !strings.Contains(d.proc.Stderr(), "would push") && !strings.Contains(d.proc.Stderr(), "log-only") {
		t.Fatalf("dev log shows no log-only pushes:\n%s", d.proc.Stderr())
	}
}
