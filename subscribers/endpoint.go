package subscribers

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher/webhook"
)

const (
	// MaxDescriptionBytes bounds an endpoint's description: a line or two
	// naming the partner and the contact, in any script.
	MaxDescriptionBytes = 1024
	// MaxFilterValues bounds each endpoint filter list; an endpoint that
	// needs more wants everything.
	MaxFilterValues = 64
	// SecretPrefix starts every Standard Webhooks secret.
	SecretPrefix = "whsec_"
	// EndpointIDPrefix starts every endpoint ID.
	EndpointIDPrefix = "ep_"
)

// EndpointState says whether an endpoint receives deliveries.
type EndpointState string

const (
	EndpointEnabled  EndpointState = "enabled"
	EndpointDisabled EndpointState = "disabled"
)

// Filter selects the alerts an endpoint receives. An empty list lets every
// value through.
type Filter struct {
	Kinds  []alert.Kind // published, corrected, retracted
	Topics []string     // at least one of the alert's topics
	Langs  []string     // the alert's language; "ar" also matches "ar-EG"
}

// EndpointSpec is what a partner admin sets on an endpoint.
type EndpointSpec struct {
	URL         string
	Description string
	Filter      Filter
}

// EndpointPatch changes the fields that are not nil.
type EndpointPatch struct {
	URL         *string
	Description *string
	Kinds       *[]alert.Kind
	Topics      *[]string
	Langs       *[]string
}

// Endpoint is a partner's webhook endpoint.
type Endpoint struct {
	ID             string
	URL            string
	Description    string
	Filter         Filter
	State          EndpointState
	DisabledReason string    // why it was disabled, when it is
	DisabledAt     time.Time // when it was disabled, when it is
	Created        time.Time

	// Secret signs deliveries, in Standard Webhooks form: "whsec_" and the
	// base64 of 32 random bytes.
	Secret string
	// PreviousSecret, until PreviousSecretUntil, also signs deliveries so
	// that a partner can switch to a rotated secret at leisure.
	PreviousSecret      string
	PreviousSecretUntil time.Time
}

// Enabled reports whether the endpoint receives deliveries.
func (e Endpoint) Enabled() bool { return e.State != EndpointDisabled }

// SigningSecrets returns the secrets to sign a delivery with at now: the
// current one and, within the grace window after a rotation, the previous.
func (e Endpoint) SigningSecrets(now time.Time) []string {
	s := []string{e.Secret}
	if e.PreviousSecret != "" && now.Before(e.PreviousSecretUntil) {
		s = append(s, e.PreviousSecret)
	}
	return s
}

// Matches reports whether a should be delivered to the endpoint: it is
// enabled and a passes every filter.
func (e Endpoint) Matches(a alert.Alert) bool {
	f := e.Filter
	if !e.Enabled() {
		return false
	}
	if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, a.Kind) {
		return false
	}
	if len(f.Topics) > 0 && !slices.ContainsFunc(a.Topics, func(t string) bool { return slices.Contains(f.Topics, t) }) {
		return false
	}
	if len(f.Langs) > 0 && !slices.ContainsFunc(f.Langs, func(l string) bool { return langMatches(l, a.Lang) }) {
		return false
	}
	return true
}

// langMatches reports whether filter tag f covers alert language lang: the
// same tag, or a prefix of it ("ar" covers "ar-EG"), ignoring case.
func langMatches(f, lang string) bool {
	f, lang = strings.ToLower(f), strings.ToLower(lang)
	return f == lang || strings.HasPrefix(lang, f+"-")
}

// LogValue keeps secrets out of logs.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", e.ID), slog.String("url", e.URL), slog.String("state", string(e.State)))
}

var (
	_ slog.LogValuer = Endpoint{}

	idEncoding   = base32.StdEncoding.WithPadding(base32.NoPadding)
	endpointIDRe = regexp.MustCompile(`^ep_[a-z2-7]{16}$`)
)

// newEndpointID returns "ep_" and 80 random bits: unguessable, short
// enough to type.
func newEndpointID() string {
	return EndpointIDPrefix + strings.ToLower(idEncoding.EncodeToString(randomBytes(10)))
}

// NewSecret returns a fresh Standard Webhooks secret: "whsec_" and the
// base64 of 32 bytes from crypto/rand.
func NewSecret() string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(randomBytes(32))
}

// randomBytes returns n bytes from crypto/rand, whose Read never fails
// since Go 1.24.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// checkURL validates an endpoint URL with the webhook channel's own
// check, so that the registry accepts exactly what the sender will dial:
// https (or http with allowHTTP), no credentials, and no host that is
// local or private in any notation unless allowPrivate. The webhook channel
// checks the resolved address again at dial time.
func checkURL(raw string, allowHTTP, allowPrivate bool) error {
	bad := func(problem, fix string) error { return &alert.FieldError{Field: "url", Problem: problem, Fix: fix} }
	switch {
	case raw == "":
		return bad("is missing", "give the partner's webhook address, e.g. https://partner.example/hooks/ajil")
	case len(raw) > alert.MaxURLBytes:
		return bad(fmt.Sprintf("is %d bytes, over the limit of %d", len(raw), alert.MaxURLBytes), "use a shorter address")
	}
	if err := webhook.CheckURL(raw, allowHTTP, allowPrivate); err != nil {
		return bad(err.Error(), "e.g. https://partner.example/hooks/ajil")
	}
	return nil
}

func (r *Registry) checkSpec(s EndpointSpec) error {
	var errs []error
	if err := checkURL(s.URL, r.cfg.AllowHTTP, r.cfg.AllowPrivate); err != nil {
		errs = append(errs, err)
	}
	if err := checkDescription(s.Description); err != nil {
		errs = append(errs, err)
	}
	if err := checkFilter(s.Filter); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func checkDescription(d string) error {
	switch {
	case len(d) > MaxDescriptionBytes:
		return &alert.FieldError{Field: "description", Problem: fmt.Sprintf("is %d bytes, over the limit of %d", len(d), MaxDescriptionBytes), Fix: "keep it to a line or two"}
	case !utf8.ValidString(d) || strings.ContainsFunc(d, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return &alert.FieldError{Field: "description", Problem: "is not valid UTF-8 text", Fix: "send UTF-8 text without control characters"}
	}
	return nil
}

func checkFilter(f Filter) error {
	var errs []error
	if len(f.Kinds) > MaxFilterValues {
		errs = append(errs, &alert.FieldError{Field: "kinds", Problem: "lists too many kinds", Fix: "list each kind once"})
	}
	for i, k := range f.Kinds {
		switch {
		case k != alert.KindPublished && k != alert.KindCorrected && k != alert.KindRetracted:
			errs = append(errs, &alert.FieldError{Field: "kinds", Problem: fmt.Sprintf("%q is not a kind", k), Fix: "use published, corrected or retracted, or none for all"})
		case slices.Contains(f.Kinds[:i], k):
			errs = append(errs, &alert.FieldError{Field: "kinds", Problem: fmt.Sprintf("%q is listed twice", k), Fix: "list each kind once"})
		}
	}
	if err := checkTopics("topics", f.Topics, MaxFilterValues); err != nil {
		errs = append(errs, err)
	}
	if len(f.Langs) > MaxFilterValues {
		errs = append(errs, &alert.FieldError{Field: "langs", Problem: fmt.Sprintf("has %d languages, over the limit of %d", len(f.Langs), MaxFilterValues), Fix: "list fewer languages, or none for all"})
	}
	for i, l := range f.Langs {
		switch {
		case !alert.ValidLang(l):
			errs = append(errs, &alert.FieldError{Field: "langs", Problem: fmt.Sprintf("%q is not a language tag", l), Fix: "use BCP 47 tags such as ar or en, or none for all"})
		case slices.Contains(f.Langs[:i], l):
			errs = append(errs, &alert.FieldError{Field: "langs", Problem: fmt.Sprintf("%q is listed twice", l), Fix: "list each language once"})
		}
	}
	return errors.Join(errs...)
}

// CreateEndpoint registers a partner endpoint, enabled, with a new secret.
// It returns ErrConflict if an endpoint already has the URL.
func (r *Registry) CreateEndpoint(ctx context.Context, s EndpointSpec) (Endpoint, error) {
	if err := r.checkSpec(s); err != nil {
		return Endpoint{}, err
	}
	now := r.now()
	e := Endpoint{
		ID: newEndpointID(), URL: s.URL, Description: s.Description, Filter: s.Filter,
		State: EndpointEnabled, Created: time.UnixMilli(now.UnixMilli()).UTC(), Secret: NewSecret(),
	}
	args := []any{e.ID, e.URL,
		"url", e.URL, "desc", e.Description, "state", string(e.State), "created", now.UnixMilli(), "secret", e.Secret}
	args = append(args, filterFields(e.Filter)...)
	keys := []string{r.endpointKey(e.ID), r.endpointsKey(), r.endpointURLsKey(), r.seqKey()}
	owner, err := r.scripts.createEndpoint.Run(ctx, r.rdb, keys, args...).Text()
	switch {
	case err != nil:
		return Endpoint{}, fmt.Errorf("create endpoint: %w", err)
	case owner != "":
		return Endpoint{}, fmt.Errorf("%w: endpoint %s already delivers to %s; change that one instead", ErrConflict, owner, e.URL)
	}
	return e, nil
}

func filterFields(f Filter) []any {
	kinds := make([]string, len(f.Kinds))
	for i, k := range f.Kinds {
		kinds[i] = string(k)
	}
	return []any{"kinds", strings.Join(kinds, ","), "topics", strings.Join(f.Topics, ","), "langs", strings.Join(f.Langs, ",")}
}

// Endpoint returns the endpoint with id, or ErrNotFound.
func (r *Registry) Endpoint(ctx context.Context, id string) (Endpoint, error) {
	if !endpointIDRe.MatchString(id) {
		return Endpoint{}, fmt.Errorf("endpoint %q: %w", id, ErrNotFound)
	}
	m, err := r.rdb.HGetAll(ctx, r.endpointKey(id)).Result()
	if err != nil {
		return Endpoint{}, fmt.Errorf("get endpoint: %w", err)
	}
	if len(m) == 0 {
		return Endpoint{}, fmt.Errorf("endpoint %s: %w", id, ErrNotFound)
	}
	return parseEndpoint(id, m), nil
}

// Endpoints returns every endpoint, oldest first.
func (r *Registry) Endpoints(ctx context.Context) ([]Endpoint, error) {
	ids, err := r.rdb.ZRange(ctx, r.endpointsKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, r.endpointKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	out := make([]Endpoint, 0, len(ids))
	for i, c := range cmds {
		if m := c.Val(); len(m) > 0 { // empty: deleted meanwhile
			out = append(out, parseEndpoint(ids[i], m))
		}
	}
	return out, nil
}

func parseEndpoint(id string, m map[string]string) Endpoint {
	e := Endpoint{
		ID:                  id,
		URL:                 m["url"],
		Description:         m["desc"],
		State:               EndpointState(m["state"]),
		DisabledReason:      m["dis_reason"],
		DisabledAt:          unixMilli(m["dis_at"]),
		Created:             unixMilli(m["created"]),
		Secret:              m["secret"],
		PreviousSecret:      m["prev"],
		PreviousSecretUntil: unixMilli(m["prev_until"]),
		Filter:              Filter{Topics: splitList(m["topics"]), Langs: splitList(m["langs"])},
	}
	for _, k := range splitList(m["kinds"]) {
		e.Filter.Kinds = append(e.Filter.Kinds, alert.Kind(k))
	}
	return e
}

// UpdateEndpoint changes the fields p sets and returns the endpoint. It
// returns ErrNotFound for an unknown id and ErrConflict if another
// endpoint has the new URL.
func (r *Registry) UpdateEndpoint(ctx context.Context, id string, p EndpointPatch) (Endpoint, error) {
	var errs []error
	var newURL string
	var fields []any
	if p.URL != nil {
		if err := checkURL(*p.URL, r.cfg.AllowHTTP, r.cfg.AllowPrivate); err != nil {
			errs = append(errs, err)
		}
		newURL = *p.URL
	}
	if p.Description != nil {
		if err := checkDescription(*p.Description); err != nil {
			errs = append(errs, err)
		}
		fields = append(fields, "desc", *p.Description)
	}
	var f Filter
	if p.Kinds != nil {
		f.Kinds = *p.Kinds
	}
	if p.Topics != nil {
		f.Topics = *p.Topics
	}
	if p.Langs != nil {
		f.Langs = *p.Langs
	}
	if err := checkFilter(f); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Endpoint{}, err
	}
	ff := filterFields(f)
	for i, set := range []bool{p.Kinds != nil, p.Topics != nil, p.Langs != nil} {
		if set {
			fields = append(fields, ff[2*i], ff[2*i+1])
		}
	}
	if err := r.updateEndpoint(ctx, id, newURL, fields...); err != nil {
		return Endpoint{}, err
	}
	return r.Endpoint(ctx, id)
}

func (r *Registry) updateEndpoint(ctx context.Context, id, newURL string, fields ...any) error {
	if !endpointIDRe.MatchString(id) {
		return fmt.Errorf("endpoint %q: %w", id, ErrNotFound)
	}
	args := append([]any{id, newURL}, fields...)
	n, err := r.scripts.updateEndpoint.Run(ctx, r.rdb, []string{r.endpointKey(id), r.endpointURLsKey()}, args...).Int()
	switch {
	case err != nil:
		return fmt.Errorf("update endpoint: %w", err)
	case n == -1:
		return fmt.Errorf("endpoint %s: %w", id, ErrNotFound)
	case n == -2:
		return fmt.Errorf("%w: another endpoint already delivers to %s", ErrConflict, newURL)
	}
	return nil
}

// DeleteEndpoint removes the endpoint with id, or returns ErrNotFound.
func (r *Registry) DeleteEndpoint(ctx context.Context, id string) error {
	if !endpointIDRe.MatchString(id) {
		return fmt.Errorf("endpoint %q: %w", id, ErrNotFound)
	}
	keys := []string{r.endpointKey(id), r.endpointsKey(), r.endpointURLsKey()}
	n, err := r.scripts.deleteEndpoint.Run(ctx, r.rdb, keys, id).Int()
	switch {
	case err != nil:
		return fmt.Errorf("delete endpoint: %w", err)
	case n == 0:
		return fmt.Errorf("endpoint %s: %w", id, ErrNotFound)
	}
	return nil
}

// DisableEndpoint stops deliveries to the endpoint, recording why and when,
// as the webhook channel does for an endpoint that keeps failing.
func (r *Registry) DisableEndpoint(ctx context.Context, id, reason string) (Endpoint, error) {
	if err := r.updateEndpoint(ctx, id, "", "state", string(EndpointDisabled), "dis_reason", reason, "dis_at", r.now().UnixMilli()); err != nil {
		return Endpoint{}, err
	}
	return r.Endpoint(ctx, id)
}

// EnableEndpoint resumes deliveries to the endpoint.
func (r *Registry) EnableEndpoint(ctx context.Context, id string) (Endpoint, error) {
	if err := r.updateEndpoint(ctx, id, "", "state", string(EndpointEnabled), "dis_reason", "", "dis_at", 0); err != nil {
		return Endpoint{}, err
	}
	return r.Endpoint(ctx, id)
}

// RotateSecret gives the endpoint a new secret and keeps the previous one
// signing for Config.SecretGrace, replacing any earlier previous secret.
// The returned endpoint holds the new secret.
func (r *Registry) RotateSecret(ctx context.Context, id string) (Endpoint, error) {
	if !endpointIDRe.MatchString(id) {
		return Endpoint{}, fmt.Errorf("endpoint %q: %w", id, ErrNotFound)
	}
	until := r.now().Add(r.cfg.SecretGrace)
	n, err := r.scripts.rotateSecret.Run(ctx, r.rdb, []string{r.endpointKey(id)}, NewSecret(), until.UnixMilli()).Int()
	switch {
	case err != nil:
		return Endpoint{}, fmt.Errorf("rotate endpoint secret: %w", err)
	case n == 0:
		return Endpoint{}, fmt.Errorf("endpoint %s: %w", id, ErrNotFound)
	}
	return r.Endpoint(ctx, id)
}
