package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

const (
	// WireVersion is the version of the JSON encoding written by Encode.
	WireVersion = 1
	// MaxWireBytes bounds an encoded alert: the field limits add up to well
	// under it, so anything larger is not an alert.
	MaxWireBytes = 64 << 10
)

// Errors returned by Decode; callers branch on them with errors.Is.
var (
	ErrTooLarge       = errors.New("encoded alert too large")
	ErrUnknownVersion = errors.New("unknown alert wire version")
	ErrMalformed      = errors.New("malformed alert")
)

// wire is the stable JSON form of an Alert. Field names never change within
// a version; a new field that older readers must understand is a new version.
type wire struct {
	V         int       `json:"v"`
	ID        string    `json:"id"`
	Kind      Kind      `json:"kind"`
	Ref       string    `json:"ref,omitempty"`
	Headline  string    `json:"headline"`
	Body      string    `json:"body,omitempty"`
	URL       string    `json:"url,omitempty"`
	Lang      string    `json:"lang"`
	Topics    []string  `json:"topics"`
	Priority  Priority  `json:"priority"`
	TTL       int64     `json:"ttl_ms"`
	Editor    string    `json:"editor,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Force     bool      `json:"force,omitempty"`
}

// Encode returns the wire form of a.
func Encode(a Alert) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Arabic and '&' in URLs stay as they are: smaller, and byte-exact.
	enc.SetEscapeHTML(false)
	err := enc.Encode(wire{
		V: WireVersion, ID: a.ID, Kind: a.Kind, Ref: a.Ref, Headline: a.Headline, Body: a.Body,
		URL: a.URL, Lang: a.Lang, Topics: a.Topics, Priority: a.Priority, TTL: a.TTL.Milliseconds(),
		Editor: a.Editor, CreatedAt: a.CreatedAt.UTC(), Force: a.Force,
	})
	if err != nil {
		return nil, fmt.Errorf("encode alert: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > MaxWireBytes {
		return nil, fmt.Errorf("encode alert: %d bytes: %w", len(b), ErrTooLarge)
	}
	return b, nil
}

// Decode parses and validates the wire form of an alert. It rejects input
// over MaxWireBytes, unknown versions, unknown fields and invalid alerts.
func Decode(b []byte) (Alert, error) {
	if len(b) > MaxWireBytes {
		return Alert{}, fmt.Errorf("decode alert: %d bytes, limit %d: %w", len(b), MaxWireBytes, ErrTooLarge)
	}
	if !utf8.Valid(b) {
		// encoding/json would silently turn invalid bytes into U+FFFD.
		return Alert{}, fmt.Errorf("decode alert: %w: invalid UTF-8", ErrMalformed)
	}
	var head struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return Alert{}, fmt.Errorf("decode alert: %w: %v", ErrMalformed, err)
	}
	if head.V != WireVersion {
		return Alert{}, fmt.Errorf("decode alert: version %d, want %d: %w", head.V, WireVersion, ErrUnknownVersion)
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Alert{}, fmt.Errorf("decode alert: %w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Alert{}, fmt.Errorf("decode alert: %w: trailing data", ErrMalformed)
	}
	if w.TTL < 0 || w.TTL > MaxTTL.Milliseconds() {
		// Checked before the conversion, which would overflow into range.
		return Alert{}, fmt.Errorf("decode alert: %w: %w", ErrMalformed, &FieldError{Field: "ttl",
			Problem: fmt.Sprintf("ttl_ms %d is outside 1m to 672h (28 days)", w.TTL), Fix: "send ttl_ms in milliseconds, e.g. 3600000"})
	}
	a := Alert{
		ID: w.ID, Kind: w.Kind, Ref: w.Ref, Headline: w.Headline, Body: w.Body, URL: w.URL,
		Lang: w.Lang, Topics: w.Topics, Priority: w.Priority, TTL: time.Duration(w.TTL) * time.Millisecond,
		Editor: w.Editor, CreatedAt: w.CreatedAt.UTC(), Force: w.Force,
	}
	if err := a.Validate(); err != nil {
		return Alert{}, fmt.Errorf("decode alert: %w: %w", ErrMalformed, err)
	}
	return a, nil
}
