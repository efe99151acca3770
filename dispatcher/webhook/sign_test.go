package webhook_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ajil-news/ajil/dispatcher/webhook"
)

// headers are what Deliver sends, for the official verifier.
func headers(msgID string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(standardwebhooks.HeaderWebhookID, msgID)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, sig)
	return h
}

func verifier(t testing.TB, secret string) *standardwebhooks.Webhook {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

// TestSignSpecVector is the example from the Standard Webhooks spec and its
// reference libraries.
func TestSignSpecVector(t *testing.T) {
	got, err := webhook.Sign([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestSignVerifiedByOfficialLibrary(t *testing.T) {
	oldSecret, newSecret, otherSecret := webhook.NewSecret(), webhook.NewSecret(), webhook.NewSecret()
	body, err := webhook.Payload(readAlert(t, "published"), planned)
	if err != nil {
		t.Fatal(err)
	}
	msgID := webhook.MessageID("0190d7a0-7c1e-7000-8000-000000000001", "ep_1")
	now := time.Now()
	tampered := []byte(strings.Replace(string(body), "٣", "٤", 1))

	tests := []struct {
		name    string
		secrets []string // signing
		verify  string   // the partner's secret
		ts      time.Time
		body    []byte // as received
		msgID   string // as received
		want    error
	}{
		{"one secret", []string{newSecret}, newSecret, now, body, msgID, nil},
		{"rotation, partner still on the old secret", []string{oldSecret, newSecret}, oldSecret, now, body, msgID, nil},
		{"rotation, partner already on the new secret", []string{oldSecret, newSecret}, newSecret, now, body, msgID, nil},
		{"wrong secret", []string{oldSecret, newSecret}, otherSecret, now, body, msgID, standardwebhooks.ErrNoMatchingSignature},
		{"tampered body", []string{newSecret}, newSecret, now, tampered, msgID, standardwebhooks.ErrNoMatchingSignature},
		{"one byte appended", []string{newSecret}, newSecret, now, append(body[:len(body):len(body)], ' '), msgID, standardwebhooks.ErrNoMatchingSignature},
		{"message id swapped", []string{newSecret}, newSecret, now, body, webhook.MessageID("other", "ep_1"), standardwebhooks.ErrNoMatchingSignature},
		{"stale timestamp", []string{newSecret}, newSecret, now.Add(-10 * time.Minute), body, msgID, standardwebhooks.ErrMessageTooOld},
		{"timestamp from the future", []string{newSecret}, newSecret, now.Add(10 * time.Minute), body, msgID, standardwebhooks.ErrMessageTooNew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := webhook.Sign(tt.secrets, msgID, tt.ts, body)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(strings.Fields(sig)); n != len(tt.secrets) {
				t.Errorf("signature %q has %d parts, want one per secret", sig, n)
			}
			err = verifier(t, tt.verify).Verify(tt.body, headers(tt.msgID, tt.ts, sig))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignMalformedSecret(t *testing.T) {
	key := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name    string
		secrets []string
		want    string // in the message
	}{
		{"no secret", nil, "no secret"},
		{"missing prefix", []string{key(32)}, `"whsec_"`},
		{"other prefix", []string{"whsk_" + key(32)}, `"whsec_"`},
		{"not base64", []string{"whsec_not*base64!"}, "base64"},
		{"URL-safe base64", []string{"whsec_" + strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\xfb\xff", 16))))}, "base64"},
		{"too short", []string{"whsec_" + key(16)}, "16 bytes"},
		{"too long", []string{"whsec_" + key(65)}, "65 bytes"},
		{"second of two bad", []string{webhook.NewSecret(), "whsec_"}, "secret 2 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.Sign(tt.secrets, "msg_1", time.Now(), []byte("{}"))
			if !errors.Is(err, webhook.ErrInvalidSecret) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidSecret mentioning %s", err, tt.want)
			}
			for _, s := range tt.secrets {
				if len(s) > len("whsec_") && strings.Contains(err.Error(), s) {
					t.Errorf("error %q reveals the secret", err)
				}
			}
		})
	}
	for _, n := range []int{webhook.MinSecretBytes, 32, webhook.MaxSecretBytes} {
		if _, err := webhook.Sign([]string{"whsec_" + key(n)}, "msg_1", time.Now(), nil); err != nil {
			t.Errorf("%d-byte key refused: %v", n, err)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, b := webhook.NewSecret(), webhook.NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	key, err := webhook.DecodeSecret(a)
	if err != nil || len(key) != 32 {
		t.Fatalf("DecodeSecret(NewSecret()) = %d bytes, %v", len(key), err)
	}
	verifier(t, a) // the official library reads it too
}

func TestMessageID(t *testing.T) {
	valid := regexp.MustCompile(`^msg_[0-9a-f]{32}$`)
	pairs := [][2]string{
		{"0190d7a0-7c1e-7000-8000-000000000001", "ep_1"},
		{"0190d7a0-7c1e-7000-8000-000000000001", "ep_2"},
		{"0190d7a0-7c1e-7000-8000-000000000002", "ep_1"},
		{"ab", "c"}, {"a", "bc"}, // joined the same way, still distinct
		{"a:1b", ""}, {"a", "1b"},
		{"desk:2024-03-01.baghdad_1", "شريك\n\"x\""}, // any endpoint ID gives a valid header value
		{"", ""},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		id := webhook.MessageID(p[0], p[1])
		if !valid.MatchString(id) {
			t.Errorf("MessageID(%q, %q) = %q, not a plain header value", p[0], p[1], id)
		}
		if again := webhook.MessageID(p[0], p[1]); again != id {
			t.Errorf("MessageID(%q, %q) not stable: %q then %q", p[0], p[1], id, again)
		}
		if q, dup := seen[id]; dup {
			t.Errorf("MessageID(%q) = MessageID(%q) = %s", p, q, id)
		}
		seen[id] = p
	}
}
