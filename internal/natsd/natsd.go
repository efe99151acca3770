// Package natsd runs the real nats-server, with JetStream, inside the Ajil
// process: the storage of `ajil dev` and of the tests.
package natsd

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

const (
	// DefaultHost keeps the embedded server off the network: it is for one
	// developer's machine.
	DefaultHost = "127.0.0.1"
	// DefaultPort is the standard NATS client port, so `nats` tools find it.
	DefaultPort = 4222
	// DefaultReadyTimeout covers JetStream recovering a large store on start.
	DefaultReadyTimeout = 30 * time.Second
)

// Config says where the embedded server listens and stores.
type Config struct {
	Host    string // listen address; DefaultHost when empty
	Port    int    // listen port; -1 picks a free one
	DataDir string // JetStream store directory; required
	// SyncAlways fsyncs every write, so an alert acknowledged to the editor
	// survives a power cut, not only a process crash.
	SyncAlways   bool
	ServerName   string
	ReadyTimeout time.Duration
	Logger       *slog.Logger // nats-server's notices and errors; nil for none
}

// Start starts an embedded nats-server with JetStream and waits until it
// accepts connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("start nats: no data directory")
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(logger{cfg.Logger}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(cfg.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("start nats: not ready on %s:%d within %s", cfg.Host, cfg.Port, cfg.ReadyTimeout)
	}
	return ns, nil
}

// logger adapts slog to nats-server's logger interface.
type logger struct{ l *slog.Logger }

func (g logger) Noticef(format string, v ...any) {
	g.l.Info(fmt.Sprintf(format, v...), "component", "nats")
}
func (g logger) Warnf(format string, v ...any) {
	g.l.Warn(fmt.Sprintf(format, v...), "component", "nats")
}
func (g logger) Fatalf(format string, v ...any) {
	g.l.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (g logger) Errorf(format string, v ...any) {
	g.l.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (g logger) Debugf(format string, v ...any) {
	g.l.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
func (g logger) Tracef(format string, v ...any) {}
