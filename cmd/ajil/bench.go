package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/api/option"

	"github.com/ajil-news/ajil/alert"
	"github.com/ajil-news/ajil/dispatcher"
	"github.com/ajil-news/ajil/dispatcher/fcm"
	"github.com/ajil-news/ajil/dispatcher/webhook"
	"github.com/ajil-news/ajil/internal/fcmtest"
	"github.com/ajil-news/ajil/internal/hooktest"
	"github.com/ajil-news/ajil/internal/natsd"
	"github.com/ajil-news/ajil/internal/redisd"
	"github.com/ajil-news/ajil/publisher"
	"github.com/ajil-news/ajil/subscribers"
)

const (
	// benchPrefix keeps the benchmark's devices and endpoints apart from a
	// real registry in a Redis given with --redis-url; they are deleted at
	// the end.
	benchPrefix = "ajil:{bench}:"
	// benchRegisterWorkers is how many Upserts are in flight while the
	// audience is registered: enough to keep redis-server busy.
	benchRegisterWorkers = 64
	// benchHookServers is how many loopback servers carry the endpoints
	// (as paths), as in webhook.BenchmarkDeliver1000Endpoints: each host
	// sees about as many requests at once as the sender keeps connections
	// for, and the file descriptors stay few.
	benchHookServers = 16
	// benchWait bounds one measured fan-out.
	benchWait = 30 * time.Minute
	// benchGrace is how long the dispatcher may finish in-flight work
	// when the benchmark ends.
	benchGrace = 5 * time.Second

	// Targets, from the issues; the output says whether each is met.
	targetFCMRatio   = 0.8
	targetRSSBytes   = 150 << 20 // for a fan-out to targetRSSTokens devices
	targetRSSTokens  = 1_000_000
	targetHookP50    = 5 * time.Millisecond
	targetHookP99    = 25 * time.Millisecond
	defaultBenchToks = 100_000
	defaultBenchEps  = 1000
)

func runBench(ctx context.Context, args []string) error {
	return runGroup(ctx, "bench", []subcommand{
		{"fcm", "fan one alert out to N devices through a fake FCM, against a bare SendEach loop", benchFCM},
		{"webhooks", "fan one alert out to N loopback endpoints, against a bare net/http client; or measure latency", benchWebhooks},
	}, args, stdStreams())
}

// benchFlags are the flags every benchmark takes.
type benchFlags struct {
	redisURL   string
	fsync      bool
	cpuProfile string
	memProfile string
}

func (f *benchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.redisURL, "redis-url", "", "use this Redis `URL` instead of starting redis-server (the benchmark's keys are deleted after)")
	fs.BoolVar(&f.fsync, "fsync", false, "fsync every JetStream write, as ajil dev does; a production cluster keeps alerts by R3 replication and nats-server's default periodic sync")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this process to `file`, for go tool pprof (bench fcm runs the dispatcher in a process of its own)")
	fs.StringVar(&f.memProfile, "memprofile", "", "write a heap profile taken at this process's peak memory to `file`")
}

// start starts the system and the profiles the flags ask for; stop ends
// them both.
func (f *benchFlags) start(ctx context.Context) (_ *benchSystem, stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return nil, nil, invalidf("--cpuprofile: %v", err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			out.Close()
			return nil, nil, fmt.Errorf("cpu profile: %w", err)
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); out.Close() })
	}
	if f.memProfile != "" {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); profilePeaks(pctx, f.memProfile) }()
		stops = append(stops, func() { cancel(); <-done })
	}
	sys, err := startBench(ctx, f.redisURL, f.fsync)
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() { sys.close(ctx) })
	return sys, stop, nil
}

// profilePeaks writes a heap profile to path each time the memory the Go
// runtime holds from the system reaches a new high, until ctx is done: the
// file ends up showing what the heap held at the peak (as of the last
// collection before it).
func profilePeaks(ctx context.Context, path string) {
	const step = 4 << 20 // a new high worth a new profile
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var high uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if held := m.Sys - m.HeapReleased; held > high+step {
			high = held
			if err := writeHeapProfile(path); err != nil {
				slog.Warn("heap profile", "file", path, "err", err)
				return
			}
		}
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchSystem is Ajil's surroundings in this process: an embedded
// JetStream server and a real redis-server, with a registry on it.
type benchSystem struct {
	dir    string
	ns     *server.Server
	nc     *nats.Conn
	redis  *redisd.Server // nil with --redis-url
	rdbURL string
	rdb    *redis.Client
	reg    *subscribers.Registry
	pub    *publisher.Publisher
	log    *slog.Logger
}

// startBench starts NATS, fsyncing every write if asked, and, unless
// redisURL is given, redis-server.
func startBench(ctx context.Context, redisURL string, fsync bool) (_ *benchSystem, err error) {
	s := &benchSystem{log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if s.dir, err = os.MkdirTemp("", "ajil-bench"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.close(ctx)
		}
	}()
	if s.ns, err = natsd.Start(natsd.Config{Port: -1, DataDir: filepath.Join(s.dir, "jetstream"), SyncAlways: fsync, ServerName: "ajil-bench"}); err != nil {
		return nil, err
	}
	if s.nc, err = nats.Connect(s.ns.ClientURL(), nats.InProcessServer(s.ns), nats.Name("ajil bench")); err != nil {
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	if redisURL == "" {
		if err := os.Mkdir(filepath.Join(s.dir, "redis"), 0o700); err != nil {
			return nil, err
		}
		if s.redis, err = redisd.Start(ctx, redisd.Config{Dir: filepath.Join(s.dir, "redis")}); err != nil {
			return nil, fmt.Errorf("%w; or pass --redis-url", err)
		}
		redisURL = s.redis.URL()
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, invalidf("--redis-url: %v", err)
	}
	s.rdbURL = redisURL
	opt.PoolSize = benchRegisterWorkers
	s.rdb = redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		return nil, &exitError{exitUnreachable, fmt.Errorf("cannot reach Redis at %s: %w", redisURL, err)}
	}
	s.reg = subscribers.New(s.rdb, subscribers.Config{Prefix: benchPrefix, AllowHTTP: true, AllowPrivate: true})
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.pub = publisher.New(js, publisher.Config{})
	return s, nil
}

// close stops what startBench started; in a Redis of --redis-url it
// deletes the benchmark's registry.
func (s *benchSystem) close(ctx context.Context) {
	if s.rdb != nil {
		if s.redis != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.redis.Stop(sctx)
			cancel()
		} else {
			s.forget(context.WithoutCancel(ctx))
		}
		s.rdb.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	os.RemoveAll(s.dir)
}

// forget deletes the benchmark's registry keys.
func (s *benchSystem) forget(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	it := s.rdb.Scan(ctx, 0, benchPrefix+"*", 1000).Iterator()
	var batch []string
	for it.Next(ctx) {
		if batch = append(batch, it.Val()); len(batch) == 1000 {
			s.rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		s.rdb.Unlink(ctx, batch...)
	}
	if err := it.Err(); err != nil {
		s.log.Warn("delete the benchmark's registry", "prefix", benchPrefix, "err", err)
	}
}

// run starts a dispatcher with the default configuration on the system
// and returns the function that stops it.
func (s *benchSystem) run(ctx context.Context, deps dispatcher.Deps) (stop func() error, err error) {
	deps.NATS, deps.Redis, deps.Registry, deps.Log = s.nc, s.rdb, s.reg, s.log
	d, err := dispatcher.New(dispatcher.Config{Name: "bench"}, deps)
	if err != nil {
		return nil, err
	}
	if err := d.EnsureStreams(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx, benchGrace) }()
	return func() error { cancel(); return <-done }, nil
}

// publish publishes a fresh alert whose headline is unique to n, so that
// the content dedup lets it through.
func (s *benchSystem) publish(ctx context.Context, n int) (alert.Alert, error) {
	a := alert.Alert{Headline: fmt.Sprintf("عاجل: زلزال بقوة %d درجات يضرب جنوب تركيا", n), URL: "https://example.com/news/quake"}.WithDefaults(time.Now())
	_, err := s.pub.Publish(ctx, a)
	return a, err
}

// waitDone follows alert id until its fan-out is final.
func (s *benchSystem) waitDone(ctx context.Context, id string) (alert.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, benchWait)
	defer cancel()
	st, err := publisher.Follow(ctx, s.nc, id, time.Second, func(alert.Status) {})
	if err == nil && st.State != "done" {
		err = fmt.Errorf("alert %s ended %s, not done", id, st.State)
	}
	return st, err
}

// benchToken is device i's token, as long as a real FCM registration token
// (163 bytes), made on demand so that no list of a million is held.
func benchToken(i int) string {
	return fmt.Sprintf("d%010d:APA91b", i) + strings.Repeat("x", 163-18)
}

// register registers devices [0, n) following breaking in Arabic, with
// concurrent Upserts: the registry's own script, one device a call.
func (s *benchSystem) register(ctx context.Context, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchRegisterWorkers)
	for range benchRegisterWorkers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				d := subscribers.Device{Token: benchToken(i), Platform: subscribers.PlatformAndroid, Lang: "ar", Topics: []string{alert.DefaultTopic}}
				if _, _, err := s.reg.Upsert(ctx, d); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("register devices: %w", err)
	}
	return nil
}

// phase measures a stretch of the benchmark: wall time and CPU.
type phase struct {
	start time.Time
	cpu   time.Duration
}

func startPhase() phase { return phase{start: time.Now(), cpu: cpuTime()} }

// end returns the wall time since the start and the CPU cores used.
func (p phase) end() (time.Duration, float64) {
	wall := time.Since(p.start)
	return wall, (cpuTime() - p.cpu).Seconds() / wall.Seconds()
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is a process's peak resident set size, VmHWM in
// /proc/PID/status ("self" for this one), or 0 where there is none.
func peakRSS(pid string) int64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// procCPU is the CPU time another process has used, from /proc/PID/stat,
// or 0 where there is none.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go builds for.
const clockTicks = 100

func mb(b int64) string { return fmt.Sprintf("%d MB", b>>20) }

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

func benchFCM(ctx context.Context, args []string, st streams) error {
	fs := flagSet("bench fcm", "bench fcm [flags]", `  ajil bench fcm
  ajil bench fcm --tokens 1000000
  ajil bench fcm --latency 50ms`)
	fs.SetOutput(st.err)
	tokens := fs.Int("tokens", defaultBenchToks, "registered `devices` to fan out to")
	latency := fs.Duration("latency", 0, "delay of every request at the fake FCM, as a distant FCM's")
	var bf benchFlags
	bf.register(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *tokens <= 0 {
		return invalidf("--tokens: %d; give how many devices to register, e.g. 100000", *tokens)
	}
	if *latency < 0 {
		return invalidf("--latency: %s; give a delay such as 50ms, or 0", *latency)
	}
	n := *tokens
	sys, stop, err := bf.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	fake := fcmtest.New(fcmtest.CountOnly(), fcmtest.WithLatency(*latency))
	defer fake.Close()
	creds, err := fake.WriteCredentials(sys.dir)
	if err != nil {
		return err
	}
	out := st.out
	fmt.Fprintf(out, "FCM fan-out to %d devices; fake FCM (counting only) answering after %s; %d work items and %d SendEach calls at once\n",
		n, *latency, dispatcher.DefaultConcurrency, fcm.DefaultConcurrency)

	p := startPhase()
	if err := sys.register(ctx, n); err != nil {
		return err
	}
	wall, _ := p.end()
	fmt.Fprintf(out, "registered    %d devices in %s (%.0f/s, concurrent Upserts)\n", n, wall.Round(time.Millisecond), float64(n)/wall.Seconds())

	d, err := sys.spawnDispatcher(ctx, "--fcm-credentials", creds, "--fcm-endpoint", fake.Endpoint())
	if err != nil {
		return err
	}
	before := fake.Sent()
	start, cpu := time.Now(), procCPU(d.pid())
	a, err := sys.publish(ctx, 1)
	if err != nil {
		return errors.Join(err, d.stop())
	}
	status, err := sys.waitDone(ctx, a.ID)
	ajilWall := time.Since(start)
	ajilCPU := (procCPU(d.pid()) - cpu).Seconds() / ajilWall.Seconds()
	rssAjil := peakRSS(strconv.Itoa(d.pid()))
	if err := errors.Join(err, d.stop()); err != nil {
		return err
	}
	if status.Sent != int64(n) || fake.Sent()-before != int64(n) {
		return fmt.Errorf("ajil sent %d, the fake FCM accepted %d; want %d", status.Sent, fake.Sent()-before, n)
	}
	fmt.Fprintf(out, "ajil          %d messages in %s: %.0f msgs/s, %.2f CPU cores (ajil serve --roles dispatcher; publish to status done)\n",
		n, ajilWall.Round(time.Millisecond), float64(n)/ajilWall.Seconds(), ajilCPU)
	// SAMPLES 0 counts every field, as an operator sizing Redis would.
	if marks, err := sys.rdb.MemoryUsage(ctx, dispatcher.MarksKey(a.ID), 0).Result(); err == nil {
		fmt.Fprintf(out, "marks         %s of delivery marks in Redis (%d bytes a device), kept until the alert expires\n", mb(marks), marks/int64(n))
	}

	client, err := sdkClient(ctx, fake)
	if err != nil {
		return err
	}
	p = startPhase()
	if err := sendEachCeiling(ctx, client, a, n, fcm.DefaultConcurrency); err != nil {
		return err
	}
	sdkWall, sdkCPU := p.end()
	fmt.Fprintf(out, "sdk ceiling   %d messages in %s: %.0f msgs/s, %.2f CPU cores (bare SendEach loop, %d a call, %d calls at once, with the fake FCM in its process)\n",
		n, sdkWall.Round(time.Millisecond), float64(n)/sdkWall.Seconds(), sdkCPU, fcm.MaxBatch, fcm.DefaultConcurrency)

	ratio := sdkWall.Seconds() / ajilWall.Seconds()
	fmt.Fprintf(out, "ratio         %.2f ajil/sdk (target >= %.1f: %s)\n", ratio, targetFCMRatio, verdict(ratio >= targetFCMRatio))
	fmt.Fprintf(out, "peak RSS      %s of the dispatcher process", mb(rssAjil))
	if n >= targetRSSTokens {
		fmt.Fprintf(out, " (target < %s for %d devices: %s)", mb(targetRSSBytes), targetRSSTokens, verdict(rssAjil < targetRSSBytes))
	}
	fmt.Fprintf(out, "; %s of this one (NATS, fake FCM, SDK ceiling)\n", mb(peakRSS("self")))
	return nil
}

// dispatcherProcess is `ajil serve --roles dispatcher` in a process of its
// own, as production runs it, so that its memory and CPU are measured
// apart from the benchmark's NATS server, fake FCM and ceiling.
type dispatcherProcess struct {
	cmd  *exec.Cmd
	logs string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// spawnDispatcher starts a dispatcher process on the system with the given
// extra serve flags and waits until it is ready.
func (s *benchSystem) spawnDispatcher(ctx context.Context, args ...string) (*dispatcherProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the ajil binary: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &dispatcherProcess{logs: filepath.Join(s.dir, "dispatcher.log"), done: make(chan struct{})}
	logs, err := os.Create(p.logs)
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	p.cmd = exec.Command(exe, append([]string{"serve", "--roles", "dispatcher", "--listen", addr, "--log-format", "text",
		"--nats-url", s.ns.ClientURL(), "--redis-url", s.rdbURL, "--registry-prefix", benchPrefix}, args...)...)
	// The user's AJIL_* settings are for their deployment, not this one.
	p.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envPrefix+"_") })
	p.cmd.Stdout, p.cmd.Stderr = logs, logs
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the dispatcher process: %w", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(wctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if err != nil {
			return nil, errors.Join(err, p.stop())
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("the dispatcher process exited (%v); its log ends:\n%s", p.err, p.logTail())
		case <-wctx.Done():
			return nil, errors.Join(fmt.Errorf("the dispatcher process was not ready in 30s; its log ends:\n%s", p.logTail()), p.stop())
		case <-t.C:
		}
	}
}

func (p *dispatcherProcess) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits for the process to finish, killing it
// after a while.
func (p *dispatcherProcess) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	if p.err != nil {
		return fmt.Errorf("the dispatcher process: %w; its log ends:\n%s", p.err, p.logTail())
	}
	return nil
}

// logTail is the end of the process's log, for an error: the log itself
// goes with the benchmark's temporary directory.
func (p *dispatcherProcess) logTail() string {
	b, _ := os.ReadFile(p.logs)
	return string(b[max(0, len(b)-4096):])
}

// sdkClient is a messaging client of the real SDK on the fake's own
// client: cleartext HTTP/2 and a static token, the lightest stack.
func sdkClient(ctx context.Context, fake *fcmtest.Server) (*messaging.Client, error) {
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: fake.Project()},
		option.WithHTTPClient(fake.HTTPClient()), option.WithEndpoint(fake.Endpoint()))
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	return app.Messaging(ctx)
}

// sendEachCeiling sends a to devices [0, n) with a bare loop of the SDK's
// SendEach, fcm.MaxBatch a call and concurrency calls at once.
func sendEachCeiling(ctx context.Context, client *messaging.Client, a alert.Alert, n, concurrency int) error {
	m := fcm.Message(a, benchToken(0))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	var failed atomic.Int64
	errs := make(chan error, 1)
	for i := 0; i < n && ctx.Err() == nil; i += fcm.MaxBatch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			msgs := make([]*messaging.Message, 0, fcm.MaxBatch)
			for j := i; j < min(i+fcm.MaxBatch, n); j++ {
				c := *m
				c.Token = benchToken(j)
				msgs = append(msgs, &c)
			}
			br, err := client.SendEach(ctx, msgs)
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			failed.Add(int64(br.FailureCount))
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case err := <-errs:
		return fmt.Errorf("sdk ceiling: %w", err)
	default:
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("sdk ceiling: %d of %d messages refused", f, n)
	}
	return nil
}

// hookFarm is partner endpoints: paths on benchHookServers loopback
// servers. It counts the requests it receives and, once timed, how long
// after its alert's publish each one arrived.
type hookFarm struct {
	urls     []string
	servers  []*http.Server
	received atomic.Int64
	timed    atomic.Bool

	wantMu  sync.Mutex
	want    int64
	reached chan struct{} // closed once received reaches want

	mu        sync.Mutex
	published map[string]time.Time // alert ID -> when its publish started
	latencies []time.Duration
}

func startHookFarm(n int) (*hookFarm, error) {
	f := &hookFarm{published: make(map[string]time.Time)}
	var hosts []string
	for range benchHookServers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.close()
			return nil, fmt.Errorf("webhook receiver: %w", err)
		}
		srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
		f.servers = append(f.servers, srv)
		go srv.Serve(ln)
		hosts = append(hosts, ln.Addr().String())
	}
	for i := range n {
		f.urls = append(f.urls, fmt.Sprintf("http://%s/partners/%d", hosts[i%len(hosts)], i))
	}
	return f, nil
}

func (f *hookFarm) close() {
	for _, srv := range f.servers {
		srv.Close()
	}
}

func (f *hookFarm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	w.WriteHeader(http.StatusNoContent)
	if f.timed.Load() {
		var p struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if json.Unmarshal(body, &p) == nil {
			f.mu.Lock()
			if t, ok := f.published[p.Data.ID]; ok {
				f.latencies = append(f.latencies, at.Sub(t))
			}
			f.mu.Unlock()
		}
	}
	got := f.received.Add(1)
	f.wantMu.Lock()
	if f.reached != nil && got >= f.want {
		close(f.reached)
		f.reached = nil
	}
	f.wantMu.Unlock()
}

// expect returns a channel closed once the farm has received n requests
// in all.
func (f *hookFarm) expect(n int64) <-chan struct{} {
	f.wantMu.Lock()
	defer f.wantMu.Unlock()
	ch := make(chan struct{})
	if f.received.Load() >= n {
		close(ch)
		return ch
	}
	f.want, f.reached = n, ch
	return ch
}

// wait waits until the farm has received n requests in all.
func (f *hookFarm) wait(ctx context.Context, n int64) error {
	ctx, cancel := context.WithTimeout(ctx, benchWait)
	defer cancel()
	select {
	case <-f.expect(n):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d webhooks received, want %d: %w", f.received.Load(), n, ctx.Err())
	}
}

func benchWebhooks(ctx context.Context, args []string, st streams) error {
	fs := flagSet("bench webhooks", "bench webhooks [flags]", `  ajil bench webhooks
  ajil bench webhooks --endpoints 5000
  ajil bench webhooks --alerts 1000 --endpoints 10`)
	fs.SetOutput(st.err)
	endpoints := fs.Int("endpoints", defaultBenchEps, "partner `endpoints` to deliver to, on loopback")
	alerts := fs.Int("alerts", 0, "latency mode: publish this many `alerts` one after another and report publish-to-received percentiles")
	var bf benchFlags
	bf.register(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *endpoints <= 0 {
		return invalidf("--endpoints: %d; give how many endpoints to register, e.g. 1000", *endpoints)
	}
	if *alerts < 0 {
		return invalidf("--alerts: %d; give how many alerts to time, e.g. 1000, or 0 for the fan-out rate", *alerts)
	}
	n := *endpoints
	sys, stop, err := bf.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	farm, err := startHookFarm(n)
	if err != nil {
		return err
	}
	defer farm.close()
	eps := make([]subscribers.Endpoint, n)
	for i, u := range farm.urls {
		if eps[i], err = sys.reg.CreateEndpoint(ctx, subscribers.EndpointSpec{URL: u, Description: "شريك " + strconv.Itoa(i)}); err != nil {
			return err
		}
	}
	ch, err := fcm.New(ctx, fcm.Config{LogOnly: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	sender := webhook.NewSender(webhook.Config{Version: version, AllowHTTP: true, AllowPrivate: true}, sys.log)
	defer sender.Close()
	stopDispatcher, err := sys.run(ctx, dispatcher.Deps{FCM: ch, Webhooks: sender, Attempts: webhook.NewAttemptLog(sys.rdb, webhook.DefaultKeep)})
	if err != nil {
		return err
	}
	if *alerts > 0 {
		err = hookLatency(ctx, st.out, sys, farm, *alerts)
	} else {
		err = hookFanout(ctx, st.out, sys, farm, eps)
	}
	return errors.Join(err, stopDispatcher())
}

// hookFanout times one alert's delivery to every endpoint, publish to the
// last request received, after one alert that opens the connections; then
// the same signed bodies posted by a bare net/http client.
func hookFanout(ctx context.Context, out io.Writer, sys *benchSystem, farm *hookFarm, eps []subscribers.Endpoint) error {
	n := len(eps)
	conc := dispatcher.DefaultHookConcurrency
	fmt.Fprintf(out, "webhook fan-out to %d endpoints on %d loopback servers; %d deliveries at once\n", n, benchHookServers, conc)
	bare := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: conc}}
	defer bare.CloseIdleConnections()

	var a alert.Alert
	var ajilWall, bareWall time.Duration
	var ajilCPU, bareCPU float64
	for i := range 2 { // the first opens the connections
		got := farm.received.Load()
		p := startPhase()
		var err error
		if a, err = sys.publish(ctx, i); err != nil {
			return err
		}
		if err := farm.wait(ctx, got+int64(n)); err != nil {
			return err
		}
		ajilWall, ajilCPU = p.end()
		if err := waitDelivered(ctx, sys, a.ID, n); err != nil {
			return err
		}
		got = farm.received.Load()
		p = startPhase()
		if err := bareHooks(ctx, bare, a, eps, conc); err != nil {
			return err
		}
		bareWall, bareCPU = p.end()
		if d := farm.received.Load() - got; d != int64(n) {
			return fmt.Errorf("the bare client delivered %d, want %d", d, n)
		}
	}
	fmt.Fprintf(out, "ajil          %d deliveries in %s: %.0f deliveries/s, %.2f CPU cores (publish to the last received)\n",
		n, ajilWall.Round(time.Millisecond), float64(n)/ajilWall.Seconds(), ajilCPU)
	fmt.Fprintf(out, "bare client   %d deliveries in %s: %.0f deliveries/s, %.2f CPU cores (net/http, the same signed bodies, %d at once)\n",
		n, bareWall.Round(time.Millisecond), float64(n)/bareWall.Seconds(), bareCPU, conc)
	fmt.Fprintf(out, "ratio         %.2f ajil/bare\n", bareWall.Seconds()/ajilWall.Seconds())
	fmt.Fprintf(out, "peak RSS      %s\n", mb(peakRSS("self")))
	return nil
}

// waitDelivered waits until the dispatcher has counted n deliveries of
// alert id, so that its bookkeeping is over before the next measure.
func waitDelivered(ctx context.Context, sys *benchSystem, id string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, benchWait)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := publisher.QueryStatus(ctx, sys.nc, id)
		if err == nil && st.Delivered >= int64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("alert %s: %d of %d webhooks counted delivered (%v): %w", id, st.Delivered, n, err, ctx.Err())
		case <-t.C:
		}
	}
}

// bareHooks posts a's signed body to every endpoint with client,
// concurrency at once.
func bareHooks(ctx context.Context, client *http.Client, a alert.Alert, eps []subscribers.Endpoint, concurrency int) error {
	body, err := webhook.Payload(a, time.Now())
	if err != nil {
		return err
	}
	next := make(chan subscribers.Endpoint)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for ep := range next {
				d := webhook.Delivery{URL: ep.URL, Secrets: ep.SigningSecrets(time.Now()), MsgID: webhook.MessageID(a.ID, ep.ID), Body: body}
				if err := hooktest.Post(ctx, client, d); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, ep := range eps {
		next <- ep
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("bare client: %w", err)
	default:
		return nil
	}
}

// hookLatency publishes alerts one after another, each once the previous
// one reached every endpoint, and reports the time from the start of each
// publish to each request's arrival: the latency of a quiet system, not
// of a queue.
func hookLatency(ctx context.Context, out io.Writer, sys *benchSystem, farm *hookFarm, alerts int) error {
	n := len(farm.urls)
	fmt.Fprintf(out, "webhook latency: %d alerts one after another to %d endpoints, each published once the previous reached every endpoint\n", alerts, n)
	// One alert first, outside the measure, opens the connections.
	if _, err := sys.publish(ctx, 0); err != nil {
		return err
	}
	if err := farm.wait(ctx, int64(n)); err != nil {
		return err
	}
	farm.timed.Store(true)
	for i := 1; i <= alerts; i++ {
		got := farm.received.Load()
		a := alert.Alert{Headline: fmt.Sprintf("عاجل: انفجار قرب الميناء رقم %d", i)}.WithDefaults(time.Now())
		farm.mu.Lock()
		farm.published[a.ID] = time.Now()
		farm.mu.Unlock()
		if _, err := sys.pub.Publish(ctx, a); err != nil {
			return err
		}
		if err := farm.wait(ctx, got+int64(n)); err != nil {
			return err
		}
	}
	farm.mu.Lock()
	lat := slices.Clone(farm.latencies)
	farm.mu.Unlock()
	if len(lat) != alerts*n {
		return fmt.Errorf("%d latencies for %d deliveries", len(lat), alerts*n)
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[int(f*float64(len(lat)-1))] }
	p50, p99 := q(0.50), q(0.99)
	fmt.Fprintf(out, "publish to received  p50 %s  p99 %s  max %s over %d deliveries (targets p50 < %s: %s, p99 < %s: %s)\n",
		ms(p50), ms(p99), ms(q(1)), len(lat), ms(targetHookP50), verdict(p50 < targetHookP50), ms(targetHookP99), verdict(p99 < targetHookP99))
	fmt.Fprintf(out, "peak RSS      %s\n", mb(peakRSS("self")))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
