package anonymize

import (
	"errors"
	"fmt"
	"net/netip"
)

// The truncation defaults, which are also the most bits any setting may
// keep: an IPv4 address keeps its /24 network, an IPv6 address its /48.
const (
	MaxV4Bits = 24
	MaxV6Bits = 48
)

// ErrWeakTruncation reports a truncation setting that would keep more
// address bits than MaxV4Bits or MaxV6Bits.
var ErrWeakTruncation = errors.New("truncation keeps more bits than allowed")

// ErrNegativeBits reports a negative prefix length.
var ErrNegativeBits = errors.New("prefix length is negative")

// truncate returns the network address of a's prefix: the first v4Bits bits
// of an IPv4 address, or the first v6Bits bits of an IPv6 address, with all
// later bits zeroed and any zone dropped. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is treated as IPv4 and returned unmapped, as IPv4.
//
// truncate never keeps more than MaxV4Bits or MaxV6Bits: larger counts are
// lowered to those maxima and negative counts raised to 0 (NewTruncator
// rejects such settings; this is the second line of defence). The zero Addr
// gives the zero Addr. truncate does not allocate.
func truncate(a netip.Addr, v4Bits, v6Bits int) netip.Addr {
	if !a.IsValid() {
		return netip.Addr{}
	}
	a = a.Unmap()
	bits := clampBits(v6Bits, MaxV6Bits)
	if a.Is4() {
		bits = clampBits(v4Bits, MaxV4Bits)
	}
	p, err := a.Prefix(bits)
	if err != nil { // unreachable: bits is within [0, a.BitLen()]
		return netip.Addr{}
	}
	return p.Addr()
}

func clampBits(n, limit int) int {
	return min(max(n, 0), limit)
}

// Truncator applies a validated truncation setting. The zero Truncator
// truncates to the defaults, /24 for IPv4 and /48 for IPv6; NewTruncator
// builds stronger ones. A Truncator is a small value, safe to copy and to
// use from many goroutines.
type Truncator struct {
	// Bits dropped beyond the defaults, so that the zero value is the
	// default setting.
	v4Extra, v6Extra uint8
}

// NewTruncator returns a Truncator keeping v4Bits of IPv4 and v6Bits of
// IPv6 addresses. It returns an error wrapping ErrWeakTruncation if either
// keeps more than MaxV4Bits/MaxV6Bits, or ErrNegativeBits if either is
// negative: a configuration can make truncation stronger, never weaker.
func NewTruncator(v4Bits, v6Bits int) (Truncator, error) {
	if v4Bits < 0 || v6Bits < 0 {
		return Truncator{}, fmt.Errorf("truncate to /%d (ipv4) and /%d (ipv6): %w", v4Bits, v6Bits, ErrNegativeBits)
	}
	if v4Bits > MaxV4Bits {
		return Truncator{}, fmt.Errorf("truncate ipv4 to /%d, at most /%d: %w", v4Bits, MaxV4Bits, ErrWeakTruncation)
	}
	if v6Bits > MaxV6Bits {
		return Truncator{}, fmt.Errorf("truncate ipv6 to /%d, at most /%d: %w", v6Bits, MaxV6Bits, ErrWeakTruncation)
	}
	return Truncator{v4Extra: uint8(MaxV4Bits - v4Bits), v6Extra: uint8(MaxV6Bits - v6Bits)}, nil
}

// Bits returns the prefix lengths t keeps.
func (t Truncator) Bits() (v4Bits, v6Bits int) {
	return MaxV4Bits - int(t.v4Extra), MaxV6Bits - int(t.v6Extra)
}

// IP returns the network address of a's prefix of t's length: an IPv4
// address (also one mapped into IPv6, returned unmapped) keeps its first
// v4Bits, an IPv6 address its first v6Bits, any zone is dropped, and the
// zero Addr stays zero. It does not allocate.
func (t Truncator) IP(a netip.Addr) netip.Addr {
	v4, v6 := t.Bits()
	return truncate(a, v4, v6)
}
