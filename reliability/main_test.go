package reliability_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ajil-news/ajil/internal/proctest"
)

// ajilBin is the ajil binary, built once, for the scenarios that need a
// real process to kill.
var ajilBin string

func TestMain(m *testing.M) {
	bin, remove, err := proctest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ajilBin = bin
	// Every in-process dispatcher, server and client a scenario started
	// must be gone when the suite ends.
	goleak.VerifyTestMain(m, append(leakOptions(),
		goleak.Cleanup(func(code int) { remove(); os.Exit(code) }))...)
}

// leakOptions are the goroutines that may outlive a test or the suite.
func leakOptions() []goleak.Option {
	return []goleak.Option{
		// HTTP/2 and HTTP/1 client connections of the firebase SDK and the
		// webhook sender, and go-redis pools, wind down asynchronously
		// after Close.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
	}
}

// noLeaks fails t if goroutines it started outlive it, once every cleanup
// has run: each in-process scenario must leave nothing running, as a
// replica that meets the same failure a thousand times must not grow. Call
// it first, so that its check runs after the other cleanups.
func noLeaks(t *testing.T) {
	opts := append(leakOptions(), goleak.IgnoreCurrent())
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}
