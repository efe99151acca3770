// Package proctest builds the ajil binary and runs it as a subprocess, for
// end-to-end tests of what an editor or operator actually runs.
package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles the ajil command into a new temporary directory and
// returns the binary's path and a function that removes it. Call it once
// from TestMain: linking takes seconds.
func Build() (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "ajil-bin")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "ajil")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/ajil-news/ajil/cmd/ajil")
	if out, err := cmd.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("build ajil: %w\n%s", err, out)
	}
	return bin, remove, nil
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs bin to completion with args and extra environment entries
// ("KEY=value"), failing the test if it cannot start or runs over a minute.
func Run(t testing.TB, bin string, env []string, args ...string) Result {
	t.Helper()
	p := Start(t, bin, env, args...)
	code := p.Wait(t, time.Minute)
	return Result{Stdout: p.Stdout(), Stderr: p.Stderr(), Code: code}
}

// Proc is a running ajil process, killed at test cleanup if still running.
type Proc struct {
	cmd    *exec.Cmd
	stdout buffer
	stderr buffer
	done   chan struct{}
	err    error
}

// Start starts bin with args; the process does not inherit AJIL_*
// variables from the test's environment, only env.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("proctest: start %s: %v", bin, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s %s\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), p.Stdout(), p.Stderr())
		}
	})
	return p
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AJIL_") {
			env = append(env, kv)
		}
	}
	return env
}

// Stdout is everything the process wrote to stdout so far.
func (p *Proc) Stdout() string { return p.stdout.String() }

// Stderr is everything the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// WaitOutput waits until stdout or stderr contains s.
func (p *Proc) WaitOutput(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stdout(), s) && !strings.Contains(p.Stderr(), s) {
		select {
		case <-p.done:
			t.Fatalf("process exited (%v) before printing %q", p.err, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("process did not print %q within %s", s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("proctest: signal: %v", err)
	}
}

// Wait waits for the process to exit and returns its exit code; it fails
// the test after timeout.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("process did not exit within %s", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("proctest: wait: %v", p.err)
	}
	return 0
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proctest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// buffer is a bytes.Buffer safe to read while the process writes.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
