// Package webhook delivers alerts to partner sites as Standard Webhooks
// (https://www.standardwebhooks.com): the JSON payload, the signature, an
// HTTP sender that refuses internal addresses at dial time and isolates slow
// partners from each other, the retry schedule, and a per-endpoint delivery
// log in Redis. The dispatcher drives it from its work queue.
package webhook

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

const (
	// DefaultConnectTimeout bounds the TCP and TLS handshakes: a partner that
	// cannot complete them in 5 s is down or overloaded, and waiting longer
	// only holds one of its slots.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultTimeout bounds a whole attempt, response included. Receivers are
	// expected to answer at once and do slow work later; 15 s still leaves
	// room for a cold start behind a slow handshake.
	DefaultTimeout = 15 * time.Second
	// DefaultMaxInFlight is how many requests one endpoint may have open:
	// enough to keep up with a burst of alerts, few enough that a hanging
	// partner ties up only 4 connections and goroutines.
	DefaultMaxInFlight = 4
	// DefaultDisableAfter is how long an endpoint may fail every attempt
	// before it is disabled: a day outlasts a deploy or a night's
	// maintenance, and a partner down longer has gone away.
	DefaultDisableAfter = 24 * time.Hour
	// DefaultVersion stands in the User-Agent when Config.Version is empty.
	DefaultVersion = "dev"

	// MaxResponseBytes is as much of a response as is read: a receiver
	// answers with its status, and the start of the body only goes into the
	// delivery log. Headers are bounded by the same amount.
	MaxResponseBytes = 64 << 10
)

// Config configures a Sender. The zero value is the production setup:
// https only, public addresses only, the Default* limits.
type Config struct {
	// Version of Ajil, sent in the User-Agent so partners can tell releases
	// apart in their logs.
	Version string
	// AllowHTTP accepts http:// endpoints. Off by default: over plain HTTP
	// anyone on the path reads the alert and the signature.
	AllowHTTP bool
	// AllowPrivate opens loopback and private ranges (RFC 1918, IPv6 ULA)
	// for development and tests (--allow-private-webhooks). Link-local
	// addresses, the cloud metadata endpoint among them, stay closed.
	AllowPrivate bool
	// ConnectTimeout bounds dialing and the TLS handshake; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Timeout bounds one attempt from dial to the end of the response; 0
	// means DefaultTimeout.
	Timeout time.Duration
	// MaxInFlight caps the requests open to one endpoint; 0 means
	// DefaultMaxInFlight.
	MaxInFlight int
	// Schedule is the retry schedule; nil means DefaultSchedule.
	Schedule Schedule
	// DisableAfter is how long an endpoint may fail continuously before the
	// caller disables it; 0 means DefaultDisableAfter.
	DisableAfter time.Duration
	// Resolver resolves endpoint names at dial time; nil means
	// net.DefaultResolver. Whatever it answers, the dialer still checks.
	Resolver *net.Resolver
	// RootCAs verifies endpoints' certificates; nil means the system's.
	RootCAs *x509.CertPool
}

func (c Config) withDefaults() Config {
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule()
	}
	if c.DisableAfter <= 0 {
		c.DisableAfter = DefaultDisableAfter
	}
	return c
}

// Errors callers branch on with errors.Is.
var (
	// ErrForbiddenAddress is a destination a partner endpoint must not reach:
	// loopback, private, link-local, shared, multicast, reserved, or an IPv6
	// form that embeds an IPv4 address.
	ErrForbiddenAddress = errors.New("forbidden webhook address")
	// ErrInvalidURL is an endpoint URL that cannot be used at all.
	ErrInvalidURL = errors.New("invalid webhook url")
	// ErrInvalidSecret is a signing secret that is not a Standard Webhooks
	// secret ("whsec_" and 24 to 64 bytes in base64).
	ErrInvalidSecret = errors.New("invalid webhook secret")
)

// Outcome is what the caller does with a delivery after an attempt.
type Outcome int

const (
	// Delivered: the endpoint answered 2xx.
	Delivered Outcome = iota + 1
	// Retry: a transient failure (timeout, connection error, 408, 429, 5xx);
	// try again after Backoff.
	Retry
	// Gone: the endpoint answered 410 and asks never to be called again; the
	// caller disables it.
	Gone
	// Permanent: the delivery cannot succeed by retrying (another 4xx, a
	// redirect, an unusable URL or secret); the caller dead-letters it.
	Permanent
	// Forbidden: the address is one Ajil never calls; permanent, and the
	// endpoint should be disabled.
	Forbidden
)

func (o Outcome) String() string {
	if name, ok := o.name(); ok {
		return name
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

func (o Outcome) name() (string, bool) {
	switch o {
	case Delivered:
		return "delivered", true
	case Retry:
		return "retry", true
	case Gone:
		return "gone", true
	case Permanent:
		return "permanent", true
	case Forbidden:
		return "forbidden", true
	}
	return "", false
}

// MarshalText writes the outcome's name, as the delivery log stores it.
func (o Outcome) MarshalText() ([]byte, error) {
	name, ok := o.name()
	if !ok {
		return nil, fmt.Errorf("webhook: unknown outcome %d", int(o))
	}
	return []byte(name), nil
}

// UnmarshalText reads an outcome's name.
func (o *Outcome) UnmarshalText(b []byte) error {
	for c := Delivered; c <= Forbidden; c++ {
		if name, _ := c.name(); name == string(b) {
			*o = c
			return nil
		}
	}
	return fmt.Errorf("webhook: unknown outcome %q", b)
}
