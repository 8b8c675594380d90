package ingest

import (
	"net"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	f := func(peer, xff, want string) {
		t.Helper()
		got := clientIP(net.ParseIP(peer), []byte(xff), trusted)
		if got.String() != want {
			t.Errorf("clientIP(%s, %q) = %s, want %s", peer, xff, got, want)
		}
	}
	f("203.0.113.9", "", "203.0.113.9")
	f("203.0.113.9", "198.51.100.1", "203.0.113.9")                  // untrusted peer: header ignored
	f("10.1.2.3", "198.51.100.1", "198.51.100.1")                    // trusted proxy
	f("10.1.2.3", "198.51.100.1, 10.9.9.9", "198.51.100.1")          // right-most untrusted
	f("10.1.2.3", "6.6.6.6, 198.51.100.1, 10.9.9.9", "198.51.100.1") // a spoofed left part is not believed
	f("10.1.2.3", "garbage, 10.9.9.9", "10.9.9.9")                   // garbled chain: stop at what we can trust
	f("::1", "2001:db8::5", "2001:db8::5")
	f("10.1.2.3", "fe80::1%eth0", "10.1.2.3") // zoned addresses refused
	f("::ffff:203.0.113.9", "", "203.0.113.9")
}

func TestClientIPAllocs(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	peer, xff := net.ParseIP("10.1.2.3"), []byte("198.51.100.1, 10.9.9.9")
	if n := testing.AllocsPerRun(1000, func() { clientIP(peer, xff, trusted) }); n != 0 {
		t.Fatalf("clientIP allocates %.1f times", n)
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add([]byte("198.51.100.1, 10.9.9.9"))
	f.Add([]byte("::1,,"))
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, xff []byte) {
		a := clientIP(net.ParseIP("10.1.2.3"), xff, trusted)
		if !a.IsValid() {
			t.Fatalf("invalid address for %q", xff)
		}
	})
}
