// Package fcmtest runs a fake Firebase Cloud Messaging HTTP v1 server on
// the loopback interface, for tests and benchmarks that drive the real
// Firebase Admin SDK. It answers POST /v1/projects/{project}/messages:send
// as FCM does, error bodies and Retry-After included, validates messages
// (one target, size, TTL, reserved data keys, APNs headers, conditions of at
// most five topics), honours validate_only, requires the OAuth access token
// its own token endpoint issues, and records what it received.
//
// Scripted failures (FailToken, FailNext), latency and the Retry-After sent
// with quota and availability errors can be changed while clients send.
// Every method is safe for concurrent use.
package fcmtest

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"
)

const (
	// DefaultProject is the Firebase project the server serves unless
	// WithProject names another.
	DefaultProject = "ajil-test"
	// MaxMessageBytes is the largest JSON encoding of a message to a token
	// the server accepts: FCM's 4 KB payload limit, applied, to be safe, to
	// the whole message as the SDK encodes it.
	MaxMessageBytes = 4096
	// MaxTopicMessageBytes is the same limit for topic and condition
	// messages, which FCM holds to 2 KB.
	MaxTopicMessageBytes = 2048
	// MaxConditionTopics is how many topics FCM allows in a condition.
	MaxConditionTopics = 5
	// maxRequestBytes bounds what the server reads of a request body.
	maxRequestBytes = 1 << 20
	// maxTTL is FCM's limit on android.ttl.
	maxTTL = 28 * 24 * time.Hour
)

// Server is a fake FCM v1 endpoint.
type Server struct {
	srv       *httptest.Server
	project   string
	countOnly bool
	done      chan struct{} // closed by Close, to cut latency waits short
	closeOnce sync.Once

	latency       atomic.Int64 // time.Duration of every answer
	requests      atomic.Int64 // messages:send requests, whatever the answer
	sent          atomic.Int64 // messages accepted for delivery
	ids           atomic.Int64
	tokenRequests atomic.Int64

	mu         sync.Mutex
	failToken  map[string]ErrorCode
	failNext   int
	failCode   ErrorCode
	retryAfter time.Duration
	received   []Received
	counts     map[string]int // accepted deliveries by token

	keyMu sync.Mutex
	key   *rsa.PrivateKey // of CredentialsFile, made on first use

	clientsMu sync.Mutex
	clients   []*http.Transport // made by HTTPClient, closed with the server
}

// Received is one message the server got.
type Received struct {
	Project      string
	ValidateOnly bool   // a dry run: validated, not delivered
	Token        string // the target: one of Token, Topic, Condition
	Topic        string
	Condition    string
	// JSON is the v1 "message" object exactly as the client encoded it.
	JSON json.RawMessage
	// Message is JSON decoded by the SDK's own types.
	Message *messaging.Message
	// Error is the error answered, "" when the message was accepted.
	Error ErrorCode
	// Name is the message name answered on success, "projects/p/messages/n".
	Name string
}

// Option configures a Server.
type Option func(*Server)

// WithLatency delays every answer by d, as a distant FCM would.
func WithLatency(d time.Duration) Option { return func(s *Server) { s.latency.Store(int64(d)) } }

// WithProject serves project instead of DefaultProject; sends to any other
// project are refused as FCM refuses a project the caller may not use.
func WithProject(project string) Option { return func(s *Server) { s.project = project } }

// CountOnly keeps counters only (Requests, Sent), not the messages, so
// that benchmarks can push millions through without the recording cost.
// Messages returns nothing and CountFor zero.
func CountOnly() Option { return func(s *Server) { s.countOnly = true } }

// Start starts a server on 127.0.0.1, speaking HTTP/1.1 and cleartext
// HTTP/2, closed at the end of the test.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	return s
}

// New starts a server as Start does, for use outside tests (`ajil bench`);
// the caller closes it.
func New(opts ...Option) *Server {
	s := &Server{
		project:   DefaultProject,
		done:      make(chan struct{}),
		failToken: make(map[string]ErrorCode),
		counts:    make(map[string]int),
	}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.handleSend)
	mux.HandleFunc("POST /token", s.handleToken)
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.Config.Protocols = new(http.Protocols)
	s.srv.Config.Protocols.SetHTTP1(true)
	s.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	s.srv.Start()
	return s
}

// Close stops the server, cutting latency waits short, and closes the
// connections of the clients it made.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.clientsMu.Lock()
		defer s.clientsMu.Unlock()
		for _, tr := range s.clients {
			tr.CloseIdleConnections()
		}
	})
}

// URL is the server's base URL, http://127.0.0.1:port.
func (s *Server) URL() string { return s.srv.URL }

// Endpoint is the FCM v1 endpoint to give the SDK with option.WithEndpoint.
func (s *Server) Endpoint() string { return s.srv.URL + "/v1" }

// TokenURL is the server's OAuth token endpoint.
func (s *Server) TokenURL() string { return s.srv.URL + "/token" }

// Project is the Firebase project the server serves.
func (s *Server) Project() string { return s.project }

// HTTPClient returns an HTTP client that speaks cleartext HTTP/2 to the
// server, as the SDK speaks HTTP/2 to FCM, and sends AccessToken.
func (s *Server) HTTPClient() *http.Client {
	// Every request in flight keeps its connection: SendEach runs 50 at
	// once, and a connection closed for want of an idle slot is redialed.
	tr := &http.Transport{Protocols: new(http.Protocols), MaxIdleConnsPerHost: 1024}
	tr.Protocols.SetUnencryptedHTTP2(true)
	s.clientsMu.Lock()
	s.clients = append(s.clients, tr)
	s.clientsMu.Unlock()
	return &http.Client{Transport: bearer{tr}}
}

// Client returns a messaging client of the real Firebase SDK that sends to
// the server through HTTPClient.
func (s *Server) Client(t testing.TB) *messaging.Client {
	t.Helper()
	ctx := t.Context()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: s.project},
		option.WithHTTPClient(s.HTTPClient()), option.WithEndpoint(s.Endpoint()))
	if err != nil {
		t.Fatalf("fcmtest: firebase app: %v", err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		t.Fatalf("fcmtest: messaging client: %v", err)
	}
	return c
}

// bearer adds the access token to every request.
type bearer struct{ base http.RoundTripper }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+AccessToken)
	return b.base.RoundTrip(r)
}

// FailToken makes every send to token fail with code until it is called
// again with the empty code.
func (s *Server) FailToken(token string, code ErrorCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == "" {
		delete(s.failToken, token)
		return
	}
	s.failToken[token] = code
}

// FailNext makes the next n sends fail with code, whatever their target,
// as in an outage. The SDK's own retries of a 503 count among the n.
func (s *Server) FailNext(n int, code ErrorCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext, s.failCode = n, code
}

// SetRetryAfter sets the Retry-After header answered with QuotaExceeded and
// Unavailable, in whole seconds; 0, the default, sends none. The SDK does
// not retry a 503 whose Retry-After exceeds two minutes.
func (s *Server) SetRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = d
}

// SetLatency delays every later answer by d.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Reset forgets the scripted failures and what was received.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.failToken)
	clear(s.counts)
	s.failNext, s.failCode, s.retryAfter, s.received = 0, "", 0, nil
	s.requests.Store(0)
	s.sent.Store(0)
}

// Messages returns every message received, in order of arrival, including
// those answered with an error and dry runs.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.received))
	copy(out, s.received)
	return out
}

// CountFor is how many messages to token the server accepted for delivery
// (dry runs and errors not counted).
func (s *Server) CountFor(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[token]
}

// Requests is how many send requests reached the server, whatever the answer.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Sent is how many messages the server accepted for delivery.
func (s *Server) Sent() int64 { return s.sent.Load() }

// TokenRequests is how many times clients asked for an access token.
func (s *Server) TokenRequests() int64 { return s.tokenRequests.Load() }

// sendRequest is the body of messages:send.
type sendRequest struct {
	ValidateOnly bool            `json:"validate_only"`
	Message      json.RawMessage `json:"message"`
}

// target is what validation needs of a message.
type target struct {
	Token     string            `json:"token"`
	Topic     string            `json:"topic"`
	Condition string            `json:"condition"`
	Data      map[string]string `json:"data"`
	Android   *struct {
		TTL      string `json:"ttl"`
		Priority string `json:"priority"`
	} `json:"android"`
	APNS *struct {
		Headers map[string]string `json:"headers"`
	} `json:"apns"`
}

func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-s.done:
			t.Stop()
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+AccessToken {
		writeError(w, Unauthenticated, 0)
		return
	}
	project := r.PathValue("project")
	if project != s.project {
		var b errorBody
		b.Error.Code, b.Error.Status = http.StatusForbidden, "PERMISSION_DENIED"
		b.Error.Message = fmt.Sprintf("Permission 'cloudmessaging.messages.create' denied on resource "+
			"'//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist).", project)
		writeJSON(w, http.StatusForbidden, b)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeInvalid(w, "", "Request body too large or unreadable.")
		return
	}
	var req sendRequest
	var tg target
	if json.Unmarshal(body, &req) != nil || len(req.Message) == 0 || json.Unmarshal(req.Message, &tg) != nil {
		writeInvalid(w, "message", "Invalid JSON payload received.")
		return
	}
	rec := Received{Project: project, ValidateOnly: req.ValidateOnly, Token: tg.Token, Topic: tg.Topic, Condition: tg.Condition}
	field, problem := validate(req.Message, &tg)
	if !s.countOnly {
		rec.JSON = req.Message
		rec.Message = new(messaging.Message)
		if err := json.Unmarshal(req.Message, rec.Message); err != nil && field == "" {
			field, problem = "message", "Invalid JSON payload received. "+err.Error()
		}
	}
	if field != "" {
		rec.Error = InvalidArgument
		s.record(rec)
		writeInvalid(w, field, problem)
		return
	}

	s.mu.Lock()
	code := s.failToken[tg.Token]
	if s.failNext > 0 {
		s.failNext--
		code = s.failCode
	}
	retryAfter := s.retryAfter
	s.mu.Unlock()
	if code != "" {
		rec.Error = code
		s.record(rec)
		writeError(w, code, retryAfter)
		return
	}

	if req.ValidateOnly {
		// FCM names every dry run the same.
		rec.Name = "projects/" + project + "/messages/fake_message_id"
	} else {
		rec.Name = "projects/" + project + "/messages/0:" + strconv.FormatInt(s.ids.Add(1), 10)
		s.sent.Add(1)
	}
	s.record(rec)
	writeJSON(w, http.StatusOK, map[string]string{"name": rec.Name})
}

// record keeps rec unless the server only counts.
func (s *Server) record(rec Received) {
	if s.countOnly {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received = append(s.received, rec)
	if rec.Error == "" && !rec.ValidateOnly && rec.Token != "" {
		s.counts[rec.Token]++
	}
}

var (
	topicRe     = regexp.MustCompile(`^[a-zA-Z0-9-_.~%]+$`)
	conditionRe = regexp.MustCompile(`'([^']*)'\s+in\s+topics`)
)

// validate returns the field FCM would refuse and why, or "" when the
// message is acceptable.
func validate(raw json.RawMessage, m *target) (field, problem string) {
	n := 0
	for _, t := range []string{m.Token, m.Topic, m.Condition} {
		if t != "" {
			n++
		}
	}
	if n != 1 {
		return "message", "Exactly one of token, topic or condition must be set."
	}
	limit := MaxMessageBytes
	if m.Token == "" {
		limit = MaxTopicMessageBytes
	}
	if len(raw) > limit {
		return "message", fmt.Sprintf("Message is too big: %d bytes, limit %d.", len(raw), limit)
	}
	if m.Topic != "" && !topicRe.MatchString(m.Topic) {
		return "message.topic", "Invalid topic name."
	}
	if m.Condition != "" {
		topics := conditionRe.FindAllStringSubmatch(m.Condition, -1)
		if len(topics) == 0 || len(topics) > MaxConditionTopics {
			return "message.condition", fmt.Sprintf("Invalid condition: it must name 1 to %d topics.", MaxConditionTopics)
		}
		for _, t := range topics {
			if !topicRe.MatchString(t[1]) {
				return "message.condition", fmt.Sprintf("Invalid topic name %q in condition.", t[1])
			}
		}
	}
	for k := range m.Data {
		if k == "from" || k == "notification" || k == "message_type" ||
			strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.") {
			return "message.data", fmt.Sprintf("Invalid data payload key: %s", k)
		}
	}
	if a := m.Android; a != nil {
		if a.Priority != "" && a.Priority != "normal" && a.Priority != "high" {
			return "message.android.priority", "Invalid Android priority."
		}
		if a.TTL != "" {
			secs, err := strconv.ParseFloat(strings.TrimSuffix(a.TTL, "s"), 64)
			if !strings.HasSuffix(a.TTL, "s") || err != nil || secs < 0 || secs > maxTTL.Seconds() {
				return "message.android.ttl", fmt.Sprintf("Invalid value at 'message.android.ttl' (%s): 0s to 2419200s.", a.TTL)
			}
		}
	}
	if a := m.APNS; a != nil {
		h := a.Headers
		if p, ok := h["apns-priority"]; ok && p != "5" && p != "10" && p != "1" {
			return "message.apns.headers", "Invalid apns-priority: 1, 5 or 10."
		}
		if e, ok := h["apns-expiration"]; ok {
			if _, err := strconv.ParseInt(e, 10, 64); err != nil {
				return "message.apns.headers", "Invalid apns-expiration: a UNIX time in seconds."
			}
		}
		if len(h["apns-collapse-id"]) > 64 {
			return "message.apns.headers", "apns-collapse-id is over 64 bytes."
		}
		if h["apns-push-type"] == "background" && h["apns-priority"] != "" && h["apns-priority"] != "5" {
			return "message.apns.headers", "A background push must have apns-priority 5."
		}
	}
	return "", ""
}
