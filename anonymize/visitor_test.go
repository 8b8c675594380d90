package anonymize

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"testing"
)

// visitorRef is the documented construction written with crypto/hmac.
func visitorRef(salt *[SaltSize]byte, ip netip.Addr, ua, client []byte) [16]byte {
	var m []byte
	m = append(m, "jobpixel visitor v1\x00"...)
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		m = append(m, 4)
	case ip.Is6():
		m = append(m, 6)
	default:
		m = append(m, 0)
	}
	a := ip.As16()
	m = append(m, a[:]...)
	m = binary.BigEndian.AppendUint64(m, uint64(len(ua)))
	m = append(m, ua...)
	m = binary.BigEndian.AppendUint64(m, uint64(len(client)))
	m = append(m, client...)
	h := hmac.New(sha256.New, salt[:])
	h.Write(m)
	var id [16]byte
	copy(id[:], h.Sum(nil))
	return id
}

func TestVisitor(t *testing.T) {
	salt := NewSalt()
	if salt == ([SaltSize]byte{}) {
		t.Fatal("NewSalt returned zeros")
	}
	ua := []byte("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0")
	ips := []netip.Addr{
		{},
		netip.MustParseAddr("203.0.113.77"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("fe80::1%eth0"),
	}
	for _, ip := range ips {
		for _, client := range [][]byte{nil, []byte("c-123")} {
			got := Visitor(&salt, ip, ua, client)
			if want := visitorRef(&salt, ip, ua, client); got != want {
				t.Errorf("Visitor(%v, %q) = %x, reference %x", ip, client, got, want)
			}
		}
	}

	ip := netip.MustParseAddr("203.0.113.77")
	base := Visitor(&salt, ip, ua, nil)
	if got := Visitor(&salt, netip.MustParseAddr("::ffff:203.0.113.77"), ua, nil); got != base {
		t.Error("IPv4-mapped address gives a different id than IPv4")
	}
	if got := Visitor(&salt, netip.MustParseAddr("203.0.113.78"), ua, nil); got == base {
		t.Error("id ignores the full address")
	}
	other := NewSalt()
	if got := Visitor(&other, ip, ua, nil); got == base {
		t.Error("id ignores the salt")
	}
	// Concatenation ambiguity: the same bytes split differently.
	if Visitor(&salt, ip, []byte("ab"), []byte("c")) == Visitor(&salt, ip, []byte("a"), []byte("bc")) {
		t.Error("(ua, client) boundary is ambiguous")
	}
	if Visitor(&salt, ip, []byte("abc"), nil) == Visitor(&salt, ip, nil, []byte("abc")) {
		t.Error("ua and client are interchangeable")
	}
	// 0.0.0.0 and :: and the zero Addr are three different inputs.
	z4 := Visitor(&salt, netip.IPv4Unspecified(), ua, nil)
	z6 := Visitor(&salt, netip.IPv6Unspecified(), ua, nil)
	zz := Visitor(&salt, netip.Addr{}, ua, nil)
	if z4 == z6 || z4 == zz || z6 == zz {
		t.Error("unspecified and zero addresses collide")
	}
	if got := Visitor(nil, ip, ua, nil); got != ([16]byte{}) {
		t.Errorf("nil salt gives %x, want zero id", got)
	}
}

func TestVisitorAllocs(t *testing.T) {
	salt := NewSalt()
	ip := netip.MustParseAddr("2001:db8::1")
	ua := bytes.Repeat([]byte("Mozilla/5.0 "), 20)
	client := []byte("client-id-123")
	var sink [16]byte
	if n := testing.AllocsPerRun(1000, func() {
		sink = Visitor(&salt, ip, ua, client)
	}); n != 0 {
		t.Fatalf("Visitor allocates %v times per call", n)
	}
	_ = sink
}

func BenchmarkVisitor(b *testing.B) {
	salt := NewSalt()
	ip := netip.MustParseAddr("203.0.113.77")
	ua := []byte("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	client := []byte("c-0123456789")
	b.ReportAllocs()
	for b.Loop() {
		_ = Visitor(&salt, ip, ua, client)
	}
}
