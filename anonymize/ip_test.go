package anonymize

import (
	"errors"
	"net/netip"
	"testing"
)

func TestIP(t *testing.T) {
	f := func(in string, v4, v6 int, want string) {
		t.Helper()
		var a netip.Addr
		if in != "" {
			a = netip.MustParseAddr(in)
		}
		got := truncate(a, v4, v6)
		if want == "" {
			if got.IsValid() {
				t.Errorf("truncate(%q, %d, %d) = %v, want zero Addr", in, v4, v6, got)
			}
			return
		}
		if got != netip.MustParseAddr(want) {
			t.Errorf("truncate(%q, %d, %d) = %v, want %v", in, v4, v6, got, want)
		}
	}
	f("", 24, 48, "")
	f("203.0.113.77", 24, 48, "203.0.113.0")
	f("203.0.113.77", 16, 48, "203.0.0.0")
	f("203.0.113.77", 0, 48, "0.0.0.0")
	f("203.0.113.77", 32, 48, "203.0.113.0") // clamped, never weaker
	f("203.0.113.77", -5, 48, "0.0.0.0")
	f("::ffff:203.0.113.77", 24, 48, "203.0.113.0") // mapped is IPv4
	f("::ffff:203.0.113.77", 24, 128, "203.0.113.0")
	f("2001:db8:abcd:1234:5678::1", 24, 48, "2001:db8:abcd::")
	f("2001:db8:abcd:1234:5678::1", 24, 32, "2001:db8::")
	f("2001:db8:abcd:1234:5678::1", 24, 128, "2001:db8:abcd::") // clamped
	f("fe80::1:2:3:4%eth0", 24, 48, "fe80::")                   // zone dropped
	f("::1", 24, 48, "::")
}

func TestTruncator(t *testing.T) {
	var zero Truncator
	if v4, v6 := zero.Bits(); v4 != 24 || v6 != 48 {
		t.Fatalf("zero Truncator keeps /%d and /%d, want /24 and /48", v4, v6)
	}
	a := netip.MustParseAddr("198.51.100.200")
	if got := zero.IP(a); got != netip.MustParseAddr("198.51.100.0") {
		t.Errorf("zero.IP = %v", got)
	}
	tr, err := NewTruncator(16, 32)
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.IP(a); got != netip.MustParseAddr("198.51.0.0") {
		t.Errorf("tr.IP = %v", got)
	}
	if got := tr.IP(netip.MustParseAddr("2001:db8:1:2::1")); got != netip.MustParseAddr("2001:db8::") {
		t.Errorf("tr.IP v6 = %v", got)
	}
	for _, c := range []struct {
		v4, v6 int
		err    error
	}{
		{25, 48, ErrWeakTruncation},
		{32, 48, ErrWeakTruncation},
		{24, 49, ErrWeakTruncation},
		{24, 64, ErrWeakTruncation},
		{-1, 48, ErrNegativeBits},
		{24, -1, ErrNegativeBits},
		{24, 48, nil},
		{0, 0, nil},
	} {
		_, err := NewTruncator(c.v4, c.v6)
		if !errors.Is(err, c.err) {
			t.Errorf("NewTruncator(%d, %d) error = %v, want %v", c.v4, c.v6, err, c.err)
		}
	}
}

func TestIPAllocs(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("203.0.113.77"),
		netip.MustParseAddr("::ffff:203.0.113.77"),
		netip.MustParseAddr("2001:db8:abcd:1234::1"),
		netip.MustParseAddr("fe80::1%eth0"),
	}
	var tr Truncator
	if n := testing.AllocsPerRun(1000, func() {
		for _, a := range addrs {
			_ = tr.IP(a)
		}
	}); n != 0 {
		t.Fatalf("IP allocates %v times per run", n)
	}
}

func BenchmarkIP(b *testing.B) {
	a4 := netip.MustParseAddr("203.0.113.77")
	a6 := netip.MustParseAddr("2001:db8:abcd:1234::1")
	var tr Truncator
	b.ReportAllocs()
	for b.Loop() {
		_ = tr.IP(a4)
		_ = tr.IP(a6)
	}
}
