package subscribers

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/ajil-news/ajil/internal/redistest"
)

// benchWorkers is how many registrations are in flight at once, in both
// halves of BenchmarkRegister: an app backend calls the API concurrently.
const benchWorkers = 8

// parallel runs f(i) for i in [0, n) on benchWorkers goroutines and
// returns the elapsed time.
func parallel(b *testing.B, n int, f func(i int) error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchWorkers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkRegister measures device registrations per second through the
// HTTP API, then the same upsert script issued by a bare go-redis loop,
// and reports both and their ratio: what the HTTP layer costs.
func BenchmarkRegister(b *testing.B) {
	rdb := redistest.Start(b).Client()
	reg := New(rdb, Config{})
	key := GenerateKey()
	keys, err := ParseKeys("app:" + key)
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(NewAPI(reg, keys, APIConfig{RateLimit: rate.Inf}, slog.New(slog.DiscardHandler)))
	defer ts.Close()
	client := ts.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = benchWorkers
	const body = `{"platform":"android","lang":"ar","topics":["breaking","sports"],"region":"SA"}`
	ctx := b.Context()

	b.ResetTimer()
	apiTime := parallel(b, b.N, func(i int) error {
		req, _ := http.NewRequestWithContext(ctx, "PUT", fmt.Sprintf("%s/v1/devices/api-%d", ts.URL, i), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body) // read to the end so the connection is reused
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			return fmt.Errorf("register: %s", res.Status)
		}
		return nil
	})
	b.StopTimer()

	redisTime := parallel(b, b.N, func(i int) error {
		d, _ := Device{Token: fmt.Sprintf("direct-%d", i), Platform: PlatformAndroid, Lang: "ar", Topics: []string{"breaking", "sports"}, Region: "SA"}.normalize()
		keys, args := reg.upsertArgs(time.Now(), d)
		return reg.scripts.upsert.Run(ctx, rdb, keys, args...).Err()
	})

	apiRate, redisRate := float64(b.N)/apiTime.Seconds(), float64(b.N)/redisTime.Seconds()
	b.ReportMetric(float64(apiTime.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(apiRate, "api-reg/s")
	b.ReportMetric(redisRate, "redis-reg/s")
	b.ReportMetric(apiRate/redisRate, "api/redis")
}

// benchToken is as long as a real FCM registration token (163 bytes), so
// that page memory is realistic.
func benchToken(i int) string {
	return fmt.Sprintf("d%010d:APA91b", i) + strings.Repeat("x", 163-18)
}

// BenchmarkAudienceWalk walks an audience index page by page, as the
// dispatcher does, reporting tokens per second and the heap growth over
// the walk, which must stay under 50 MB whatever the audience size. The
// 1M case is skipped with -short.
func BenchmarkAudienceWalk(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			if n > 100_000 && testing.Short() {
				b.Skip("the 1M audience is skipped with -short")
			}
			rdb := redistest.Start(b).Client()
			reg := New(rdb, Config{})
			fillAudience(b, rdb, reg.audienceKey("breaking", "ar"), n)
			ctx := b.Context()

			var maxGrowth int64
			var walked int
			var allocs uint64
			b.ResetTimer()
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				count := 0
				var cur Cursor
				for {
					page, next, err := reg.Page(ctx, "breaking", "ar", cur, MaxPage)
					if err != nil {
						b.Fatal(err)
					}
					if len(page) == 0 {
						break
					}
					count += len(page)
					cur = next
				}
				runtime.ReadMemStats(&after)
				if count != n {
					b.Fatalf("walked %d tokens, want %d", count, n)
				}
				maxGrowth = max(maxGrowth, int64(after.HeapAlloc)-int64(before.HeapAlloc))
				allocs += after.TotalAlloc - before.TotalAlloc
				walked += count
			}
			b.StopTimer()
			b.ReportMetric(float64(walked)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(maxGrowth)/(1<<20), "heap-growth-MB")
			b.ReportMetric(float64(allocs)/float64(walked), "alloc-B/token")
			if maxGrowth > 50<<20 {
				b.Fatalf("heap grew by %d MB while walking, over 50 MB", maxGrowth>>20)
			}
		})
	}
}

// fillAudience puts n tokens into an index key with scores 1..n, ten
// thousand a command, pipelined: the index is all a walk reads.
func fillAudience(b *testing.B, rdb *redis.Client, key string, n int) {
	const perCmd, perPipe = 10_000, 10
	pipe := rdb.Pipeline()
	for start := 0; start < n; start += perCmd {
		zs := make([]redis.Z, 0, perCmd)
		for i := start; i < min(start+perCmd, n); i++ {
			zs = append(zs, redis.Z{Score: float64(i + 1), Member: benchToken(i)})
		}
		pipe.ZAdd(b.Context(), key, zs...)
		if pipe.Len() == perPipe {
			if _, err := pipe.Exec(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(b.Context()); err != nil {
		b.Fatal(err)
	}
}
