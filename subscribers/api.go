package subscribers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/webhook"
)

const (
	// DefaultRateLimit is each key's sustained request rate, per second. An
	// app backend registers devices as readers open the app: a million
	// daily readers average about a dozen registrations a second and peak
	// at several times that after a big alert. 200/s absorbs such peaks and
	// still stops a runaway client loop from crowding the fan-out's Redis.
	DefaultRateLimit rate.Limit = 200
	// DefaultRateBurst lets a backend replay two seconds of queued
	// registrations at once after a restart.
	DefaultRateBurst = 400
	// DefaultMaxBodyBytes bounds a request body; the largest valid one, an
	// endpoint with full filters, is a few kilobytes.
	DefaultMaxBodyBytes = 64 << 10
	// DefaultRequestTimeout bounds the Redis work of one request; a
	// registration is a single script call of well under a millisecond.
	DefaultRequestTimeout = 5 * time.Second
)

// APIConfig configures the HTTP API. The zero value is usable.
type APIConfig struct {
	// RateLimit is each key's request rate per second; DefaultRateLimit if
	// zero, unlimited if rate.Inf.
	RateLimit rate.Limit
	// RateBurst is how many requests a key may make at once;
	// DefaultRateBurst if zero.
	RateBurst int
	// MaxBodyBytes bounds request bodies; DefaultMaxBodyBytes if zero.
	MaxBodyBytes int64
	// RequestTimeout bounds each request's Redis work;
	// DefaultRequestTimeout if zero.
	RequestTimeout time.Duration
	// Attempts is the webhook delivery log behind
	// GET /v1/endpoints/{id}/attempts; nil serves an empty log.
	Attempts attemptLog
}

// attemptLog reads the last webhook delivery attempts to an endpoint.
type attemptLog interface {
	List(ctx context.Context, endpointID string, n int) ([]webhook.Attempt, error)
}

var _ attemptLog = (*webhook.AttemptLog)(nil)

func (c APIConfig) withDefaults() APIConfig {
	if c.RateLimit <= 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst <= 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// API is the registry's HTTP API. See the package documentation for its
// routes, roles and errors.
type API struct {
	reg      *Registry
	keys     *Keys
	cfg      APIConfig
	log      *slog.Logger
	mux      *http.ServeMux
	limiters []*rate.Limiter // one per key, by index in keys
}

var _ http.Handler = (*API)(nil)

// NewAPI returns the HTTP API over reg, admitting the keys in keys.
func NewAPI(reg *Registry, keys *Keys, cfg APIConfig, log *slog.Logger) *API {
	a := &API{reg: reg, keys: keys, cfg: cfg.withDefaults(), log: log, mux: http.NewServeMux()}
	a.limiters = make([]*rate.Limiter, keys.Len())
	for i := range a.limiters {
		a.limiters[i] = rate.NewLimiter(a.cfg.RateLimit, a.cfg.RateBurst)
	}
	devices := []Role{RoleApp}
	audience := []Role{RoleApp, RoleEditor}
	endpoints := []Role{RolePartnerAdmin}
	a.route("PUT /v1/devices/{token}", a.putDevice, devices)
	a.route("DELETE /v1/devices/{token}", a.deleteDevice, devices)
	a.route("GET /v1/audience", a.getAudience, audience)
	a.route("POST /v1/endpoints", a.createEndpoint, endpoints)
	a.route("GET /v1/endpoints", a.listEndpoints, endpoints)
	a.route("GET /v1/endpoints/{id}", a.getEndpoint, endpoints)
	a.route("PATCH /v1/endpoints/{id}", a.patchEndpoint, endpoints)
	a.route("DELETE /v1/endpoints/{id}", a.deleteEndpoint, endpoints)
	a.route("POST /v1/endpoints/{id}/rotate-secret", a.rotateSecret, endpoints)
	a.route("POST /v1/endpoints/{id}/enable", a.enableEndpoint, endpoints)
	a.route("GET /v1/endpoints/{id}/attempts", a.listAttempts, endpoints)
	return a
}

// ServeHTTP serves the API; unknown routes and methods get the JSON error
// shape too.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	// The mux's own 404 or 405: keep its status and Allow header, not its
	// text body.
	rec := &statusRecorder{header: w.Header()}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		writeError(w, &APIError{Code: CodeMethodNotAllowed, Message: fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, w.Header().Get("Allow"))})
		return
	}
	writeError(w, &APIError{Code: CodeNotFound, Message: fmt.Sprintf("no route %s %s; routes are under /v1/devices, /v1/audience and /v1/endpoints", r.Method, r.URL.Path)})
}

type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.status = code }

// route registers h behind authentication, the roles (admin is always
// allowed), the key's rate limit, the body limit and the request timeout.
func (a *API) route(pattern string, h func(http.ResponseWriter, *http.Request) error, roles []Role) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		idx, role, ok := a.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ajil"`)
			writeError(w, &APIError{Code: CodeUnauthenticated, Message: "send a valid API key as \"Authorization: Bearer KEY\""})
			return
		}
		if role != RoleAdmin && !slices.Contains(roles, role) {
			writeError(w, &APIError{Code: CodeForbidden, Message: fmt.Sprintf("this key's role, %s, may not %s %s; use a key with role %s", role, r.Method, r.Pattern[strings.IndexByte(r.Pattern, ' ')+1:], rolesText(roles))})
			return
		}
		res := a.limiters[idx].Reserve()
		if d := res.Delay(); d > 0 {
			res.Cancel()
			secs := int(math.Ceil(d.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, &APIError{Code: CodeRateLimited, Message: fmt.Sprintf("this key is over %g requests a second; retry in %d s", float64(a.cfg.RateLimit), secs)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.RequestTimeout)
		defer cancel()
		if err := h(w, r.WithContext(ctx)); err != nil {
			a.fail(w, r, role, err)
		}
	})
}

func rolesText(roles []Role) string {
	s := make([]string, 0, len(roles)+1)
	for _, r := range roles {
		s = append(s, string(r))
	}
	return strings.Join(append(s, string(RoleAdmin)), " or ")
}

// authenticate returns the index and role of the request's bearer key.
func (a *API) authenticate(r *http.Request) (int, Role, bool) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return -1, "", false
	}
	return a.keys.lookup(strings.TrimSpace(key))
}

// fail writes err as an API error; anything unexpected is logged and
// answered with a bare 500.
func (a *API) fail(w http.ResponseWriter, r *http.Request, role Role, err error) {
	var ae *APIError
	var tooLarge *http.MaxBytesError
	switch fes := alert.FieldErrors(err); {
	case errors.As(err, &ae):
		writeError(w, ae)
	case len(fes) > 0:
		writeError(w, &APIError{Code: CodeInvalidField, Field: fes[0].Field, Message: fes[0].Problem + "; " + fes[0].Fix})
	case errors.As(err, &tooLarge):
		writeError(w, &APIError{Code: CodeBodyTooLarge, Message: fmt.Sprintf("the body is over %d bytes", tooLarge.Limit)})
	case errors.Is(err, ErrNotFound):
		writeError(w, &APIError{Code: CodeNotFound, Message: err.Error()})
	case errors.Is(err, ErrConflict):
		writeError(w, &APIError{Code: CodeConflict, Message: err.Error()})
	default:
		a.log.Error("api request failed", "route", r.Pattern, "role", role, "err", err)
		writeError(w, &APIError{Code: CodeInternal, Message: "internal error; it has been logged, try again shortly"})
	}
}

func writeError(w http.ResponseWriter, e *APIError) {
	writeJSON(w, e.Code.Status(), ErrorBody{Error: *e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// decode reads a JSON object into v, strictly: every member must be one of
// fields (case-sensitive), and values must have the right types. It
// returns which members were present, for PATCH.
func decode(r *http.Request, v any, fields ...string) (map[string]bool, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, &APIError{Code: CodeInvalidJSON, Message: "the body must be one JSON object, e.g. {\"" + fields[0] + "\": ...}"}
	}
	present := make(map[string]bool, len(raw))
	for name := range raw {
		present[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		if name == "" {
			return nil, &APIError{Code: CodeInvalidJSON, Message: fmt.Sprintf("the body has a member with an empty name; the fields are %s", strings.Join(fields, ", "))}
		}
		if !slices.Contains(fields, name) {
			return nil, &APIError{Code: CodeInvalidField, Field: name, Message: fmt.Sprintf("is not a field here; the fields are %s", strings.Join(fields, ", "))}
		}
		if !utf8.Valid(raw[name]) {
			// encoding/json would store U+FFFD in place of the bytes.
			return nil, &APIError{Code: CodeInvalidField, Field: name, Message: "is not UTF-8 text; send the body as UTF-8, as JSON requires"}
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field, _, _ := strings.Cut(te.Field, ".")
			return nil, &APIError{Code: CodeInvalidField, Field: field, Message: fmt.Sprintf("must be %s, not a JSON %s", jsonKind(te.Type), te.Value)}
		}
		return nil, &APIError{Code: CodeInvalidJSON, Message: "the body must be one JSON object"}
	}
	return present, nil
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "a list"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// DeviceRequest is the body of PUT /v1/devices/{token}.
type DeviceRequest struct {
	Platform Platform `json:"platform"`
	Lang     string   `json:"lang,omitempty"`
	Topics   []string `json:"topics,omitempty"`
	Region   string   `json:"region,omitempty"`
}

func (a *API) putDevice(w http.ResponseWriter, r *http.Request) error {
	token := r.PathValue("token")
	if !ValidToken(token) {
		return tokenError(token)
	}
	var req DeviceRequest
	if _, err := decode(r, &req, "platform", "lang", "topics", "region"); err != nil {
		return err
	}
	d, created, err := a.reg.Upsert(r.Context(), Device{Token: token, Platform: req.Platform, Lang: req.Lang, Topics: req.Topics, Region: req.Region})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, d)
	return nil
}

func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	token := r.PathValue("token")
	if !ValidToken(token) {
		return tokenError(token)
	}
	if err := a.reg.Remove(r.Context(), token); err != nil {
		if errors.Is(err, ErrNotFound) {
			return &APIError{Code: CodeNotFound, Message: "no device is registered with this token"}
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Audience is the body of GET /v1/audience: how many devices follow a
// topic in a language (its primary subtag).
type Audience struct {
	Topic string `json:"topic"`
	Lang  string `json:"lang"`
	Count int64  `json:"count"`
}

func (a *API) getAudience(w http.ResponseWriter, r *http.Request) error {
	topic, lang := r.URL.Query().Get("topic"), r.URL.Query().Get("lang")
	if lang == "" {
		lang = alert.DefaultLang
	}
	n, err := a.reg.Count(r.Context(), topic, lang)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, Audience{Topic: topic, Lang: IndexLang(lang), Count: n})
	return nil
}

// EndpointRequest is the body of POST /v1/endpoints and, with only the
// members to change, of PATCH /v1/endpoints/{id}.
type EndpointRequest struct {
	URL         string       `json:"url"`
	Description string       `json:"description,omitempty"`
	Kinds       []alert.Kind `json:"kinds,omitempty"`
	Topics      []string     `json:"topics,omitempty"`
	Langs       []string     `json:"langs,omitempty"`
}

var endpointFields = []string{"url", "description", "kinds", "topics", "langs"}

// EndpointInfo is an endpoint as the API shows it. Secret is present only
// in the responses that create it: POST /v1/endpoints and rotate-secret.
type EndpointInfo struct {
	ID                      string        `json:"id"`
	URL                     string        `json:"url"`
	Description             string        `json:"description"`
	Kinds                   []alert.Kind  `json:"kinds"`
	Topics                  []string      `json:"topics"`
	Langs                   []string      `json:"langs"`
	State                   EndpointState `json:"state"`
	DisabledReason          string        `json:"disabled_reason,omitempty"`
	DisabledAt              time.Time     `json:"disabled_at,omitzero"`
	CreatedAt               time.Time     `json:"created_at"`
	PreviousSecretExpiresAt time.Time     `json:"previous_secret_expires_at,omitzero"`
	Secret                  string        `json:"secret,omitempty"`
}

// EndpointList is the body of GET /v1/endpoints.
type EndpointList struct {
	Endpoints []EndpointInfo `json:"endpoints"`
}

func (a *API) info(e Endpoint) EndpointInfo {
	v := EndpointInfo{
		ID: e.ID, URL: e.URL, Description: e.Description,
		Kinds: nonNil(e.Filter.Kinds), Topics: nonNil(e.Filter.Topics), Langs: nonNil(e.Filter.Langs),
		State: e.State, DisabledReason: e.DisabledReason, DisabledAt: e.DisabledAt, CreatedAt: e.Created,
	}
	if e.PreviousSecret != "" && a.reg.now().Before(e.PreviousSecretUntil) {
		v.PreviousSecretExpiresAt = e.PreviousSecretUntil
	}
	return v
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *API) createEndpoint(w http.ResponseWriter, r *http.Request) error {
	var req EndpointRequest
	if _, err := decode(r, &req, endpointFields...); err != nil {
		return err
	}
	e, err := a.reg.CreateEndpoint(r.Context(), EndpointSpec{URL: req.URL, Description: req.Description,
		Filter: Filter{Kinds: req.Kinds, Topics: req.Topics, Langs: req.Langs}})
	if err != nil {
		return err
	}
	a.log.Info("endpoint created", "endpoint", e)
	v := a.info(e)
	v.Secret = e.Secret
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (a *API) listEndpoints(w http.ResponseWriter, r *http.Request) error {
	es, err := a.reg.Endpoints(r.Context())
	if err != nil {
		return err
	}
	list := EndpointList{Endpoints: make([]EndpointInfo, len(es))}
	for i, e := range es {
		list.Endpoints[i] = a.info(e)
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (a *API) getEndpoint(w http.ResponseWriter, r *http.Request) error {
	e, err := a.reg.Endpoint(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.info(e))
	return nil
}

func (a *API) patchEndpoint(w http.ResponseWriter, r *http.Request) error {
	var req EndpointRequest
	present, err := decode(r, &req, endpointFields...)
	if err != nil {
		return err
	}
	var p EndpointPatch
	if present["url"] {
		p.URL = &req.URL
	}
	if present["description"] {
		p.Description = &req.Description
	}
	if present["kinds"] {
		p.Kinds = &req.Kinds
	}
	if present["topics"] {
		p.Topics = &req.Topics
	}
	if present["langs"] {
		p.Langs = &req.Langs
	}
	e, err := a.reg.UpdateEndpoint(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	a.log.Info("endpoint updated", "endpoint", e)
	writeJSON(w, http.StatusOK, a.info(e))
	return nil
}

func (a *API) deleteEndpoint(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := a.reg.DeleteEndpoint(r.Context(), id); err != nil {
		return err
	}
	a.log.Info("endpoint deleted", "id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) error {
	e, err := a.reg.RotateSecret(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a.log.Info("endpoint secret rotated", "endpoint", e, "previous_valid_until", e.PreviousSecretUntil)
	v := a.info(e)
	v.Secret = e.Secret
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) enableEndpoint(w http.ResponseWriter, r *http.Request) error {
	e, err := a.reg.EnableEndpoint(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a.log.Info("endpoint enabled", "endpoint", e)
	writeJSON(w, http.StatusOK, a.info(e))
	return nil
}

// AttemptList is the answer of GET /v1/endpoints/{id}/attempts, newest
// first.
type AttemptList struct {
	Attempts []webhook.Attempt `json:"attempts"`
}

// DefaultAttempts is how many attempts the log answers without ?n=.
const DefaultAttempts = 20

func (a *API) listAttempts(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := a.reg.Endpoint(r.Context(), id); err != nil {
		return err
	}
	n := DefaultAttempts
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > webhook.DefaultKeep {
			return &alert.FieldError{Field: "n", Problem: fmt.Sprintf("%q is not a count", v), Fix: fmt.Sprintf("use 1 to %d", webhook.DefaultKeep)}
		}
	}
	list := AttemptList{Attempts: []webhook.Attempt{}}
	if a.cfg.Attempts != nil {
		got, err := a.cfg.Attempts.List(r.Context(), id, n)
		if err != nil {
			return err
		}
		list.Attempts = nonNil(got)
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}
