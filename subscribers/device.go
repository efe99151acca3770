package subscribers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/alert"
)

const (
	// MaxTokenBytes bounds a device token; FCM tokens are about 160 bytes,
	// Web Push ones longer, none near this.
	MaxTokenBytes = 4096
	// MaxDeviceTopics bounds the topics of one device: a reader follows a
	// handful of sections, and every topic is an index to update.
	MaxDeviceTopics = 32
	// MaxRegionBytes bounds a region code such as "SA" or "EG-C".
	MaxRegionBytes = 64
	// MaxPage is the largest page Page returns: FCM's SendEach limit, so one
	// page is one FCM batch.
	MaxPage = 500
	// removeChunk bounds the tokens removed by one script call, so a large
	// RemoveTokens or Expire does not block Redis for long.
	removeChunk = 500
)

// Platform is the kind of device a token belongs to.
type Platform string

const (
	PlatformAndroid Platform = "android"
	PlatformIOS     Platform = "ios"
	PlatformWeb     Platform = "web"
)

// Device is one registered device and what its reader follows.
type Device struct {
	Token    string    `json:"token"`
	Platform Platform  `json:"platform"`
	Lang     string    `json:"lang"`   // BCP 47 tag, as registered
	Topics   []string  `json:"topics"` // sorted
	Region   string    `json:"region,omitempty"`
	Created  time.Time `json:"created_at"`
	LastSeen time.Time `json:"last_seen_at"`
}

// Cursor is a position in an audience index, for Page. The zero Cursor is
// the start. It is a plain number so that the dispatcher can checkpoint it.
type Cursor uint64

var (
	tokenRe  = regexp.MustCompile(`^[A-Za-z0-9:_.-]+$`)
	regionRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
)

// ValidToken reports whether s can be a device token: 1 to MaxTokenBytes
// letters, digits, ':', '_', '.' or '-'.
func ValidToken(s string) bool { return len(s) <= MaxTokenBytes && tokenRe.MatchString(s) }

// IndexLang is the language an audience index is keyed by: the primary
// subtag of a BCP 47 tag, lower-cased. Alerts are written per language,
// not per regional variant, so an "ar-EG" device reads "ar" alerts.
func IndexLang(tag string) string {
	base, _, _ := strings.Cut(tag, "-")
	return strings.ToLower(base)
}

func tokenError(token string) error {
	if token == "" {
		return &alert.FieldError{Field: "token", Problem: "is empty", Fix: "pass the FCM registration token the app received"}
	}
	return &alert.FieldError{Field: "token", Problem: fmt.Sprintf("is not a device token (%d bytes)", len(token)),
		Fix: fmt.Sprintf("use the token as FCM gave it: 1 to %d letters, digits, ':', '_', '.' or '-'", MaxTokenBytes)}
}

// normalize applies defaults (lang ar, topic breaking), sorts the topics
// and validates d, returning every problem as an *alert.FieldError.
func (d Device) normalize() (Device, error) {
	var errs []error
	bad := func(field, problem, fix string) {
		errs = append(errs, &alert.FieldError{Field: field, Problem: problem, Fix: fix})
	}
	if !ValidToken(d.Token) {
		errs = append(errs, tokenError(d.Token))
	}
	switch d.Platform {
	case PlatformAndroid, PlatformIOS, PlatformWeb:
	case "":
		bad("platform", "is missing", "use android, ios or web")
	default:
		bad("platform", fmt.Sprintf("%q is not a platform", d.Platform), "use android, ios or web")
	}
	if d.Lang == "" {
		d.Lang = alert.DefaultLang
	}
	if !alert.ValidLang(d.Lang) {
		bad("lang", fmt.Sprintf("%q is not a language tag", d.Lang), "use a BCP 47 tag such as ar, en or fr-CA")
	}
	if len(d.Topics) == 0 {
		d.Topics = []string{alert.DefaultTopic}
	}
	d.Topics = slices.Clone(d.Topics)
	slices.Sort(d.Topics)
	if err := checkTopics("topics", d.Topics, MaxDeviceTopics); err != nil {
		errs = append(errs, err)
	}
	if d.Region != "" && (len(d.Region) > MaxRegionBytes || !regionRe.MatchString(d.Region)) {
		bad("region", fmt.Sprintf("%q is not a region code", d.Region), "use a code such as SA or EG-C, or leave it empty")
	}
	return d, errors.Join(errs...)
}

// checkTopics validates a list of topic names; empty is allowed.
func checkTopics(field string, topics []string, max int) error {
	if len(topics) > max {
		return &alert.FieldError{Field: field, Problem: fmt.Sprintf("has %d topics, over the limit of %d", len(topics), max), Fix: "follow fewer, broader topics"}
	}
	seen := make(map[string]bool, len(topics))
	for _, t := range topics {
		if !alert.ValidTopic(t) {
			return &alert.FieldError{Field: field, Problem: fmt.Sprintf("%q is not a topic name", t), Fix: "use lower-case letters, digits, '-' and '_', e.g. breaking or sports"}
		}
		if seen[t] {
			return &alert.FieldError{Field: field, Problem: fmt.Sprintf("%q is listed twice", t), Fix: "list each topic once"}
		}
		seen[t] = true
	}
	return nil
}

// Upsert registers d or updates its preferences, and marks it seen now.
// It is idempotent. A device whose topics or language change moves between
// audience indexes in one atomic step. Lang defaults to ar and Topics to
// breaking. It returns the stored device and whether it was new.
func (r *Registry) Upsert(ctx context.Context, d Device) (Device, bool, error) {
	d, err := d.normalize()
	if err != nil {
		return Device{}, false, err
	}
	now := r.now()
	keys, args := r.upsertArgs(now, d)
	res, err := r.scripts.upsert.Run(ctx, r.rdb, keys, args...).Int64Slice()
	if err != nil {
		return Device{}, false, fmt.Errorf("upsert device: %w", err)
	}
	d.Created = time.UnixMilli(res[1]).UTC()
	d.LastSeen = time.UnixMilli(now.UnixMilli()).UTC()
	return d, res[0] == 1, nil
}

// upsertArgs are the upsert script's keys and arguments for normalized
// devices.
func (r *Registry) upsertArgs(now time.Time, ds ...Device) ([]string, []any) {
	args := make([]any, 0, 2+6*len(ds))
	args = append(args, r.cfg.Prefix, now.UnixMilli())
	for _, d := range ds {
		args = append(args, d.Token, string(d.Platform), d.Lang, IndexLang(d.Lang), strings.Join(d.Topics, ","), d.Region)
	}
	return []string{r.seenKey(), r.seqKey()}, args
}

// Device returns the device registered under token.
func (r *Registry) Device(ctx context.Context, token string) (Device, error) {
	if !ValidToken(token) {
		return Device{}, ErrNotFound
	}
	m, err := r.rdb.HGetAll(ctx, r.deviceKey(token)).Result()
	if err != nil {
		return Device{}, fmt.Errorf("get device: %w", err)
	}
	if len(m) == 0 {
		return Device{}, ErrNotFound
	}
	return Device{
		Token:    token,
		Platform: Platform(m["p"]),
		Lang:     m["l"],
		Topics:   splitList(m["t"]),
		Region:   m["r"],
		Created:  unixMilli(m["c"]),
		LastSeen: unixMilli(m["s"]),
	}, nil
}

// Remove unregisters the device with token, or returns ErrNotFound.
func (r *Registry) Remove(ctx context.Context, token string) error {
	if !ValidToken(token) {
		return ErrNotFound
	}
	n, err := r.remove(ctx, "", []string{token})
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// RemoveTokens unregisters every device in tokens, as the dispatcher does
// for tokens FCM reports dead, and returns how many were registered.
func (r *Registry) RemoveTokens(ctx context.Context, tokens []string) (int, error) {
	valid := make([]string, 0, len(tokens))
	for _, t := range tokens {
		if ValidToken(t) {
			valid = append(valid, t)
		}
	}
	removed := 0
	for chunk := range slices.Chunk(valid, removeChunk) {
		n, err := r.remove(ctx, "", chunk)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func (r *Registry) remove(ctx context.Context, cutoff string, tokens []string) (int, error) {
	args := make([]any, 0, 2+len(tokens))
	args = append(args, r.cfg.Prefix, cutoff)
	for _, t := range tokens {
		args = append(args, t)
	}
	n, err := r.scripts.remove.Run(ctx, r.rdb, []string{r.seenKey()}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("remove devices: %w", err)
	}
	return n, nil
}

// Rotate moves the device registered as oldToken to newToken, keeping its
// preferences and its place in every audience index, as when FCM refreshes
// an app's token. It returns ErrNotFound if oldToken is unknown and
// ErrConflict if newToken is already registered.
func (r *Registry) Rotate(ctx context.Context, oldToken, newToken string) error {
	if !ValidToken(newToken) {
		return tokenError(newToken)
	}
	if !ValidToken(oldToken) {
		return ErrNotFound
	}
	keys := []string{r.deviceKey(oldToken), r.deviceKey(newToken), r.seenKey(), r.seqKey()}
	n, err := r.scripts.rotate.Run(ctx, r.rdb, keys, r.cfg.Prefix, oldToken, newToken, r.now().UnixMilli()).Int()
	switch {
	case err != nil:
		return fmt.Errorf("rotate device token: %w", err)
	case n == -1:
		return fmt.Errorf("device %s: %w", oldToken, ErrNotFound)
	case n == -2:
		return fmt.Errorf("%w: device %s is already registered", ErrConflict, newToken)
	}
	return nil
}

// Count returns how many devices follow topic in lang's index language.
// It is one ZCARD.
func (r *Registry) Count(ctx context.Context, topic, lang string) (int64, error) {
	if err := checkAudience(topic, lang); err != nil {
		return 0, err
	}
	n, err := r.rdb.ZCard(ctx, r.audienceKey(topic, IndexLang(lang))).Result()
	if err != nil {
		return 0, fmt.Errorf("count audience: %w", err)
	}
	return n, nil
}

func checkAudience(topic, lang string) error {
	var errs []error
	if topic == "" {
		errs = append(errs, &alert.FieldError{Field: "topic", Problem: "is missing", Fix: "name the topic, e.g. topic=breaking"})
	} else if !alert.ValidTopic(topic) {
		errs = append(errs, &alert.FieldError{Field: "topic", Problem: fmt.Sprintf("%q is not a topic name", topic), Fix: "use lower-case letters, digits, '-' and '_', e.g. breaking"})
	}
	if !alert.ValidLang(lang) {
		errs = append(errs, &alert.FieldError{Field: "lang", Problem: fmt.Sprintf("%q is not a language tag", lang), Fix: "use a BCP 47 tag such as ar or en"})
	}
	return errors.Join(errs...)
}

// Page returns up to limit tokens (at most MaxPage; limit <= 0 means
// MaxPage) of the devices following topic in lang's index language, after
// cursor, and the cursor to pass for the next page. An empty page means
// the walk has reached the end.
//
// Each device gets a unique, increasing position when it joins an index,
// so a walk from the zero Cursor returns every member in join order,
// never repeats a token, and reaches devices that join while it runs. A
// device that leaves and rejoins the index during a walk gets a new
// position at the end and may be returned again. Memory is one page.
func (r *Registry) Page(ctx context.Context, topic, lang string, after Cursor, limit int) ([]string, Cursor, error) {
	if err := checkAudience(topic, lang); err != nil {
		return nil, after, err
	}
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	zs, err := r.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key:     r.audienceKey(topic, IndexLang(lang)),
		Start:   "(" + strconv.FormatUint(uint64(after), 10),
		Stop:    "+inf",
		ByScore: true,
		Count:   int64(limit),
	}).Result()
	if err != nil {
		return nil, after, fmt.Errorf("page audience: %w", err)
	}
	if len(zs) == 0 {
		return nil, after, nil
	}
	tokens := make([]string, len(zs))
	for i, z := range zs {
		tokens[i] = z.Member.(string)
	}
	return tokens, Cursor(zs[len(zs)-1].Score), nil
}

// Expire removes the devices not seen for Config.DeviceTTL before now and
// returns how many it removed.
func (r *Registry) Expire(ctx context.Context, now time.Time) (int, error) {
	cutoff := strconv.FormatInt(now.Add(-r.cfg.DeviceTTL).UnixMilli(), 10)
	removed := 0
	for {
		tokens, err := r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: r.seenKey(), Start: "-inf", Stop: cutoff, ByScore: true, Count: removeChunk,
		}).Result()
		if err != nil {
			return removed, fmt.Errorf("expire devices: %w", err)
		}
		if len(tokens) == 0 {
			return removed, nil
		}
		n, err := r.remove(ctx, cutoff, tokens)
		removed += n
		if err != nil {
			return removed, err
		}
	}
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func unixMilli(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
