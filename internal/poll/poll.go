// Package poll waits in tests for a condition to hold, instead of sleeping
// and hoping (nats-server's checkFor).
package poll

import (
	"testing"
	"time"
)

// Interval is how often a condition is checked: short enough not to slow
// tests, long enough not to spin on a shared machine.
const Interval = 10 * time.Millisecond

// Until calls f until it returns nil, failing the test with f's last error
// when timeout passes.
func Until(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(Interval)
	}
}
