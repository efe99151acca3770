package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// defaultNATSURL is where `ajil dev` listens.
	defaultNATSURL = "nats://127.0.0.1:4222"
	// connectTimeout fails fast when an editor's NATS is down: the editor
	// should hear about it in seconds, not wait.
	connectTimeout = 3 * time.Second
)

// natsFlags are the connection flags shared by the commands that talk to NATS.
type natsFlags struct {
	url   string
	creds string
}

func (f *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "nats-url", defaultNATSURL, "NATS server `URL`(s), comma separated")
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials `file` (JWT and NKey seed)")
}

// connect opens a JetStream connection; an unreachable server exits 3 with
// a message that names the URL and says how to start one.
func (f *natsFlags) connect(name string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(connectTimeout)}
	if f.creds != "" {
		opts = append(opts, nats.UserCredentials(f.creds))
	}
	nc, err := nats.Connect(f.url, opts...)
	if err != nil {
		return nil, nil, &exitError{exitUnreachable, fmt.Errorf(
			"cannot reach NATS at %s: %w\n  start Ajil locally with `ajil dev`, or point --nats-url (AJIL_NATS_URL) at your server", f.url, err)}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
