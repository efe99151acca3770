package natstest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// clusterName names every test cluster; clusters of different tests
	// never meet, each has its own ports.
	clusterName = "ajil-test"
	// clusterReadyTimeout covers a JetStream meta leader election on a
	// loaded CI machine: usually about a second, a few under -race.
	clusterReadyTimeout = 30 * time.Second
	// account is the account clients land in without authentication.
	account = server.DEFAULT_GLOBAL_ACCOUNT
)

// Cluster is a JetStream cluster of real nats-servers in this process,
// routed to each other on loopback, each with its store in a temporary
// directory, as deploy/ runs three of them in production.
type Cluster struct {
	t     testing.TB
	nodes []*node
}

// node is one server of a Cluster; its ports and store survive Kill, so
// Restart brings back the same member.
type node struct {
	name        string
	dir         string
	port        int
	clusterPort int
	ns          *server.Server
}

// StartCluster starts an n-node cluster and waits until JetStream has a
// meta leader that every node follows. It is shut down at test cleanup.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster of %d nodes", n)
	}
	c := &Cluster{t: t}
	base := t.TempDir()
	for i := range n {
		c.nodes = append(c.nodes, &node{
			name:        fmt.Sprintf("n%d", i),
			dir:         filepath.Join(base, fmt.Sprintf("n%d", i)),
			port:        freePort(t),
			clusterPort: freePort(t),
		})
	}
	t.Cleanup(c.Stop)
	for i := range c.nodes {
		c.start(i)
	}
	c.WaitReady()
	return c
}

// freePort returns a loopback port that was free a moment ago. A cluster
// needs its ports before any server starts, to list the routes.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	var routes []string
	for _, o := range c.nodes {
		if o != nd {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
		}
	}
	opts := &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       nd.port,
		JetStream:  true,
		StoreDir:   nd.dir,
		NoSigs:     true,
		NoLog:      true,
		Cluster:    server.ClusterOpts{Name: clusterName, Host: "127.0.0.1", Port: nd.clusterPort},
		Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		c.t.Fatalf("natstest: node %s: %v", nd.name, err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		c.t.Fatalf("natstest: node %s not ready on port %d", nd.name, nd.port)
	}
	nd.ns = ns
}

// WaitReady waits until every running node is routed to the others and
// follows one JetStream meta leader.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		err := c.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: cluster not ready within %s: %v", clusterReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) ready() error {
	running, leaders := 0, 0
	for _, nd := range c.nodes {
		if nd.ns != nil {
			running++
		}
	}
	for _, nd := range c.nodes {
		if nd.ns == nil {
			continue
		}
		if got := nd.ns.NumRoutes(); got < running-1 {
			return fmt.Errorf("node %s has %d routes, want %d", nd.name, got, running-1)
		}
		if !nd.ns.JetStreamIsCurrent() {
			return fmt.Errorf("node %s is not current with the meta leader", nd.name)
		}
		if nd.ns.JetStreamIsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d JetStream meta leaders", leaders)
	}
	return nil
}

// Len is the number of nodes, running or not.
func (c *Cluster) Len() int { return len(c.nodes) }

// URL is the client URL of node i.
func (c *Cluster) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].port) }

// URLs lists every node's client URL, node i first: a client given it
// connects to node i and fails over to the others.
func (c *Cluster) URLs(i int) string {
	urls := []string{c.URL(i)}
	for j := range c.nodes {
		if j != i {
			urls = append(urls, c.URL(j))
		}
	}
	return strings.Join(urls, ",")
}

// Conn returns a client connected to node i that fails over to the other
// nodes, closed at test cleanup.
func (c *Cluster) Conn(i int) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs(i), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		c.t.Fatalf("natstest: connect to node %d: %v", i, err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new connection to node i.
func (c *Cluster) JetStream(i int) jetstream.JetStream {
	c.t.Helper()
	js, err := jetstream.New(c.Conn(i))
	if err != nil {
		c.t.Fatalf("natstest: jetstream: %v", err)
	}
	return js
}

// StreamLeader is the index of the running node that leads stream, or -1
// while it has none.
func (c *Cluster) StreamLeader(stream string) int {
	for i, nd := range c.nodes {
		if nd.ns != nil && nd.ns.JetStreamIsStreamLeader(account, stream) {
			return i
		}
	}
	return -1
}

// WaitStreamLeader waits until stream has a leader and returns its index.
func (c *Cluster) WaitStreamLeader(stream string, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if i := c.StreamLeader(stream); i >= 0 {
			return i
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: stream %s has no leader after %s", stream, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitStreamCurrent waits until every running node's replica of stream
// has caught up with its leader.
func (c *Cluster) WaitStreamCurrent(stream string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		behind := ""
		for _, nd := range c.nodes {
			if nd.ns != nil && !nd.ns.JetStreamIsStreamCurrent(account, stream) {
				behind = nd.name
			}
		}
		if behind == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: node %s has not caught up on stream %s after %s", behind, stream, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill shuts node i down, as the loss of a machine looks to the rest of
// the cluster and to its clients; its store stays for Restart.
func (c *Cluster) Kill(i int) {
	nd := c.nodes[i]
	if nd.ns != nil {
		nd.ns.Shutdown()
		nd.ns.WaitForShutdown()
		nd.ns = nil
	}
}

// Restart starts node i again on its ports and store and waits until it
// has rejoined the cluster.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	c.start(i)
	c.WaitReady()
}

// Stop shuts every node down.
func (c *Cluster) Stop() {
	for i := range c.nodes {
		c.Kill(i)
	}
}
