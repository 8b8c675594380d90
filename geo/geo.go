// Package geo maps IP addresses to a country and region using a MaxMind DB
// (.mmdb) file. It must be given the full address, before anonymize.IP
// truncates it; only the resulting codes are stored.
//
// Two record layouts are understood, and may be mixed in one file:
// MaxMind's GeoIP2/GeoLite2 Country and City layout (country.iso_code,
// subdivisions[0].iso_code) and the flat layout of the ip-location-db
// databases (country_code), which is what `make run` ships (see README.md).
//
// Lookups go through two fixed-size caches, keyed by the address's /24
// (IPv4) or /48 (IPv6) network and by database record, so that steady-state
// lookups do not allocate.
package geo

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Location is the coarse location of an address. The zero Location means
// unknown.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code in upper case ("DE"), or zero.
	Country [2]byte
	// Region is the subdivision part of the ISO 3166-2 code ("BY" of
	// DE-BY, "ENG" of GB-ENG) in upper case, padded with zero bytes, or
	// zero. Only City databases have it.
	Region [3]byte
}

// IsZero reports whether l is unknown.
func (l Location) IsZero() bool { return l == Location{} }

// RegionCode returns Region without its padding, as a sub-slice of l
// (empty if there is no region).
func (l *Location) RegionCode() []byte {
	n := 0
	for n < len(l.Region) && l.Region[n] != 0 {
		n++
	}
	return l.Region[:n]
}

// DB is an open database with its caches. Its methods are safe for
// concurrent use. A nil *DB is valid and knows nothing: it stands for "no
// database configured".
type DB struct {
	r        *maxminddb.Reader
	v4Only   bool
	networks cache // by networkKey
	records  cache // by record offset
}

// Open opens the MaxMind DB file at path, memory-mapping it.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open geo database %s: %w", path, err)
	}
	return &DB{r: r, v4Only: r.Metadata.IPVersion == 4}, nil
}

// Close releases the database. No Lookup may run during or after Close.
// Closing a nil *DB does nothing.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	if err := db.r.Close(); err != nil {
		return fmt.Errorf("close geo database: %w", err)
	}
	return nil
}

// Lookup returns the location of a, which must be the full address. An
// IPv4-mapped IPv6 address is looked up as IPv4 and a zone is ignored. The
// zero Addr, an address the database does not cover, a nil *DB and a
// database error all give the zero Location. Lookup does not allocate when
// the address's network or record is cached.
func (db *DB) Lookup(a netip.Addr) Location {
	if db == nil || !a.IsValid() {
		return Location{}
	}
	a = a.Unmap().WithZone("")
	if db.v4Only && !a.Is4() {
		return Location{}
	}
	key, keyBits := networkKey(a)
	if v, ok := db.networks.get(key); ok {
		return unpack(v)
	}
	res := db.r.Lookup(a)
	if res.Err() != nil {
		return Location{}
	}
	var loc Location
	if res.Found() {
		off := uint64(res.Offset())<<1 | 1 // never 0, the empty-slot key
		if v, ok := db.records.get(off); ok {
			loc = unpack(v)
		} else {
			var rec record
			if err := res.Decode(&rec); err != nil {
				return Location{}
			}
			loc = rec.location()
			db.records.put(off, pack(loc))
		}
	}
	// Cache by network only when the whole /24 or /48 shares this answer.
	if res.Prefix().Bits() <= keyBits {
		db.networks.put(key, pack(loc))
	}
	return loc
}

// networkKey returns a's cache key, its /24 or /48 network tagged with the
// address family, and the number of address bits it covers.
func networkKey(a netip.Addr) (key uint64, bits int) {
	if a.Is4() {
		b := a.As4()
		return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | 4, 24
	}
	b := a.As16()
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | 6, 48
}

// record holds the fields of both supported layouts.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
	CountryCode string `maxminddb:"country_code"`
}

func (r *record) location() Location {
	var l Location
	cc := r.Country.ISOCode
	if cc == "" {
		cc = r.CountryCode
	}
	if len(cc) != 2 || !isAlpha(cc[0]) || !isAlpha(cc[1]) {
		return l
	}
	l.Country = [2]byte{upper(cc[0]), upper(cc[1])}
	if len(r.Subdivisions) > 0 {
		rc := r.Subdivisions[0].ISOCode
		if len(rc) >= 1 && len(rc) <= len(l.Region) {
			for i := range len(rc) {
				c := rc[i]
				if !isAlpha(c) && !('0' <= c && c <= '9') {
					return Location{Country: l.Country}
				}
				l.Region[i] = upper(c)
			}
		}
	}
	return l
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// pack and unpack store a Location in a cache word.
func pack(l Location) uint64 {
	return uint64(l.Country[0])<<32 | uint64(l.Country[1])<<24 |
		uint64(l.Region[0])<<16 | uint64(l.Region[1])<<8 | uint64(l.Region[2])
}

func unpack(v uint64) Location {
	return Location{
		Country: [2]byte{byte(v >> 32), byte(v >> 24)},
		Region:  [3]byte{byte(v >> 16), byte(v >> 8), byte(v)},
	}
}
