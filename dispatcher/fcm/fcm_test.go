package fcm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/internal/fcmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuffer collects a channel's JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the logged records at level or above.
func (l *logBuffer) lines(t *testing.T, level slog.Level) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		var lv slog.Level
		lv.UnmarshalText([]byte(rec["level"].(string)))
		if lv >= level {
			out = append(out, rec)
		}
	}
	return out
}

// newChannel returns a channel that signs in with the fake server's
// service-account key and sends to it.
func newChannel(t *testing.T, srv *fcmtest.Server, cfg fcm.Config) (*fcm.Channel, *logBuffer) {
	t.Helper()
	if cfg.CredentialsFile == "" {
		cfg.CredentialsFile = srv.CredentialsFile(t)
	}
	cfg.Endpoint = srv.Endpoint()
	logs := &logBuffer{}
	ch, err := fcm.New(t.Context(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ch.Close)
	return ch, logs
}

func newLogOnly(t *testing.T, cfg fcm.Config) *fcm.Channel {
	t.Helper()
	cfg.LogOnly = true
	ch, err := fcm.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func breaking(id string) alert.Alert {
	return alert.Alert{
		ID:       id,
		Headline: "عاجـل: مَقْتَلُ ٣ أشخاص في انفجار ببغداد \u200f🇮🇶",
		URL:      "https://example.com/news/2024/03/baghdad?ref=push&lang=ar",
		Lang:     "ar-IQ",
	}.WithDefaults(time.Now())
}

func tokens(prefix string, n int) []string {
	var ts []string
	for i := range n {
		ts = append(ts, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return ts
}

// sameMessage compares a received message with the one the channel builds,
// allowing the Android TTL the second or two that passed between them.
func sameMessage(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(want, &w)
	gt, _ := time.ParseDuration(g["android"].(map[string]any)["ttl"].(string))
	wt, _ := time.ParseDuration(w["android"].(map[string]any)["ttl"].(string))
	if d := wt - gt; d < 0 || d > 2*time.Second {
		t.Errorf("android ttl %s, want about %s", gt, wt)
	}
	g["android"].(map[string]any)["ttl"] = w["android"].(map[string]any)["ttl"]
	if !reflect.DeepEqual(g, w) {
		t.Errorf("received:\n%s\nwant:\n%s", got, want)
	}
}

// TestSendPayloads checks what each device gets, Arabic byte for byte, and
// that a correction carries the original's tag.
func TestSendPayloads(t *testing.T) {
	srv := fcmtest.Start(t)
	ch, _ := newChannel(t, srv, fcm.Config{})
	orig := breaking("orig-1")
	devices := tokens("tok", 3)
	res, err := ch.Send(t.Context(), orig, devices)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 3 || len(res.Dead)+len(res.Retry)+res.Failed+res.AuthFailed != 0 {
		t.Fatalf("Send = %+v, want 3 sent", res)
	}
	corr := alert.Alert{ID: "corr-1", Kind: alert.KindCorrected, Ref: "orig-1", Headline: "عاجل: مقتل ٤ أشخاص في انفجار ببغداد", Lang: "ar"}.WithDefaults(time.Now())
	if _, err := ch.Send(t.Context(), corr, devices[:1]); err != nil {
		t.Fatal(err)
	}

	msgs := srv.Messages()
	if len(msgs) != 4 {
		t.Fatalf("server got %d messages, want 4", len(msgs))
	}
	for _, m := range msgs {
		a := orig
		if m.Message.Data["id"] == "corr-1" {
			a = corr
		}
		want, _ := json.Marshal(ch.Message(a, m.Token))
		sameMessage(t, m.JSON, want)
		if m.Message.Notification.Body != strings.TrimSpace(a.Headline) {
			t.Errorf("body %q, want the headline %q", m.Message.Notification.Body, a.Headline)
		}
		if m.Message.Android.Notification.Tag != "orig-1" || m.Message.APNS.Headers["apns-collapse-id"] != "orig-1" {
			t.Errorf("%s: tag %q, want the original's", m.Message.Data["id"], m.Message.Android.Notification.Tag)
		}
	}
	for _, d := range devices {
		want := 1
		if d == devices[0] {
			want = 2
		}
		if n := srv.CountFor(d); n != want {
			t.Errorf("CountFor(%s) = %d, want %d", d, n, want)
		}
	}
}

// TestSendLongArabic sends an alert at every input limit: FCM's limit holds
// as the real SDK encodes the message, and every device gets the same cut.
func TestSendLongArabic(t *testing.T) {
	srv := fcmtest.Start(t)
	ch, _ := newChannel(t, srv, fcm.Config{})
	a := alert.Alert{ID: strings.Repeat("a", alert.MaxIDBytes), Kind: alert.KindCorrected, Ref: strings.Repeat("b", alert.MaxIDBytes),
		Headline: headlineOf(stacked), URL: urlOf(alert.MaxURLBytes, "x")}.WithDefaults(time.Now())
	devices := []string{"short", strings.Repeat("long", 40)}
	res, err := ch.Send(t.Context(), a, devices)
	if err != nil || res.Sent != 2 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	msgs := srv.Messages()
	if msgs[0].Message.Notification.Body != msgs[1].Message.Notification.Body ||
		!strings.HasSuffix(msgs[0].Message.Notification.Body, alert.Ellipsis) {
		t.Errorf("bodies %q and %q, want the same cut", msgs[0].Message.Notification.Body, msgs[1].Message.Notification.Body)
	}
}

func TestSendSplitsBatches(t *testing.T) {
	srv := fcmtest.Start(t)
	ch, _ := newChannel(t, srv, fcm.Config{Concurrency: 2})
	devices := tokens("tok", 2*fcm.MaxBatch+3)
	res, err := ch.Send(t.Context(), breaking("a-1"), devices)
	if err != nil || res.Sent != len(devices) {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	for _, d := range devices {
		if n := srv.CountFor(d); n != 1 {
			t.Fatalf("CountFor(%s) = %d, want 1", d, n)
		}
	}
	if srv.Requests() != int64(len(devices)) {
		t.Errorf("%d requests for %d devices", srv.Requests(), len(devices))
	}
}

// TestSendErrorClasses sorts every kind of FCM answer into what the
// dispatcher does with the token.
func TestSendErrorClasses(t *testing.T) {
	srv := fcmtest.Start(t)
	ch, logs := newChannel(t, srv, fcm.Config{})
	// Over two minutes, so the SDK hands the 503 back instead of retrying.
	srv.SetRetryAfter(3 * time.Minute)
	tests := []struct {
		token string
		code  fcmtest.ErrorCode
		want  string // sent, dead, retry, auth
	}{
		{"ok-1", "", "sent"},
		{"ok-2", "", "sent"},
		{"uninstalled", fcmtest.Unregistered, "dead"},
		{"other-project", fcmtest.SenderIDMismatch, "dead"},
		{"garbled", fcmtest.InvalidArgument, "dead"},
		{"over-quota", fcmtest.QuotaExceeded, "retry"},
		{"overloaded", fcmtest.Unavailable, "retry"},
		{"broken", fcmtest.Internal, "retry"},
		{"iphone", fcmtest.ThirdPartyAuthError, "auth"},
	}
	var devices, dead, retry []string
	sent, auth := 0, 0
	for _, tt := range tests {
		devices = append(devices, tt.token)
		srv.FailToken(tt.token, tt.code)
		switch tt.want {
		case "sent":
			sent++
		case "dead":
			dead = append(dead, tt.token)
		case "retry":
			retry = append(retry, tt.token)
		case "auth":
			auth++
		}
	}
	res, err := ch.Send(t.Context(), breaking("a-1"), devices)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.Dead)
	slices.Sort(res.Retry)
	slices.Sort(dead)
	slices.Sort(retry)
	if res.Sent != sent || !slices.Equal(res.Dead, dead) || !slices.Equal(res.Retry, retry) || res.AuthFailed != auth || res.Failed != 0 {
		t.Errorf("Send = %+v\nwant sent %d, dead %v, retry %v, auth %d", res, sent, dead, retry, auth)
	}
	if res.RetryAfter != 3*time.Minute {
		t.Errorf("RetryAfter = %s, want the 3m FCM asked for", res.RetryAfter)
	}
	errs := logs.lines(t, slog.LevelError)
	if len(errs) != 1 || !strings.Contains(errs[0]["msg"].(string), "APNs") || errs[0]["messages"] != 1.0 {
		t.Errorf("error logs = %v, want one about APNs credentials", errs)
	}
}

func TestSendRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		fail       map[string]fcmtest.ErrorCode
		retryAfter time.Duration
		min, max   time.Duration
		err        error
	}{
		{"quota with Retry-After", map[string]fcmtest.ErrorCode{"q": fcmtest.QuotaExceeded}, 30 * time.Second, 30 * time.Second, 30 * time.Second, nil},
		{"quota without", map[string]fcmtest.ErrorCode{"q": fcmtest.QuotaExceeded}, 0, fcm.DefaultQuotaBackoff, fcm.DefaultQuotaBackoff * 3 / 2, nil},
		{"internal without", map[string]fcmtest.ErrorCode{"i": fcmtest.Internal}, 0, fcm.DefaultRetryBackoff, fcm.DefaultRetryBackoff * 3 / 2, nil},
		{"quota and internal", map[string]fcmtest.ErrorCode{"q": fcmtest.QuotaExceeded, "i": fcmtest.Internal}, 45 * time.Second, 45 * time.Second, 45 * time.Second, nil},
		{"every token over quota", map[string]fcmtest.ErrorCode{"ok": fcmtest.QuotaExceeded, "q": fcmtest.QuotaExceeded}, 30 * time.Second, 30 * time.Second, 30 * time.Second, fcm.ErrQuota},
		{"every token refused for our credentials", map[string]fcmtest.ErrorCode{"ok": fcmtest.Unauthenticated, "q": fcmtest.Unauthenticated}, 0, fcm.DefaultRetryBackoff, fcm.DefaultRetryBackoff * 3 / 2, fcm.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fcmtest.Start(t)
			ch, _ := newChannel(t, srv, fcm.Config{})
			srv.SetRetryAfter(tt.retryAfter)
			devices := []string{"ok"}
			var retry []string
			for tok, code := range tt.fail {
				srv.FailToken(tok, code)
				if tok != "ok" {
					devices = append(devices, tok)
				}
				retry = append(retry, tok)
			}
			res, err := ch.Send(t.Context(), breaking("a-1"), devices)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("Send error = %v, want %v", err, tt.err)
			}
			slices.Sort(res.Retry)
			slices.Sort(retry)
			if !slices.Equal(res.Retry, retry) {
				t.Errorf("Retry = %v, want %v", res.Retry, retry)
			}
			if res.RetryAfter < tt.min || res.RetryAfter > tt.max {
				t.Errorf("RetryAfter = %s, want %s to %s", res.RetryAfter, tt.min, tt.max)
			}
		})
	}
}

// TestSendInvalidArgumentAlone checks that an INVALID_ARGUMENT no other
// device disproves is not taken for a dead token: it may be the message.
func TestSendInvalidArgumentAlone(t *testing.T) {
	srv := fcmtest.Start(t)
	ch, logs := newChannel(t, srv, fcm.Config{})
	srv.FailToken("lone", fcmtest.InvalidArgument)
	res, err := ch.Send(t.Context(), breaking("a-1"), []string{"lone"})
	if err != nil || res.Failed != 1 || len(res.Dead) != 0 {
		t.Fatalf("Send = %+v, %v; want failed, not dead", res, err)
	}
	if errs := logs.lines(t, slog.LevelError); len(errs) != 1 {
		t.Errorf("error logs = %v, want one", errs)
	}
}

func TestSendExpired(t *testing.T) {
	srv := fcmtest.Start(t)
	ch, _ := newChannel(t, srv, fcm.Config{})
	a := alert.Alert{ID: "old-1", Headline: "عاجل", TTL: time.Minute, CreatedAt: time.Now().Add(-time.Minute)}.WithDefaults(time.Now())
	if _, err := ch.Send(t.Context(), a, []string{"tok"}); !errors.Is(err, fcm.ErrExpired) {
		t.Errorf("Send = %v, want ErrExpired", err)
	}
	if err := ch.SendTopic(t.Context(), a, "'breaking' in topics"); !errors.Is(err, fcm.ErrExpired) {
		t.Errorf("SendTopic = %v, want ErrExpired", err)
	}
	if srv.Requests() != 0 {
		t.Errorf("an expired alert made %d requests", srv.Requests())
	}
}

// TestSendTimeout checks that SendTimeout bounds a send to an FCM that
// does not answer.
func TestSendTimeout(t *testing.T) {
	srv := fcmtest.Start(t, fcmtest.WithLatency(time.Hour))
	ch, _ := newChannel(t, srv, fcm.Config{SendTimeout: 300 * time.Millisecond})
	start := time.Now()
	res, err := ch.Send(t.Context(), breaking("a-1"), tokens("tok", 3))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %s with a 300ms SendTimeout", d)
	}
	if !errors.Is(err, fcm.ErrUnavailable) || len(res.Retry) != 3 {
		t.Errorf("Send = %+v, %v; want every token to retry and ErrUnavailable", res, err)
	}
}

func TestLogOnly(t *testing.T) {
	srv := fcmtest.Start(t)
	logs := &logBuffer{}
	ch, err := fcm.New(t.Context(), fcm.Config{LogOnly: true, Endpoint: srv.Endpoint(), CredentialsFile: "/nonexistent"},
		slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a := breaking("a-1")
	res, err := ch.Send(t.Context(), a, tokens("tok", 3))
	if err != nil || res.Sent != 3 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	if err := ch.SendTopic(t.Context(), a, "'breaking' in topics"); err != nil {
		t.Fatal(err)
	}
	var pushes []map[string]any
	for _, l := range logs.lines(t, slog.LevelInfo) {
		if l["alert_id"] == "a-1" {
			pushes = append(pushes, l)
		}
	}
	if len(pushes) != 4 || ch.Logged() != 4 {
		t.Fatalf("%d log lines, Logged = %d, want 4", len(pushes), ch.Logged())
	}
	if pushes[0]["token"] != "tok-0000" || pushes[0]["body"] != strings.TrimSpace(a.Headline) || pushes[0]["title"] != "عاجل" {
		t.Errorf("log line %v", pushes[0])
	}
	if srv.Requests() != 0 || srv.TokenRequests() != 0 {
		t.Errorf("log-only channel made %d requests", srv.Requests()+srv.TokenRequests())
	}
}

func TestNewErrors(t *testing.T) {
	srv := fcmtest.Start(t)
	dir := t.TempDir()
	write := func(name string, edit func(map[string]any)) string {
		var key map[string]any
		b, _ := os.ReadFile(srv.CredentialsFile(t))
		json.Unmarshal(b, &key)
		edit(key)
		b, _ = json.Marshal(key)
		path := filepath.Join(dir, name)
		os.WriteFile(path, b, 0o600)
		return path
	}
	noProject := write("no-project.json", func(k map[string]any) { delete(k, "project_id") })
	userCreds := write("user.json", func(k map[string]any) { k["type"] = "authorized_user" })
	tests := []struct {
		name string
		cfg  fcm.Config
		want []string // in the error
	}{
		{"missing key file", fcm.Config{CredentialsFile: filepath.Join(dir, "missing.json")}, []string{"CredentialsFile", "no such file", "Service accounts"}},
		{"not a service-account key", fcm.Config{CredentialsFile: userCreds}, []string{"CredentialsFile", "not a service-account key"}},
		{"not JSON", fcm.Config{CredentialsFile: "testdata/messages"}, []string{"CredentialsFile"}},
		{"no project", fcm.Config{CredentialsFile: noProject}, []string{"ProjectID is empty"}},
		{"endpoint without scheme", fcm.Config{CredentialsFile: noProject, ProjectID: "p", Endpoint: "fcm.googleapis.com/v1"}, []string{"Endpoint", "not an http(s) URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := fcm.New(t.Context(), tt.cfg, nil)
			if err == nil {
				ch.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestApplicationDefaultCredentials checks that an empty CredentialsFile
// falls back to GOOGLE_APPLICATION_CREDENTIALS.
func TestApplicationDefaultCredentials(t *testing.T) {
	srv := fcmtest.Start(t)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", srv.CredentialsFile(t))
	ch, err := fcm.New(t.Context(), fcm.Config{ProjectID: srv.Project(), Endpoint: srv.Endpoint()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	res, err := ch.Send(t.Context(), breaking("a-1"), []string{"tok"})
	if err != nil || res.Sent != 1 || srv.TokenRequests() != 1 {
		t.Errorf("Send = %+v, %v after %d token requests", res, err, srv.TokenRequests())
	}
}

func TestSendTopic(t *testing.T) {
	const condition = "'breaking' in topics || 'iraq' in topics"
	tests := []struct {
		name string
		code fcmtest.ErrorCode
		want error
	}{
		{"accepted", "", nil},
		{"quota", fcmtest.QuotaExceeded, fcm.ErrQuota},
		{"unavailable", fcmtest.Unavailable, fcm.ErrUnavailable},
		{"internal", fcmtest.Internal, fcm.ErrUnavailable},
		{"our credentials", fcmtest.Unauthenticated, fcm.ErrAuth},
		{"APNs credentials", fcmtest.ThirdPartyAuthError, fcm.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fcmtest.Start(t)
			ch, _ := newChannel(t, srv, fcm.Config{})
			srv.SetRetryAfter(3 * time.Minute)
			if tt.code != "" {
				srv.FailNext(1, tt.code)
			}
			err := ch.SendTopic(t.Context(), breaking("a-1"), condition)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("SendTopic = %v, want %v", err, tt.want)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 || msgs[0].Condition != condition || len(msgs[0].JSON) > fcm.MaxTopicMessageBytes {
				t.Errorf("server got %+v", msgs)
			}
		})
	}
}
