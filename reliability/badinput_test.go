package reliability_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/text/encoding/charmap"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/internal/natstest"
	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/internal/proctest"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

// loadJSON reads testdata/name into v, strictly.
func loadJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("testdata/%s: %v", name, err)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bad messages written straight to the streams with the NATS client, as a
// buggy or hostile publisher would: each is terminated on its first
// delivery with a dead letter whose Ajil-Reason says what is wrong, and
// the valid alert published after them all reaches every device once. An
// alert over the stream's size limit never gets in at all.
func TestBadStreamInput(t *testing.T) {
	noLeaks(t)
	var cases []struct {
		Name, File, Subject, Reason string
	}
	loadJSON(t, "stream.json", &cases)
	e := newEnv(t)
	ns := natstest.Start(t)
	e.start(ns.Conn(), replica{Config: dispatcher.Config{Name: "a"}})
	tokens := e.devices("b", 100, "breaking", "ar")
	js := ns.JetStream()

	// JetStream itself refuses what is over alert.MaxWireBytes.
	huge := bytes.Repeat([]byte("خبر "), alert.MaxWireBytes/len("خبر ")+1)
	var apiErr *jetstream.APIError
	if _, err := js.Publish(t.Context(), "ajil.alerts.breaking", huge); !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
		t.Fatalf("publishing %d bytes: %v; want the stream to refuse it for size", len(huge), err)
	}

	sent := map[string]int{} // "stream/seq" of each bad message -> its case
	for i, c := range cases {
		ack, err := js.Publish(t.Context(), c.Subject, readTestdata(t, c.File))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		sent[fmt.Sprintf("%s/%d", ack.Stream, ack.Sequence)] = i
	}
	good := publishAlert(t, js, alert.Alert{Headline: "خبر سليم بعد ثلاث عشرة رسالة تالفة"})
	waitState(t, ns.Conn(), good.ID, "done", 30*time.Second)

	var dead []*jetstream.RawStreamMsg
	poll.Until(t, 10*time.Second, func() error {
		dead = natstest.Messages(t.Context(), t, js, dispatcher.DefaultDeadStream)
		if len(dead) != len(cases) {
			return fmt.Errorf("%d dead letters, want %d", len(dead), len(cases))
		}
		return nil
	})
	for _, m := range dead {
		from := m.Header.Get(dispatcher.HeaderOrigStream) + "/" + m.Header.Get(dispatcher.HeaderOrigSeq)
		i, ok := sent[from]
		if !ok {
			t.Errorf("dead letter for %s, which was not sent bad", from)
			continue
		}
		c := cases[i]
		reason := m.Header.Get(dispatcher.HeaderReason)
		t.Logf("%-34s -> %s", c.Name, reason)
		if !strings.Contains(reason, c.Reason) {
			t.Errorf("%s: reason %q does not mention %q", c.Name, reason, c.Reason)
		}
		if !bytes.Equal(m.Data, readTestdata(t, c.File)) {
			t.Errorf("%s: the dead letter does not hold the message as it was sent", c.Name)
		}
	}
	// Terminated, not left to be redelivered MaxDeliver times.
	for _, cons := range []struct{ stream, name string }{
		{publisher.DefaultStream, dispatcher.DefaultAlertConsumer}, {dispatcher.DefaultWorkStream, dispatcher.DefaultWorkConsumer},
	} {
		info, err := js.Consumer(t.Context(), cons.stream, cons.name)
		if err != nil {
			t.Fatal(err)
		}
		ci, err := info.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumRedelivered != 0 || ci.NumAckPending != 0 || ci.NumPending != 0 {
			t.Errorf("consumer %s: %d redelivered, %d awaiting ack, %d pending; want every bad message ended at once",
				cons.name, ci.NumRedelivered, ci.NumAckPending, ci.NumPending)
		}
	}
	c := count(e.fcm, tokens, 1)
	t.Logf("%d bad messages, %d dead letters; the valid alert after them: %s", len(cases), len(dead), c)
	if c.Missed != 0 || c.Duplicated != 0 {
		t.Fatalf("valid alert after the bad ones: %s", c)
	}
}

// Bad requests to the registration API, wrongly encoded ones among them:
// each gets a 4xx with the one error shape, naming the field when one is
// at fault, and nothing is stored.
func TestBadAPIInput(t *testing.T) {
	noLeaks(t)
	var cases []struct {
		Name, Method, Path, Body string
		Status                   int
		Field                    string
	}
	loadJSON(t, "api.json", &cases)
	e := newEnv(t)
	keys, err := subscribers.ParseKeys("admin:" + adminKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(subscribers.NewAPI(e.reg, keys, subscribers.APIConfig{}, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			path := strings.Replace(c.Path, "LONGTOKEN", strings.Repeat("a", subscribers.MaxTokenBytes+1), 1)
			req, err := http.NewRequestWithContext(t.Context(), c.Method, srv.URL+path, bytes.NewReader(readTestdata(t, c.Body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+adminKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var eb subscribers.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("%d %s: not the API's error shape (%v)", resp.StatusCode, body, err)
			}
			if resp.StatusCode != c.Status || eb.Error.Field != c.Field {
				t.Fatalf("%d %s; want %d naming field %q", resp.StatusCode, body, c.Status, c.Field)
			}
		})
	}
	if n, err := e.rdb.DBSize(t.Context()).Result(); err != nil || n != 0 {
		t.Fatalf("Redis holds %d keys (%v) after bad requests only; want nothing stored", n, err)
	}
}

// Bad input to `ajil publish`: each run exits 2 with a message naming the
// field or flag at fault, and the stream stays empty.
func TestBadCLIInput(t *testing.T) {
	var cases []struct {
		Name  string
		Args  []string
		Field string
	}
	loadJSON(t, "cli.json", &cases)
	ns := natstest.Start(t)
	js := ns.JetStream()
	if _, err := publisher.EnsureStream(t.Context(), js, publisher.Config{}); err != nil {
		t.Fatal(err)
	}
	// The one input a JSON file cannot carry: a headline argument in the
	// Windows-1256 encoding an older newsroom system would pass on.
	cp1256, err := charmap.Windows1256.NewEncoder().String("زلزال بقوة 6 درجات")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			args := []string{"publish", "--nats-url", ns.URL()}
			for _, a := range c.Args {
				switch {
				case a == "HEADLINE_WINDOWS_1256":
					a = cp1256
				case strings.HasPrefix(a, "cli/"):
					a = filepath.Join("testdata", a)
				}
				args = append(args, a)
			}
			r := proctest.Run(t, ajilBin, nil, args...)
			if r.Code != 2 || !strings.Contains(r.Stderr, c.Field) {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming %s\nstdout: %s", r.Code, r.Stderr, c.Field, r.Stdout)
			}
		})
	}
	info, err := js.Stream(t.Context(), publisher.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := info.Info(t.Context()); err != nil || st.State.Msgs != 0 {
		t.Fatalf("the stream holds %d alerts (%v) after bad input only", st.State.Msgs, err)
	}
}
