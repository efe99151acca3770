package webhook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// DefaultResolveTimeout bounds CheckResolved's lookup when the caller's
// context has no earlier deadline: a registration request should not wait
// on a slow name server for longer than a user waits for a page.
const DefaultResolveTimeout = 5 * time.Second

// newGuardian returns the address classifier. The ssrf package denies the
// IANA special-purpose ranges: for IPv4 this-network, private, shared
// (CGNAT), loopback, link-local (169.254.169.254, the cloud metadata
// endpoint), multicast and reserved; for IPv6 everything outside global
// unicast 2000::/3 (loopback, unspecified, link-local, ULA, multicast, the
// IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96) and the special ranges
// inside it, Teredo and 6to4 among them.
func newGuardian(allowPrivate bool) *ssrf.Guardian {
	opts := []ssrf.Option{
		// Partners run endpoints on any port; the address is what matters.
		ssrf.WithAnyPort(),
		// Teredo and 6to4 embed an IPv4 address a relay would forward to.
		// The registry lists cover them today; they are pinned here so that
		// a narrower registry entry can never open a way to 127.0.0.1.
		ssrf.WithDeniedV6Prefixes(
			netip.MustParsePrefix("2001::/32"),
			netip.MustParsePrefix("2002::/16"),
		),
	}
	if allowPrivate {
		opts = append(opts,
			ssrf.WithAllowedV4Prefixes(
				netip.MustParsePrefix("127.0.0.0/8"),
				netip.MustParsePrefix("10.0.0.0/8"),
				netip.MustParsePrefix("172.16.0.0/12"),
				netip.MustParsePrefix("192.168.0.0/16"),
			),
			ssrf.WithAllowedV6Prefixes(
				netip.MustParsePrefix("::1/128"),
				netip.MustParsePrefix("fc00::/7"),
			),
		)
	}
	return ssrf.New(opts...)
}

// DialControl returns a net.Dialer Control function that refuses, before
// any packet is sent, to connect to an address a partner endpoint must not
// reach. It runs on the address the name resolved to, so a name that
// resolves to an internal address, at registration or only later (DNS
// rebinding), is refused all the same. allowPrivate opens loopback and the
// private ranges, for development and tests; link-local stays closed.
// Refusals wrap ErrForbiddenAddress.
func DialControl(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	g := newGuardian(allowPrivate)
	return func(network, address string, c syscall.RawConn) error {
		if err := g.Safe(network, address, c); err != nil {
			return fmt.Errorf("%w: %w", ErrForbiddenAddress, err)
		}
		return nil
	}
}

// CheckURL reports why raw cannot be registered as an endpoint, without
// any network access: it must be an https URL (or http with allowHTTP),
// without credentials, whose host is not a forbidden address in any
// notation (127.0.0.1, [::1], [::ffff:127.0.0.1], 0x7f000001, 2130706433,
// 017700000001, 127.1) and not a name of this machine (localhost). Other
// names are checked where they are dialed, and by CheckResolved. Errors wrap
// ErrForbiddenAddress or ErrInvalidURL.
func CheckURL(raw string, allowHTTP, allowPrivate bool) error {
	_, err := checkURL(raw, allowHTTP, allowPrivate, newGuardian(allowPrivate))
	return err
}

// CheckResolved is CheckURL followed by resolving the host with r (nil
// means net.DefaultResolver) and refusing it if any of its addresses is
// forbidden, so that registration can say so at once. A name that does not
// resolve is an error too, not wrapping ErrForbiddenAddress.
func CheckResolved(ctx context.Context, r *net.Resolver, raw string, allowHTTP, allowPrivate bool) error {
	g := newGuardian(allowPrivate)
	host, err := checkURL(raw, allowHTTP, allowPrivate, g)
	if err != nil || host == "" {
		return err
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultResolveTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("webhook url: resolve %q: %w", host, err)
	}
	for _, a := range addrs {
		// The dialer connects to a mapped IPv4 address as plain IPv4.
		if err := g.SafeAddr(a.Unmap()); err != nil {
			return fmt.Errorf("%w: %q resolves to %s (%w); register a name that resolves to public addresses only", ErrForbiddenAddress, host, a.Unmap(), err)
		}
	}
	return nil
}

// checkURL does CheckURL's work with a prepared guardian and returns the
// host name still to be resolved, or "" when the host is an address.
func checkURL(raw string, allowHTTP, allowPrivate bool, g *ssrf.Guardian) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %v; give the endpoint's full address, e.g. https://partner.example/hooks/ajil", ErrInvalidURL, err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP {
			return "", fmt.Errorf("%w: %q uses http; use https:// so the alert and its signature are not sent in the clear", ErrInvalidURL, u.Redacted())
		}
	default:
		return "", fmt.Errorf("%w: %q is not an https URL; give the endpoint's full address, e.g. https://partner.example/hooks/ajil", ErrInvalidURL, u.Redacted())
	}
	if u.User != nil {
		return "", fmt.Errorf("%w: %q carries credentials; remove the user:password@ part, requests are authenticated by their signature", ErrInvalidURL, u.Redacted())
	}
	host := u.Hostname()
	if host == "" {
		return "", fmt.Errorf("%w: %q has no host; give the endpoint's full address, e.g. https://partner.example/hooks/ajil", ErrInvalidURL, u.Redacted())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%w: port %q is not 1 to 65535", ErrInvalidURL, p)
		}
	}

	addr, err := netip.ParseAddr(host)
	switch {
	case err == nil:
	case endsInNumber(host):
		// Resolvers that follow inet_aton, as glibc's does, read 2130706433,
		// 0x7f000001, 017700000001 and 127.1 as 127.0.0.1; so do browsers.
		var ok bool
		if addr, ok = parseIPv4(host); !ok {
			return "", fmt.Errorf("%w: host %q is neither a name nor an IPv4 address", ErrInvalidURL, host)
		}
	default:
		if !allowPrivate && isLocalName(host) {
			return "", fmt.Errorf("%w: host %q names this machine; register an address on the public internet", ErrForbiddenAddress, host)
		}
		return host, nil
	}
	if err := g.SafeAddr(addr); err != nil {
		return "", fmt.Errorf("%w: host %q (%w); register an address on the public internet", ErrForbiddenAddress, host, err)
	}
	return "", nil
}

// isLocalName reports whether host is one of the names that resolve to
// loopback on their own: localhost and its subdomains (RFC 6761) and the
// aliases Linux distributions put in /etc/hosts.
func isLocalName(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	switch h {
	case "localhost", "localhost.localdomain", "localhost4", "localhost4.localdomain4",
		"localhost6", "localhost6.localdomain6", "ip6-localhost", "ip6-loopback":
		return true
	}
	return strings.HasSuffix(h, ".localhost")
}

// endsInNumber reports whether the WHATWG URL standard parses host as an
// IPv4 address: its last label is a number.
func endsInNumber(host string) bool {
	labels := strings.Split(host, ".")
	if labels[len(labels)-1] == "" {
		if len(labels) == 1 {
			return false
		}
		labels = labels[:len(labels)-1]
	}
	last := labels[len(labels)-1]
	if last != "" && strings.Trim(last, "0123456789") == "" {
		return true
	}
	_, ok := parseIPv4Number(last)
	return ok
}

// parseIPv4 parses host the way the WHATWG URL standard and inet_aton do:
// one to four dot-separated numbers in decimal, octal (leading 0) or hex
// (0x), the last filling the remaining bytes.
func parseIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(host, ".")
	if parts[len(parts)-1] == "" && len(parts) > 1 {
		parts = parts[:len(parts)-1]
	}
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		n, ok := parseIPv4Number(p)
		if !ok {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, false
			}
			v |= n << (8 * (3 - i))
			continue
		}
		if n >= 1<<(8*(5-len(parts))) {
			return netip.Addr{}, false
		}
		v |= n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseIPv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(s, base, 64)
	return n, err == nil
}
