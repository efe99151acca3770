package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/internal/natsd"
	"github.com/ajil-news/ajil/publisher"
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
	)
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
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if _, err := publisher.EnsureStream(ctx, js, publisher.Config{}); err != nil {
		return err
	}

	redisDesc, rdb, closeRedis, err := devRedis(ctx, *redisURL)
	if err != nil {
		return err
	}
	defer closeRedis()
	_ = rdb

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return invalidf("--listen %s: %v", *listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	printDevBanner(ns.ClientURL(), *dataDir, redisDesc, "http://"+ln.Addr().String())
	log.Info("ajil dev running", "nats", ns.ClientURL(), "api", ln.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("api server: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
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

func printDevBanner(natsURL, dataDir, redisDesc, apiURL string) {
	self := selfCommand()
	natsFlag := ""
	if natsURL != defaultNATSURL {
		natsFlag = " --nats-url " + natsURL
	}
	fmt.Printf(`Ajil dev is running. Ctrl-C stops it; alerts survive a restart.
  NATS JetStream  %s (data in %s, fsync on every write)
  Redis           %s
  HTTP API        %s
  FCM             log-only: pushes are logged, not sent

Publish your first alert from another terminal:
  %s publish%s --headline "زلزال بقوة 6 درجات يضرب جنوب تركيا" --topic breaking
`, natsURL, dataDir, redisDesc, apiURL, self, natsFlag)
}
