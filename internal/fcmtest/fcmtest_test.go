package fcmtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"go.uber.org/goleak"
	"google.golang.org/api/option"

	"github.com/ajil-news/ajil/internal/fcmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// classifiers are the SDK's error predicates, by name.
var classifiers = map[string]func(error) bool{
	"IsUnregistered":               messaging.IsUnregistered,
	"IsInvalidArgument":            messaging.IsInvalidArgument,
	"IsQuotaExceeded":              messaging.IsQuotaExceeded,
	"IsUnavailable":                messaging.IsUnavailable,
	"IsInternal":                   messaging.IsInternal,
	"IsSenderIDMismatch":           messaging.IsSenderIDMismatch,
	"IsThirdPartyAuthError":        messaging.IsThirdPartyAuthError,
	"errorutils.IsUnauthenticated": errorutils.IsUnauthenticated,
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// errorBody returns the error's HTTP response body, decoded.
func errorBody(t *testing.T, err error) (*http.Response, any) {
	t.Helper()
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		t.Fatalf("error %v carries no HTTP response", err)
	}
	var body any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return resp, body
}

// TestErrorsAsFCM checks each scripted error against FCM's exact body and
// the real SDK's classification of it.
func TestErrorsAsFCM(t *testing.T) {
	var cases []struct {
		Code       fcmtest.ErrorCode `json:"code"`
		SDK        string            `json:"sdk"`
		RetryAfter string            `json:"retry_after"`
		Body       any               `json:"body"`
	}
	readJSON(t, "testdata/errors.json", &cases)
	if len(cases) != 8 {
		t.Fatalf("testdata/errors.json has %d cases, want one per error code", len(cases))
	}
	srv := fcmtest.Start(t)
	client := srv.Client(t)
	for _, tc := range cases {
		t.Run(string(tc.Code), func(t *testing.T) {
			if !tc.Code.Known() {
				t.Fatalf("%s is not a code the server knows", tc.Code)
			}
			token := "tok-" + string(tc.Code)
			srv.FailToken(token, tc.Code)
			if tc.RetryAfter != "" {
				srv.SetRetryAfter(mustSeconds(t, tc.RetryAfter))
				defer srv.SetRetryAfter(0)
			}
			before := srv.Requests()
			_, err := client.Send(t.Context(), &messaging.Message{Token: token, Data: map[string]string{"id": "1"}})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			// FCM's codes exclude each other; the platform code
			// UNAUTHENTICATED also covers THIRD_PARTY_AUTH_ERROR.
			for name, is := range classifiers {
				want := name == tc.SDK || name == "errorutils.IsUnauthenticated" && tc.Code == fcmtest.ThirdPartyAuthError
				if is(err) != want {
					t.Errorf("%s(err) = %v, want %v (err: %v)", name, !want, want, err)
				}
			}
			resp, body := errorBody(t, err)
			if !reflect.DeepEqual(body, tc.Body) {
				gotJSON, _ := json.Marshal(body)
				wantJSON, _ := json.Marshal(tc.Body)
				t.Errorf("body:\n got %s\nwant %s", gotJSON, wantJSON)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.RetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.RetryAfter)
			}
			if n := srv.Requests() - before; n != 1 {
				t.Errorf("%d requests reached the server, want 1 (no SDK retry)", n)
			}
			if n := srv.CountFor(token); n != 0 {
				t.Errorf("CountFor = %d after an error, want 0", n)
			}
			msgs := srv.Messages()
			if last := msgs[len(msgs)-1]; last.Token != token || last.Error != tc.Code {
				t.Errorf("recorded %+v, want token %s answered %s", last, token, tc.Code)
			}
		})
	}
}

func mustSeconds(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s + "s")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFailTokenCleared(t *testing.T) {
	srv := fcmtest.Start(t)
	client := srv.Client(t)
	srv.FailToken("tok-1", fcmtest.Unregistered)
	if _, err := client.Send(t.Context(), &messaging.Message{Token: "tok-1"}); !messaging.IsUnregistered(err) {
		t.Fatalf("Send = %v, want UNREGISTERED", err)
	}
	srv.FailToken("tok-1", "")
	if _, err := client.Send(t.Context(), &messaging.Message{Token: "tok-1"}); err != nil {
		t.Fatalf("Send after clearing = %v", err)
	}
	if n := srv.CountFor("tok-1"); n != 1 {
		t.Errorf("CountFor = %d, want 1", n)
	}
}

// TestRecordsExactPayload checks that a test sees the message byte for byte
// as the SDK encoded it, Arabic included, and decoded.
func TestRecordsExactPayload(t *testing.T) {
	srv := fcmtest.Start(t)
	ttl := 90 * time.Minute
	msg := &messaging.Message{
		Token:        "tok-ar",
		Notification: &messaging.Notification{Title: "عاجل", Body: "مَقْتَلُ ٣ أشخاص في انفجار ببغداد 🇮🇶"},
		Data:         map[string]string{"id": "a1", "url": "https://example.com/news?a=1&b=2"},
		Android:      &messaging.AndroidConfig{Priority: "high", TTL: &ttl, Notification: &messaging.AndroidNotification{Tag: "a1"}},
		APNS:         &messaging.APNSConfig{Headers: map[string]string{"apns-collapse-id": "a1", "apns-priority": "10"}},
	}
	name, err := srv.Client(t).Send(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	want, _ := json.Marshal(msg)
	if !bytes.Equal(got.JSON, want) {
		t.Errorf("JSON:\n got %s\nwant %s", got.JSON, want)
	}
	if got.Name != name || !strings.HasPrefix(name, "projects/ajil-test/messages/") {
		t.Errorf("name = %q, recorded %q", name, got.Name)
	}
	if got.Token != "tok-ar" || got.Project != "ajil-test" || got.ValidateOnly || got.Error != "" {
		t.Errorf("recorded %+v", got)
	}
	if got.Message.Notification.Body != msg.Notification.Body || *got.Message.Android.TTL != ttl ||
		got.Message.Android.Notification.Tag != "a1" || got.Message.APNS.Headers["apns-priority"] != "10" {
		t.Errorf("decoded %+v", got.Message)
	}
	if srv.CountFor("tok-ar") != 1 || srv.Sent() != 1 || srv.Requests() != 1 {
		t.Errorf("CountFor = %d, Sent = %d, Requests = %d, want 1 each", srv.CountFor("tok-ar"), srv.Sent(), srv.Requests())
	}
}

func TestDryRun(t *testing.T) {
	srv := fcmtest.Start(t)
	client := srv.Client(t)
	name, err := client.SendDryRun(t.Context(), &messaging.Message{Token: "tok-1", Data: map[string]string{"id": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if name != "projects/ajil-test/messages/fake_message_id" {
		t.Errorf("dry run name = %q", name)
	}
	srv.FailToken("tok-2", fcmtest.Unregistered)
	if _, err := client.SendDryRun(t.Context(), &messaging.Message{Token: "tok-2"}); !messaging.IsUnregistered(err) {
		t.Errorf("dry run to an unregistered token = %v, want UNREGISTERED", err)
	}
	if _, err := client.SendDryRun(t.Context(), &messaging.Message{Token: "tok-1", Data: map[string]string{"from": "x"}}); !messaging.IsInvalidArgument(err) {
		t.Errorf("dry run of an invalid message = %v, want INVALID_ARGUMENT", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 3 || !msgs[0].ValidateOnly {
		t.Fatalf("recorded %+v, want 3 dry runs", msgs)
	}
	if srv.Sent() != 0 || srv.CountFor("tok-1") != 0 {
		t.Errorf("dry runs counted as sent: Sent = %d, CountFor = %d", srv.Sent(), srv.CountFor("tok-1"))
	}
}

// TestInvalidMessages checks the messages FCM refuses, each naming the field.
func TestInvalidMessages(t *testing.T) {
	var cases []struct {
		Name    string          `json:"name"`
		Field   string          `json:"field"`
		Message json.RawMessage `json:"message"`
	}
	readJSON(t, "testdata/invalid.json", &cases)
	srv := fcmtest.Start(t)
	client := srv.Client(t)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			var m messaging.Message
			if err := json.Unmarshal(tc.Message, &m); err != nil {
				t.Fatal(err)
			}
			_, err := client.Send(t.Context(), &m)
			if !messaging.IsInvalidArgument(err) {
				t.Fatalf("Send = %v, want INVALID_ARGUMENT", err)
			}
			if f := violatedField(t, err); f != tc.Field {
				t.Errorf("field = %q, want %q", f, tc.Field)
			}
		})
	}
}

func violatedField(t *testing.T, err error) string {
	t.Helper()
	_, body := errorBody(t, err)
	b, _ := json.Marshal(body)
	var e struct {
		Error struct {
			Details []struct {
				FieldViolations []struct{ Field string } `json:"fieldViolations"`
			} `json:"details"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	for _, d := range e.Error.Details {
		for _, v := range d.FieldViolations {
			return v.Field
		}
	}
	return ""
}

// TestSizeLimits checks the limit on the JSON encoding, to the byte.
func TestSizeLimits(t *testing.T) {
	srv := fcmtest.Start(t)
	client := srv.Client(t)
	tests := []struct {
		name  string
		msg   func(pad string) *messaging.Message
		limit int
	}{
		{"token", func(pad string) *messaging.Message {
			return &messaging.Message{Token: "tok-1", Notification: &messaging.Notification{Body: pad}}
		}, fcmtest.MaxMessageBytes},
		{"topic", func(pad string) *messaging.Message {
			return &messaging.Message{Topic: "breaking", Notification: &messaging.Notification{Body: pad}}
		}, fcmtest.MaxTopicMessageBytes},
		{"condition", func(pad string) *messaging.Message {
			return &messaging.Message{Condition: "'breaking' in topics", Notification: &messaging.Notification{Body: pad}}
		}, fcmtest.MaxTopicMessageBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// ب is two bytes: pad with it, then one ASCII byte to land exactly.
			one, _ := json.Marshal(tt.msg("x"))
			room := tt.limit - len(one) + 1
			pad := strings.Repeat("ب", room/2) + strings.Repeat("x", room%2)
			at, _ := json.Marshal(tt.msg(pad))
			if len(at) != tt.limit {
				t.Fatalf("test message is %d bytes, want %d", len(at), tt.limit)
			}
			if _, err := client.Send(t.Context(), tt.msg(pad)); err != nil {
				t.Errorf("message of exactly %d bytes: %v", tt.limit, err)
			}
			_, err := client.Send(t.Context(), tt.msg(pad+"x"))
			if !messaging.IsInvalidArgument(err) || violatedField(t, err) != "message" {
				t.Errorf("message of %d bytes: %v, want INVALID_ARGUMENT on message", tt.limit+1, err)
			}
		})
	}
}

// TestOutage checks FailNext against the SDK's own retry of a 503.
func TestOutage(t *testing.T) {
	srv := fcmtest.Start(t)
	client := srv.Client(t)

	srv.FailNext(1, fcmtest.Unavailable)
	if _, err := client.Send(t.Context(), &messaging.Message{Token: "tok-1"}); err != nil {
		t.Fatalf("Send through one 503 = %v; the SDK retries it", err)
	}
	if srv.Requests() != 2 || srv.CountFor("tok-1") != 1 {
		t.Errorf("Requests = %d, CountFor = %d, want 2 and 1", srv.Requests(), srv.CountFor("tok-1"))
	}

	srv.FailNext(2, fcmtest.Internal)
	msgs := []*messaging.Message{{Token: "a"}, {Token: "b"}, {Token: "c"}}
	br, err := client.SendEach(t.Context(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if br.SuccessCount != 1 || br.FailureCount != 2 {
		t.Errorf("SendEach: %d sent, %d failed, want 1 and 2", br.SuccessCount, br.FailureCount)
	}
	for _, r := range br.Responses {
		if !r.Success && !messaging.IsInternal(r.Error) {
			t.Errorf("failure %v, want INTERNAL", r.Error)
		}
	}
}

func TestLatency(t *testing.T) {
	srv := fcmtest.Start(t, fcmtest.WithLatency(100*time.Millisecond))
	client := srv.Client(t)
	start := time.Now()
	if _, err := client.Send(t.Context(), &messaging.Message{Token: "tok-1"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Send took %s, want at least the latency", d)
	}

	srv.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := client.Send(ctx, &messaging.Message{Token: "tok-1"}); err == nil {
		t.Fatal("Send within 50ms to a server that takes an hour succeeded")
	}

	// A request waiting out the latency does not hold up Close.
	done := make(chan struct{})
	go func() {
		defer close(done)
		client.Send(t.Context(), &messaging.Message{Token: "tok-2"})
	}()
	for srv.Requests() < 3 {
		time.Sleep(time.Millisecond)
	}
	start = time.Now()
	srv.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s with a request waiting", d)
	}
	<-done
}

func TestAuthAndProject(t *testing.T) {
	srv := fcmtest.Start(t)
	body := `{"message":{"token":"tok-1"}}`

	resp, err := http.Post(srv.Endpoint()+"/projects/ajil-test/messages:send", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), `"UNAUTHENTICATED"`) {
		t.Errorf("without a token: %d %s", resp.StatusCode, b)
	}

	req, _ := http.NewRequest(http.MethodPost, srv.Endpoint()+"/projects/someone-else/messages:send", strings.NewReader(body))
	resp, err = srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.ProtoMajor != 2 {
		t.Errorf("to another project: %d over %s, want 403 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if len(srv.Messages()) != 0 {
		t.Errorf("refused requests were recorded: %+v", srv.Messages())
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestServiceAccount checks the whole OAuth flow of a service-account key:
// the real auth library signs an assertion, the server trades it for
// AccessToken, and sends carry it.
func TestServiceAccount(t *testing.T) {
	srv := fcmtest.Start(t)
	good := srv.CredentialsFile(t)

	forged := fcmtest.Start(t, fcmtest.WithProject(srv.Project()))
	bad := forged.CredentialsFile(t) // another key, but this server's token endpoint
	b, _ := os.ReadFile(bad)
	b = bytes.ReplaceAll(b, []byte(forged.TokenURL()), []byte(srv.TokenURL()))
	os.WriteFile(bad, b, 0o600)

	tests := []struct {
		name  string
		creds string
		ok    bool
	}{
		{"own key", good, true},
		{"another key", bad, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, err := firebase.NewApp(t.Context(), &firebase.Config{ProjectID: srv.Project()},
				option.WithAuthCredentialsFile(option.ServiceAccount, tt.creds), option.WithEndpoint(srv.Endpoint()),
				option.WithTelemetryDisabled())
			if err != nil {
				t.Fatal(err)
			}
			client, err := app.Messaging(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			before := srv.TokenRequests()
			sends := 2
			ctx := t.Context()
			if !tt.ok {
				// The SDK retries a failed token fetch for seconds.
				sends = 1
				c, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				ctx = c
			}
			for i := range sends {
				_, err = client.Send(ctx, &messaging.Message{Token: fmt.Sprintf("tok-%d", i)})
				if (err == nil) != tt.ok {
					t.Fatalf("Send %d = %v, want ok %v", i, err, tt.ok)
				}
			}
			if tt.ok && srv.TokenRequests()-before != 1 {
				t.Errorf("%d token requests for two sends, want 1", srv.TokenRequests()-before)
			}
		})
	}
}

// TestConcurrentSendEach pushes a full batch through and checks the
// per-token record under the race detector.
func TestConcurrentSendEach(t *testing.T) {
	srv := fcmtest.Start(t)
	client := srv.Client(t)
	var msgs []*messaging.Message
	for i := range 500 {
		msgs = append(msgs, &messaging.Message{Token: fmt.Sprintf("tok-%03d", i)})
	}
	for i := 0; i < 500; i += 50 {
		srv.FailToken(fmt.Sprintf("tok-%03d", i), fcmtest.Unregistered)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			br, err := client.SendEach(t.Context(), msgs)
			if err != nil {
				t.Error(err)
				return
			}
			if br.SuccessCount != 490 || br.FailureCount != 10 {
				t.Errorf("SendEach: %d sent, %d failed, want 490 and 10", br.SuccessCount, br.FailureCount)
			}
		})
	}
	wg.Wait()
	for i := range 500 {
		want := 2
		if i%50 == 0 {
			want = 0
		}
		if got := srv.CountFor(fmt.Sprintf("tok-%03d", i)); got != want {
			t.Fatalf("CountFor(tok-%03d) = %d, want %d", i, got, want)
		}
	}
	if srv.Sent() != 980 || srv.Requests() != 1000 || len(srv.Messages()) != 1000 {
		t.Errorf("Sent = %d, Requests = %d, Messages = %d", srv.Sent(), srv.Requests(), len(srv.Messages()))
	}
}

func TestCountOnly(t *testing.T) {
	srv := fcmtest.Start(t, fcmtest.CountOnly())
	client := srv.Client(t)
	srv.FailToken("dead", fcmtest.Unregistered)
	br, err := client.SendEach(t.Context(), []*messaging.Message{{Token: "a"}, {Token: "b"}, {Token: "dead"}})
	if err != nil {
		t.Fatal(err)
	}
	if br.SuccessCount != 2 || !messaging.IsUnregistered(br.Responses[2].Error) {
		t.Errorf("SendEach in count-only mode: %+v", br)
	}
	if srv.Sent() != 2 || srv.Requests() != 3 || len(srv.Messages()) != 0 || srv.CountFor("a") != 0 {
		t.Errorf("Sent = %d, Requests = %d, Messages = %d, CountFor = %d", srv.Sent(), srv.Requests(), len(srv.Messages()), srv.CountFor("a"))
	}
}

func TestReset(t *testing.T) {
	srv := fcmtest.Start(t)
	client := srv.Client(t)
	srv.FailToken("a", fcmtest.Internal)
	client.Send(t.Context(), &messaging.Message{Token: "a"})
	srv.Reset()
	if _, err := client.Send(t.Context(), &messaging.Message{Token: "a"}); err != nil {
		t.Fatalf("scripted failure survived Reset: %v", err)
	}
	if srv.Requests() != 1 || len(srv.Messages()) != 1 || srv.CountFor("a") != 1 {
		t.Errorf("after Reset: Requests = %d, Messages = %d", srv.Requests(), len(srv.Messages()))
	}
}
