package subscribers

import (
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultPrefix starts every key of the registry. The braces are a
	// Redis Cluster hash tag: all the registry's keys share one slot, so a
	// Lua script can move a device between audience indexes atomically
	// there too. Ten million devices fit one Redis node comfortably.
	DefaultPrefix = "ajil:{subscribers}:"
	// DefaultDeviceTTL is how long a device may go unseen before it is
	// expired: FCM itself treats a token inactive for 270 days as expired,
	// so pushing to it after that only earns errors.
	DefaultDeviceTTL = 270 * 24 * time.Hour
	// DefaultSecretGrace is how long a rotated-out endpoint secret still
	// signs deliveries: a day lets a partner deploy the new secret without
	// dropping a single webhook.
	DefaultSecretGrace = 24 * time.Hour
)

// Config configures a Registry. The zero value is usable.
type Config struct {
	// Prefix starts every key; DefaultPrefix if empty. Keep a hash tag in
	// it when running on Redis Cluster.
	Prefix string
	// DeviceTTL is how long a device may go unseen before Expire removes
	// it; DefaultDeviceTTL if zero.
	DeviceTTL time.Duration
	// SecretGrace is how long the previous secret of a rotated endpoint
	// stays valid; DefaultSecretGrace if zero.
	SecretGrace time.Duration
	// AllowHTTP accepts http:// endpoint URLs, for development.
	AllowHTTP bool
	// AllowPrivate accepts endpoint URLs on localhost, loopback and
	// private addresses, for development; link-local ones, the cloud
	// metadata service among them, stay refused (as in the webhook channel).
	AllowPrivate bool
	// Now is the clock; time.Now if nil. Tests set it.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.DeviceTTL <= 0 {
		c.DeviceTTL = DefaultDeviceTTL
	}
	if c.SecretGrace <= 0 {
		c.SecretGrace = DefaultSecretGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Registry is the subscriber registry: devices with their audience
// indexes, and partner webhook endpoints. It is safe for concurrent use.
type Registry struct {
	rdb     redis.UniversalClient
	cfg     Config
	scripts scripts
}

// New returns a registry over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Registry {
	return &Registry{rdb: rdb, cfg: cfg.withDefaults(), scripts: newScripts()}
}

func (r *Registry) now() time.Time { return r.cfg.Now().UTC() }

// Key layout, all under the prefix:
//
//	d:TOKEN            hash: one device (short field names: millions of these)
//	a:LANG:TOPIC       sorted set: audience index, token scored by join sequence
//	seq                counter: the join sequence
//	seen               sorted set: token scored by last-seen unix milliseconds
//	e:ID               hash: one endpoint
//	endpoints          sorted set: endpoint IDs scored by creation sequence
//	endpoint-urls      hash: URL -> endpoint ID, for one endpoint per URL
func (r *Registry) deviceKey(token string) string { return r.cfg.Prefix + "d:" + token }
func (r *Registry) audienceKey(topic, lang string) string {
	return r.cfg.Prefix + "a:" + lang + ":" + topic
}
func (r *Registry) seqKey() string               { return r.cfg.Prefix + "seq" }
func (r *Registry) seenKey() string              { return r.cfg.Prefix + "seen" }
func (r *Registry) endpointKey(id string) string { return r.cfg.Prefix + "e:" + id }
func (r *Registry) endpointsKey() string         { return r.cfg.Prefix + "endpoints" }
func (r *Registry) endpointURLsKey() string      { return r.cfg.Prefix + "endpoint-urls" }
