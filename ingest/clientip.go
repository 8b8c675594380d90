package ingest

import (
	"bytes"
	"net"
	"net/netip"
	"unsafe"
)

// clientIP returns the visitor's address: the socket peer, or — only when
// the peer is a trusted proxy — the right-most X-Forwarded-For entry that is
// not itself a trusted proxy. It does not allocate.
func clientIP(peer net.IP, xff []byte, trusted []netip.Prefix) netip.Addr {
	addr, _ := netip.AddrFromSlice(peer)
	addr = addr.Unmap()
	if len(xff) == 0 || !isTrusted(addr, trusted) {
		return addr
	}
	for len(xff) > 0 {
		i := bytes.LastIndexByte(xff, ',')
		part := bytes.TrimSpace(xff[i+1:])
		if i < 0 {
			xff = nil
		} else {
			xff = xff[:i]
		}
		a, ok := parseAddr(part)
		if !ok {
			return addr // a garbled chain: trust only what we saw
		}
		addr = a
		if !isTrusted(a, trusted) {
			return a
		}
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseAddr parses an IP address without copying b. Zoned addresses are
// refused (the zone would alias b).
func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 || bytes.IndexByte(b, '%') >= 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
