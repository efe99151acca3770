package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/metrics"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

const (
	// readyTimeout bounds each dependency check of /readyz: a probe must
	// answer well within the kubelet's timeout.
	readyTimeout = 2 * time.Second
	// defaultShutdownTimeout is how long in-flight work may finish after
	// SIGTERM; it stays under Kubernetes' 30 s grace period.
	defaultShutdownTimeout = 25 * time.Second
)

// nodeConfig is what one Ajil process runs.
type nodeConfig struct {
	api, dispatch   bool
	listen          string
	keys            *subscribers.Keys
	registry        subscribers.Config
	apiConfig       subscribers.APIConfig
	dispatcher      dispatcher.Config
	fcm             fcm.Config
	fcmPerMinute    int
	webhook         webhook.Config
	streamReplicas  int
	shutdownTimeout time.Duration
	// onListening is called with the API's address once it accepts.
	onListening func(addr string)
}

// runNode runs the API and/or the dispatcher on nc and rdb until ctx is
// done, then drains within the shutdown timeout.
func runNode(ctx context.Context, cfg nodeConfig, nc *nats.Conn, rdb redis.UniversalClient, log *slog.Logger) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	m := metrics.New()
	reg := subscribers.New(rdb, cfg.registry)
	if _, err := publisher.EnsureStream(ctx, js, publisher.Config{Replicas: cfg.streamReplicas}); err != nil {
		return fmt.Errorf("%w (does this NATS account have JetStream, and permission to manage streams?)", err)
	}

	var d *dispatcher.Dispatcher
	if cfg.dispatch {
		fcmCfg := cfg.fcm
		if !fcmCfg.LogOnly {
			fcmCfg.Limiter = fcm.NewRedisLimiter(rdb, cfg.fcmPerMinute)
		}
		ch, err := fcm.New(ctx, fcmCfg, log.With("component", "fcm"))
		if err != nil {
			return &exitError{exitInvalid, err}
		}
		defer ch.Close()
		sender := webhook.NewSender(cfg.webhook, log.With("component", "webhook"))
		defer sender.Close()
		dcfg := cfg.dispatcher
		dcfg.Replicas = cfg.streamReplicas
		d, err = dispatcher.New(dcfg, dispatcher.Deps{
			NATS: nc, Redis: rdb, Registry: reg, FCM: ch, Webhooks: sender,
			Attempts: webhook.NewAttemptLog(rdb, webhook.DefaultKeep), Metrics: m, Log: log,
		})
		if err != nil {
			return err
		}
		if err := d.EnsureStreams(ctx); err != nil {
			return fmt.Errorf("%w (does this NATS account have permission to manage streams?)", err)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	streams := []string{publisher.DefaultStream}
	if cfg.dispatch {
		streams = append(streams, dispatcher.DefaultWorkStream, dispatcher.DefaultDeadStream)
	}
	mux.Handle("GET /readyz", readiness(nc, js, rdb, streams))
	mux.Handle("GET /metrics", m.Handler())
	if cfg.api {
		apiCfg := cfg.apiConfig
		apiCfg.Attempts = webhook.NewAttemptLog(rdb, webhook.DefaultKeep)
		mux.Handle("/v1/", subscribers.NewAPI(reg, cfg.keys, apiCfg, log.With("component", "api")))
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return &exitError{exitInvalid, fmt.Errorf("--listen %s: %w", cfg.listen, err)}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http: %w", err)
		}
	})
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	if d != nil {
		wg.Go(func() {
			if err := d.Run(runCtx, cfg.shutdownTimeout); err != nil {
				errs <- err
			}
		})
	}
	if cfg.api {
		wg.Go(func() { expireDevices(runCtx, reg, log) })
	}
	if cfg.onListening != nil {
		cfg.onListening(ln.Addr().String())
	}
	log.Info("ajil running", "listen", ln.Addr().String(), "api", cfg.api, "dispatcher", cfg.dispatch)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	log.Info("shutting down", "timeout", cfg.shutdownTimeout)
	stopRun()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}

// expireInterval is how often devices unseen for the registry's DeviceTTL
// are removed: the TTL is months, so hourly is prompt enough, and every API
// replica may run it, as removal is idempotent.
const expireInterval = time.Hour

func expireDevices(ctx context.Context, reg *subscribers.Registry, log *slog.Logger) {
	t := time.NewTicker(expireInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ectx, cancel := context.WithTimeout(ctx, expireInterval/2)
			n, err := reg.Expire(ectx, now)
			cancel()
			switch {
			case err != nil:
				log.Warn("expire devices failed", "err", err)
			case n > 0:
				log.Info("expired devices not seen for the device TTL", "removed", n)
			}
		}
	}
}

// readiness answers 200 when NATS and Redis answer and the streams exist,
// and 503 naming what is wrong otherwise.
func readiness(nc *nats.Conn, js jetstream.JetStream, rdb redis.UniversalClient, streams []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		var problems []string
		if !nc.IsConnected() {
			problems = append(problems, "nats: "+nc.Status().String())
		} else {
			for _, name := range streams {
				if _, err := js.Stream(ctx, name); err != nil {
					problems = append(problems, fmt.Sprintf("stream %s: %v", name, err))
				}
			}
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			problems = append(problems, "redis: "+err.Error())
		}
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(problems, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
}
