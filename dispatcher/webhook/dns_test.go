package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// nameServer is an authoritative DNS server on loopback UDP answering from
// a fixed zone, so that tests resolve partner names without outside DNS.
type nameServer struct {
	zone    map[string][]netip.Addr // by lower-case name with the final dot
	queries atomic.Int64
}

// startNameServer serves zone until the test ends and returns a resolver
// that asks only it. Names outside zone are NXDOMAIN.
func startNameServer(t testing.TB, zone map[string][]string) (*nameServer, *net.Resolver) {
	t.Helper()
	ns := &nameServer{zone: map[string][]netip.Addr{}}
	for name, addrs := range zone {
		key := strings.ToLower(strings.TrimSuffix(name, ".")) + "."
		for _, a := range addrs {
			ns.zone[key] = append(ns.zone[key], netip.MustParseAddr(a))
		}
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := ns.answer(buf[:n]); err == nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	addr := pc.LocalAddr().String()
	return ns, &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

func (ns *nameServer) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	ns.queries.Add(1)
	addrs, known := ns.zone[strings.ToLower(q.Name.String())]
	rcode := dnsmessage.RCodeSuccess
	if !known {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: rcode})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func TestNameServer(t *testing.T) {
	ns, r := startNameServer(t, map[string][]string{"partner.test": {"10.0.0.7", "fd00::7"}})
	got, err := r.LookupNetIP(t.Context(), "ip", "partner.test")
	if err != nil || len(got) != 2 {
		t.Fatalf("lookup = %v, %v; want both addresses", got, err)
	}
	_, err = r.LookupNetIP(t.Context(), "ip", "unknown.test")
	if dnsErr := (*net.DNSError)(nil); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("lookup of an unknown name: %v, want not found", err)
	}
	if ns.queries.Load() == 0 {
		t.Fatal("the resolver did not ask the test name server")
	}
}
