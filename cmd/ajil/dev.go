package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/natsd"
	"github.com/ajil-news/ajil/subscribers"
)

const (
	// defaultDataDir keeps dev state beside the checkout, where a developer
	// finds and deletes it.
	defaultDataDir = "./ajil-data"
	// defaultAPIListen is loopback only: dev has generated keys and
	// permissive webhook settings that must not face a network.
	defaultAPIListen = "127.0.0.1:8080"
	// shutdownTimeout bounds a Ctrl-C; in-flight requests are short.
	shutdownTimeout = 10 * time.Second
)

func runDev(ctx context.Context, args []string) error {
	fs := flagSet("dev", "dev [flags]", `  ajil dev
  ajil dev --data /tmp/ajil --listen 127.0.0.1:9090 --nats-listen 127.0.0.1:4333`)
	var (
		dataDir    = fs.String("data", defaultDataDir, "`directory` for the embedded JetStream store")
		natsListen = fs.String("nats-listen", net.JoinHostPort(natsd.DefaultHost, strconv.Itoa(natsd.DefaultPort)), "`host:port` of the embedded NATS server")
		listen     = fs.String("listen", defaultAPIListen, "`host:port` of the HTTP API")
		redisURL   = fs.String("redis-url", "", "use this Redis `URL` instead of the in-process store")
		adminKey   = fs.String("admin-key", "", "API admin `key` (default: a new one each start, printed)")
	)
	var fc fcmFlags
	fc.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	host, port, err := splitHostPort(*natsListen)
	if err != nil {
		return invalidf("--nats-listen: %v", err)
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		return invalidf("--data: %v", err)
	}
	ns, err := natsd.Start(natsd.Config{Host: host, Port: port, DataDir: filepath.Join(*dataDir, "jetstream"), SyncAlways: true, ServerName: "ajil-dev"})
	if err != nil {
		return fmt.Errorf("%w (is another `ajil dev` or nats-server already on %s? pick another with --nats-listen)", err, *natsListen)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("ajil dev"))
	if err != nil {
		return fmt.Errorf("connect embedded nats: %w", err)
	}
	defer nc.Close()

	redisDesc, rdb, closeRedis, err := devRedis(ctx, *redisURL)
	if err != nil {
		return err
	}
	defer closeRedis()

	key := *adminKey
	if key == "" {
		key = subscribers.GenerateKey()
	}
	keys, err := subscribers.ParseKeys("admin:" + key)
	if err != nil {
		return invalidf("--admin-key: %v", err)
	}
	fcmCfg, err := fc.devConfig()
	if err != nil {
		return err
	}
	// A developer points endpoints at a receiver on their own machine.
	devHooks := webhook.Config{Version: version, AllowHTTP: true, AllowPrivate: true}
	return runNode(ctx, nodeConfig{
		api: true, dispatch: true, listen: *listen, keys: keys,
		registry:        subscribers.Config{AllowHTTP: true, AllowPrivate: true},
		dispatcher:      dispatcher.Config{Name: "dev", FCMMode: fc.mode()},
		fcm:             fcmCfg,
		fcmPerMinute:    fc.perMinute,
		webhook:         devHooks,
		streamReplicas:  1,
		shutdownTimeout: shutdownTimeout,
		onListening: func(addr string) {
			printDevBanner(devBanner{natsURL: ns.ClientURL(), dataDir: *dataDir, redis: redisDesc, api: "http://" + addr, key: key, fcm: describeFCM(fcmCfg)})
		},
	}, nc, rdb, log)
}

// devRedis connects to redisURL, or starts the in-process store.
func devRedis(ctx context.Context, redisURL string) (desc string, rdb *redis.Client, closeFn func(), err error) {
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return "", nil, nil, invalidf("--redis-url: %v", err)
		}
		rdb := redis.NewClient(opt)
		pctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		if err := rdb.Ping(pctx).Err(); err != nil {
			rdb.Close()
			return "", nil, nil, &exitError{exitUnreachable, fmt.Errorf("cannot reach Redis at %s: %w", redisURL, err)}
		}
		return redisURL, rdb, func() { rdb.Close() }, nil
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return "", nil, nil, fmt.Errorf("start in-process redis: %w", err)
	}
	rdb = redis.NewClient(&redis.Options{Addr: m.Addr()})
	return "in-process, not persisted (redis://" + m.Addr() + "); pass --redis-url for a real one", rdb,
		func() { rdb.Close(); m.Close() }, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = -1 // nats-server's "pick a free port"
	}
	return host, port, nil
}

// selfCommand is how the developer runs this binary again: `go run
// ./cmd/ajil` when started with go run, else the binary's name.
func selfCommand() string {
	if strings.Contains(os.Args[0], "go-build") {
		return "go run ./cmd/ajil"
	}
	return filepath.Base(os.Args[0])
}

type devBanner struct{ natsURL, dataDir, redis, api, key, fcm string }

func printDevBanner(b devBanner) {
	self := selfCommand()
	natsFlag := ""
	if b.natsURL != defaultNATSURL {
		natsFlag = " --nats-url " + b.natsURL
	}
	apiFlag := ""
	if b.api != "http://"+defaultAPIListen {
		apiFlag = " --api " + b.api
	}
	fmt.Printf(`Ajil dev is running. Ctrl-C stops it; alerts survive a restart.
  NATS JetStream  %s (data in %s, fsync on every write)
  Redis           %s
  HTTP API        %s  (admin key %s)
  FCM             %s
  Webhooks        http:// and private addresses allowed, for local receivers

Publish your first alert from another terminal:
  %s publish%s --headline "زلزال بقوة 6 درجات يضرب جنوب تركيا" --topic breaking --wait

Register a device and a partner endpoint:
  export AJIL_KEY=%s
  %s devices add demo-token-1 --platform android --lang ar --topic breaking%s
  %s endpoints add http://127.0.0.1:9000/hooks%s
`, b.natsURL, b.dataDir, b.redis, b.api, b.key, b.fcm, self, natsFlag, b.key, self, apiFlag, self, apiFlag)
}
