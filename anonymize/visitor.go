package anonymize

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
)

// SaltSize is the size of the daily visitor salt.
const SaltSize = 32

// NewSalt returns a fresh random salt for Visitor from crypto/rand.
func NewSalt() (salt [SaltSize]byte) {
	rand.Read(salt[:]) // never returns an error (Go ≥ 1.24); crashes the program if the OS fails
	return salt
}

// visitorDomain separates visitor ids from any other use of the same key.
const visitorDomain = "jobpixel visitor v1\x00"

// Visitor returns the cookieless visitor id of one hit: the first 16 bytes
// of HMAC-SHA256 (RFC 2104) keyed with salt over an unambiguous encoding of
// the full IP address, the user agent and the client id (any first-party
// id the page supplies; empty if none).
//
// The caller must use a fresh random salt (NewSalt) each day and destroy the
// previous one: while the salt exists the id is pseudonymous, and once it is
// gone ids cannot be recomputed from the inputs nor linked across days.
// A nil salt gives the zero id, which means "no visitor".
//
// The encoding is the domain string "jobpixel visitor v1\x00", one family
// byte (0 invalid, 4 IPv4, 6 IPv6), the 16-byte form of the address (IPv4
// and IPv4-mapped addresses give the same id; zones are ignored), then ua
// and client each preceded by its length as a big-endian uint64. Distinct
// (ip, ua, client) tuples therefore never hash the same message.
// Visitor does not allocate.
func Visitor(salt *[SaltSize]byte, ip netip.Addr, ua, client []byte) [16]byte {
	if salt == nil {
		return [16]byte{}
	}
	var pad [sha256.BlockSize]byte
	for i := range pad {
		pad[i] = 0x36
	}
	for i, b := range salt {
		pad[i] ^= b
	}
	h := sha256.New()
	h.Write(pad[:])

	var head [len(visitorDomain) + 1 + 16 + 8]byte
	n := copy(head[:], visitorDomain)
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		head[n] = 4
	case ip.Is6():
		head[n] = 6
	}
	n++
	a16 := ip.As16() // zero for the invalid Addr
	n += copy(head[n:], a16[:])
	binary.BigEndian.PutUint64(head[n:], uint64(len(ua)))
	h.Write(head[:])
	h.Write(ua)
	var l [8]byte
	binary.BigEndian.PutUint64(l[:], uint64(len(client)))
	h.Write(l[:])
	h.Write(client)
	var inner [sha256.Size]byte
	h.Sum(inner[:0])

	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	h.Reset()
	h.Write(pad[:])
	h.Write(inner[:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var id [16]byte
	copy(id[:], sum[:])
	return id
}
