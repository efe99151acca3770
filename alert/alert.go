// Package alert is Ajil's vocabulary: the Alert an editor publishes, its
// kinds and priorities, validation, Arabic-aware normalization and
// fingerprinting, display limits and the wire encoding. It does no I/O.
package alert

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Kind says what an alert does to the story it is about.
type Kind string

const (
	KindPublished Kind = "published"
	KindCorrected Kind = "corrected"
	KindRetracted Kind = "retracted"
)

// Priority is the delivery lane of an alert.
type Priority string

const (
	PriorityBreaking Priority = "breaking"
	PriorityNormal   Priority = "normal"
)

const (
	// DefaultLang is Arabic: Ajil is first an Arabic newsroom's tool.
	DefaultLang = "ar"
	// DefaultTopic is the topic every reader of breaking news follows.
	DefaultTopic = "breaking"
	// DefaultTTL is how long a breaking alert stays worth delivering; news an
	// hour old is no longer breaking.
	DefaultTTL = time.Hour
	// DefaultNormalTTL is longer: a normal alert is still useful later in the day.
	DefaultNormalTTL = 24 * time.Hour
	// MinTTL keeps a push from expiring before FCM can deliver it.
	MinTTL = time.Minute
	// MaxTTL is FCM's own limit for a message's time to live.
	MaxTTL = 28 * 24 * time.Hour

	// MaxHeadlineGraphemes is what a lock screen can show in a few lines; a
	// longer headline is an article, not an alert.
	MaxHeadlineGraphemes = 200
	// MaxHeadlineBytes bounds what 200 characters can weigh (fully vowelled
	// Arabic is about 6 bytes a character); stacked combining marks would
	// otherwise make a "short" headline huge.
	MaxHeadlineBytes = 2048
	// MaxBodyBytes bounds the body kept on the alert; push bodies are cut
	// further to fit the FCM payload.
	MaxBodyBytes = 8 << 10
	// MaxURLBytes is well under what browsers and FCM data values accept.
	MaxURLBytes = 2048
	// MaxTopics bounds the audience resolution work of one alert.
	MaxTopics = 16
	// MaxEditorBytes bounds a free-text name.
	MaxEditorBytes = 128
	// MaxIDBytes keeps an ID usable as a NATS message ID and a Redis key part.
	MaxIDBytes = 64
)

// Alert is one breaking-news event as the editor published it.
type Alert struct {
	ID        string        // time-sortable (UUIDv7) unless the editor chose an idempotency key
	Kind      Kind          // published, corrected or retracted
	Ref       string        // the original alert's ID, for corrections and retractions
	Headline  string        // shown as the push body
	Body      string        // first paragraph, for webhooks and the app
	URL       string        // the article
	Lang      string        // BCP 47 language tag, default "ar"
	Topics    []string      // audience topics, default ["breaking"]
	Priority  Priority      // delivery lane
	TTL       time.Duration // after CreatedAt+TTL the alert is not delivered
	Editor    string        // who published it
	CreatedAt time.Time     // when the editor published it
	Force     bool          // skip the content duplicate check
}

// NewID returns a fresh, time-sortable alert ID.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// WithDefaults returns a copy of a with every unset field given its default,
// stamped at now.
func (a Alert) WithDefaults(now time.Time) Alert {
	if a.ID == "" {
		a.ID = NewID()
	}
	if a.Kind == "" {
		a.Kind = KindPublished
	}
	if a.Lang == "" {
		a.Lang = DefaultLang
	}
	if len(a.Topics) == 0 {
		a.Topics = []string{DefaultTopic}
	}
	if a.Priority == "" {
		a.Priority = PriorityBreaking
	}
	if a.TTL == 0 {
		a.TTL = DefaultTTL
		if a.Priority == PriorityNormal {
			a.TTL = DefaultNormalTTL
		}
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	a.CreatedAt = a.CreatedAt.UTC()
	return a
}

// ExpiresAt is when the alert stops being worth delivering.
func (a Alert) ExpiresAt() time.Time { return a.CreatedAt.Add(a.TTL) }

// Expired reports whether the alert's TTL has passed at now.
func (a Alert) Expired(now time.Time) bool { return !now.Before(a.ExpiresAt()) }

// Subject is the JetStream subject of the alert's priority lane.
func (a Alert) Subject() string { return SubjectPrefix + string(a.Priority) }

// SubjectPrefix is the stem of every alert subject.
const SubjectPrefix = "ajil.alerts."

// Dir is the text direction of the alert's language, for clients that lay
// out the notification themselves.
func (a Alert) Dir() string { return Dir(a.Lang) }

// Dir returns "rtl" for right-to-left languages and "ltr" otherwise.
func Dir(lang string) string {
	base, _, _ := strings.Cut(strings.ToLower(lang), "-")
	switch base {
	case "ar", "fa", "he", "ur", "ps", "ku", "ckb", "sd", "ug", "yi", "dv":
		return "rtl"
	}
	return "ltr"
}

// FieldError is a validation failure that names the field and says how to
// fix it. Validate joins several with errors.Join.
type FieldError struct {
	Field   string // the field as editors and API clients name it, e.g. "headline"
	Problem string // what is wrong
	Fix     string // what to do about it
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s; %s", e.Field, e.Problem, e.Fix)
}

// ErrInvalid is matched by every validation error.
var ErrInvalid = errors.New("invalid alert")

func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// FieldErrors returns every FieldError inside err, in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		walk(errors.Unwrap(e))
	}
	walk(err)
	return out
}

var (
	topicRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	idRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	langRe  = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
)

// ValidTopic reports whether s is a usable topic name; FCM topic names and
// NATS subject tokens both accept it.
func ValidTopic(s string) bool { return topicRe.MatchString(s) }

// ValidLang reports whether s has the shape of a BCP 47 language tag.
func ValidLang(s string) bool { return langRe.MatchString(s) }

// Validate checks an alert after WithDefaults and returns every problem
// found, each a *FieldError.
func (a Alert) Validate() error {
	var errs []error
	bad := func(field, problem, fix string) {
		errs = append(errs, &FieldError{Field: field, Problem: problem, Fix: fix})
	}

	if a.ID == "" || len(a.ID) > MaxIDBytes || !idRe.MatchString(a.ID) {
		bad("id", fmt.Sprintf("%q is not a usable ID", a.ID),
			fmt.Sprintf("use up to %d letters, digits, '.', '_', ':' or '-', or leave it empty for a generated one", MaxIDBytes))
	}
	switch a.Kind {
	case KindPublished:
		if a.Ref != "" {
			bad("ref", "a new alert cannot reference another", "use `ajil correct` or `ajil retract` to change an existing alert")
		}
	case KindCorrected, KindRetracted:
		if a.Ref == "" {
			bad("ref", fmt.Sprintf("a %s alert must name the alert it changes", a.Kind), "pass the original alert's ID")
		} else if a.Ref == a.ID {
			bad("ref", "an alert cannot reference itself", "pass the original alert's ID")
		}
	default:
		bad("kind", fmt.Sprintf("%q is not a kind", a.Kind), "use published, corrected or retracted")
	}

	headline := strings.TrimSpace(a.Headline)
	switch {
	case headline == "" && a.Kind != KindRetracted:
		bad("headline", "is empty", "write the headline readers will see, e.g. --headline \"...\"")
	case !isText(a.Headline):
		bad("headline", "is not valid UTF-8 text", "send the headline as UTF-8 without control characters")
	case len(a.Headline) > MaxHeadlineBytes:
		bad("headline", fmt.Sprintf("is %d bytes, over the limit of %d", len(a.Headline), MaxHeadlineBytes),
			"shorten it; put the detail in --body")
	case GraphemeCount(headline) > MaxHeadlineGraphemes:
		bad("headline", fmt.Sprintf("has %d characters, over the limit of %d", GraphemeCount(headline), MaxHeadlineGraphemes),
			"shorten it; put the detail in --body")
	}
	if !isText(a.Body) {
		bad("body", "is not valid UTF-8 text", "send the body as UTF-8 without control characters")
	} else if len(a.Body) > MaxBodyBytes {
		bad("body", fmt.Sprintf("is %d bytes, over the limit of %d", len(a.Body), MaxBodyBytes), "keep the first paragraph only")
	}
	if a.URL != "" {
		u, err := url.Parse(a.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("url", fmt.Sprintf("%q is not an http(s) URL", a.URL), "give the article's full address, e.g. https://example.com/news/1")
		case len(a.URL) > MaxURLBytes:
			bad("url", fmt.Sprintf("is %d bytes, over the limit of %d", len(a.URL), MaxURLBytes), "use the article's canonical URL")
		}
	}
	if !ValidLang(a.Lang) {
		bad("lang", fmt.Sprintf("%q is not a language tag", a.Lang), "use a BCP 47 tag such as ar, en or fr-CA")
	}
	if len(a.Topics) > MaxTopics {
		bad("topics", fmt.Sprintf("has %d topics, over the limit of %d", len(a.Topics), MaxTopics), "send to fewer, broader topics")
	}
	seen := make(map[string]bool, len(a.Topics))
	for _, t := range a.Topics {
		if !ValidTopic(t) {
			bad("topics", fmt.Sprintf("%q is not a topic name", t), "use lower-case letters, digits, '-' and '_', e.g. breaking or sports")
		} else if seen[t] {
			bad("topics", fmt.Sprintf("%q is listed twice", t), "list each topic once")
		}
		seen[t] = true
	}
	if a.Priority != PriorityBreaking && a.Priority != PriorityNormal {
		bad("priority", fmt.Sprintf("%q is not a priority", a.Priority), "use breaking or normal")
	}
	if a.TTL < MinTTL || a.TTL > MaxTTL {
		bad("ttl", fmt.Sprintf("%s is outside 1m to 672h (28 days)", a.TTL), "use a duration such as 30m, 1h or 24h")
	}
	if !isText(a.Editor) || len(a.Editor) > MaxEditorBytes {
		bad("editor", "is not a short UTF-8 name", fmt.Sprintf("use up to %d bytes of text", MaxEditorBytes))
	}
	if a.CreatedAt.IsZero() {
		bad("created_at", "is not set", "leave it to the publisher, which stamps the current time")
	}
	return errors.Join(errs...)
}
