package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/peterbourgon/ff/v3"
	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/subscribers"
)

const (
	// defaultServeListen listens on every interface: in production the
	// API sits behind a Service or load balancer.
	defaultServeListen = ":8080"
	// defaultRedisURL is a local Redis, for a first try of serve.
	defaultRedisURL = "redis://127.0.0.1:6379"
)

func runServe(ctx context.Context, args []string) error {
	fs := flagSet("serve", "serve [flags]", `  ajil serve --roles api,dispatcher \
      --nats-url nats://nats-0:4222,nats://nats-1:4222,nats://nats-2:4222 \
      --redis-url rediss://:PASSWORD@redis:6379/0 \
      --api-keys-file /etc/ajil/api-keys --fcm-credentials /etc/ajil/fcm.json
  ajil serve --config /etc/ajil/ajil.conf   # one "flag value" per line`)
	var (
		_            = fs.String("config", "", "read flags from this `file`: one \"name value\" per line")
		roles        = fs.String("roles", "api,dispatcher", "what this process runs: api, dispatcher, or both")
		listen       = fs.String("listen", defaultServeListen, "`host:port` of the HTTP API, /metrics, /healthz and /readyz")
		natsURL      = fs.String("nats-url", defaultNATSURL, "NATS server `URL`s, comma separated")
		natsCreds    = fs.String("nats-creds", "", "NATS credentials `file` (JWT and NKey seed)")
		natsNKey     = fs.String("nats-nkey", "", "NATS NKey seed `file`")
		natsCA       = fs.String("nats-tls-ca", "", "CA `file` to verify the NATS servers")
		natsCert     = fs.String("nats-tls-cert", "", "client certificate `file` for NATS mutual TLS")
		natsKey      = fs.String("nats-tls-key", "", "client key `file` for NATS mutual TLS")
		redisURL     = fs.String("redis-url", defaultRedisURL, "Redis `URL`: redis:// or rediss:// (TLS)")
		redisAddrs   = fs.String("redis-addrs", "", "Redis Cluster or Sentinel `addresses`, comma separated (instead of --redis-url)")
		redisMaster  = fs.String("redis-master", "", "Sentinel master `name` (with --redis-addrs)")
		redisPass    = fs.String("redis-password", "", "Redis `password` (with --redis-addrs)")
		apiKeys      = fs.String("api-keys", "", "API keys as `role:key,...` (roles: app, partner-admin, editor, admin)")
		apiKeysFile  = fs.String("api-keys-file", "", "API keys `file`: one role:key a line")
		replicas     = fs.Int("stream-replicas", 0, "JetStream stream replicas: 1, or 3 on a 3+ node cluster (default: 3 when the cluster has 3 or more servers, else 1)")
		shutdown     = fs.Duration("shutdown-timeout", defaultShutdownTimeout, "how long in-flight work may finish after SIGTERM")
		logFormat    = fs.String("log-format", "json", "json or text")
		dupWindow    = fs.Duration("duplicate-window", dispatcher.DefaultDuplicateWindow, "suppress a second alert with the same story within this `duration`")
		allowPrivate = fs.Bool("allow-private-webhooks", false, "let webhooks reach loopback and private addresses (development only)")
		allowHTTP    = fs.Bool("allow-http-webhooks", false, "accept http:// webhook endpoints (development only)")
		hookTimeout  = fs.Duration("webhook-timeout", webhook.DefaultTimeout, "deadline of one webhook attempt")
		hookConnect  = fs.Duration("webhook-connect-timeout", webhook.DefaultConnectTimeout, "deadline to connect to a partner")
		hookDisable  = fs.Duration("webhook-disable-after", webhook.DefaultDisableAfter, "disable an endpoint failing continuously this long")
		regPrefix    = fs.String("registry-prefix", subscribers.DefaultPrefix, "`prefix` of the registry's Redis keys, to keep two registries apart in one Redis; keep its {hash tag} on Redis Cluster")
	)
	var fc fcmFlags
	fc.register(fs)
	err := ff.Parse(fs, args, ff.WithEnvVarPrefix(envPrefix), ff.WithConfigFileFlag("config"), ff.WithConfigFileParser(ff.PlainParser))
	switch {
	case errors.Is(err, flag.ErrHelp):
		return err
	case err != nil:
		return &exitError{exitInvalid, err}
	}

	log, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	api, dispatch, err := parseRoles(*roles)
	if err != nil {
		return err
	}
	if *replicas != 0 && *replicas != 1 && *replicas != 3 && *replicas != 5 {
		return invalidf("--stream-replicas: %d; use 1, 3 or 5 (JetStream needs an odd count)", *replicas)
	}
	var keys *subscribers.Keys
	switch {
	case *apiKeysFile != "":
		if keys, err = subscribers.LoadKeys(*apiKeysFile); err != nil {
			return invalidf("--api-keys-file: %v", err)
		}
	case *apiKeys != "":
		if keys, err = subscribers.ParseKeys(*apiKeys); err != nil {
			return invalidf("--api-keys: %v", err)
		}
	case api:
		return invalidf("--api-keys or --api-keys-file: the api role needs at least one key; generate one with `openssl rand -base64 32` and pass admin:KEY")
	}
	fcmCfg, err := fc.config()
	if err != nil {
		return err
	}
	if dispatch && !fcmCfg.LogOnly && fcmCfg.CredentialsFile == "" && os.Getenv("GOOGLE_APPLICATION_CREDENTIALS") == "" {
		log.Warn("no --fcm-credentials and no GOOGLE_APPLICATION_CREDENTIALS: using Google application default credentials")
	}

	rdb, err := redisClient(*redisURL, *redisAddrs, *redisMaster, *redisPass)
	if err != nil {
		return err
	}
	defer rdb.Close()
	natsOpts, err := natsOptions(*natsCreds, *natsNKey, *natsCA, *natsCert, *natsKey)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, append(natsOpts, nats.Name("ajil serve"), nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)...)
	if err != nil {
		return &exitError{exitUnreachable, fmt.Errorf("--nats-url: cannot reach NATS at %s: %w", *natsURL, err)}
	}
	defer nc.Close()
	if *replicas == 0 {
		*replicas = streamReplicas(nc)
	}

	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return &exitError{exitUnreachable, fmt.Errorf("--redis-url: cannot reach Redis: %w", err)}
	}

	log.Info("starting", "version", version, "roles", *roles, "stream_replicas", *replicas, "fcm", describeFCM(fcmCfg))
	return runNode(ctx, nodeConfig{
		api: api, dispatch: dispatch, listen: *listen, keys: keys,
		registry:     subscribers.Config{Prefix: *regPrefix, AllowHTTP: *allowHTTP, AllowPrivate: *allowPrivate},
		dispatcher:   dispatcher.Config{FCMMode: fc.mode(), DuplicateWindow: *dupWindow},
		fcm:          fcmCfg,
		fcmPerMinute: fc.perMinute,
		webhook: webhook.Config{Version: version, AllowHTTP: *allowHTTP, AllowPrivate: *allowPrivate,
			Timeout: *hookTimeout, ConnectTimeout: *hookConnect, DisableAfter: *hookDisable},
		streamReplicas:  *replicas,
		shutdownTimeout: *shutdown,
	}, nc, rdb, log)
}

func newLogger(format string) (*slog.Logger, error) {
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, nil)), nil
	}
	return nil, invalidf("--log-format: %q; use json or text", format)
}

func parseRoles(s string) (api, dispatch bool, err error) {
	for _, r := range strings.Split(s, ",") {
		switch strings.TrimSpace(r) {
		case "api":
			api = true
		case "dispatcher":
			dispatch = true
		default:
			return false, false, invalidf("--roles: %q is not a role; use api, dispatcher or api,dispatcher", r)
		}
	}
	return api, dispatch, nil
}

func natsOptions(creds, nkey, ca, cert, key string) ([]nats.Option, error) {
	var opts []nats.Option
	check := func(flag, file string) error {
		if file == "" {
			return nil
		}
		if _, err := os.Stat(file); err != nil {
			return invalidf("--%s: %v", flag, err)
		}
		return nil
	}
	for _, c := range []struct{ flag, file string }{{"nats-creds", creds}, {"nats-nkey", nkey}, {"nats-tls-ca", ca}, {"nats-tls-cert", cert}, {"nats-tls-key", key}} {
		if err := check(c.flag, c.file); err != nil {
			return nil, err
		}
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if nkey != "" {
		o, err := nats.NkeyOptionFromSeed(nkey)
		if err != nil {
			return nil, invalidf("--nats-nkey: %v", err)
		}
		opts = append(opts, o)
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	if (cert == "") != (key == "") {
		return nil, invalidf("--nats-tls-cert and --nats-tls-key go together")
	}
	if cert != "" {
		opts = append(opts, nats.ClientCert(cert, key))
	}
	return opts, nil
}

// redisClient returns a single-node client for --redis-url, or a Cluster
// or Sentinel client for --redis-addrs, through go-redis's universal client.
func redisClient(url, addrs, master, password string) (redis.UniversalClient, error) {
	if addrs == "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, invalidf("--redis-url: %v; e.g. redis://:password@host:6379/0 or rediss:// for TLS", err)
		}
		return redis.NewClient(opt), nil
	}
	list := strings.Split(addrs, ",")
	for _, a := range list {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil {
			return nil, invalidf("--redis-addrs: %q: %v; give host:port pairs", a, err)
		}
	}
	opts := &redis.UniversalOptions{Addrs: list, MasterName: master, Password: password}
	if strings.HasPrefix(url, "rediss://") {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return redis.NewUniversalClient(opts), nil
}

// streamReplicas is 3 when the connected NATS cluster has 3 or more
// servers (the client learns them all from any one), else 1.
func streamReplicas(nc *nats.Conn) int {
	if len(nc.Servers()) >= 3 {
		return 3
	}
	return 1
}
