// Package geo maps IP addresses to a country and region using a GeoIP2
// database (.mmdb), read with github.com/oschwald/geoip2-golang. It must be
// given the full address, before anonymize.Truncator truncates it; only the
// resulting codes are stored.
//
// Open accepts the database types geoip2 knows that carry a country: City
// types (GeoIP2-City, GeoLite2-City, DBIP-City-Lite, the Enterprise types…)
// are read with City, giving the country and the first subdivision as the
// region; Country types (GeoIP2-Country, GeoLite2-Country,
// DBIP-Country-Lite…) are read with Country. Other types (ASN, ISP…) are
// refused. The flat layout of the ip-location-db packages
// ({"country_code": "DE"}, which `make run`'s npm package ships) is refused
// too: cmd/geodb converts it to the GeoIP2 Country layout, and
// geo/fetch-db.sh does that for `make run` (see README.md).
//
// Lookups go through a fixed-size cache keyed by the address's /24 (IPv4)
// or /48 (IPv6) network, filled when the database answers for that whole
// network, so that steady-state lookups do not allocate. An address in a
// smaller network is cached by itself, under a randomly seeded 64-bit hash
// of the address (held in memory only, never the address): its first
// lookup allocates (geoip2 decodes the record), a repeated one does not.
package geo

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"

	"github.com/oschwald/geoip2-golang/v2"
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

// DB is an open database with its cache. Its methods are safe for
// concurrent use. A nil *DB is valid and knows nothing: it stands for "no
// database configured".
type DB struct {
	r        *geoip2.Reader
	city     bool // look up with City (else Country)
	v4Only   bool
	networks cache // by networkKey
	addrs    cache // by addrKey: addresses in networks smaller than the key
}

// Open opens the GeoIP2 database file at path, memory-mapping it. It
// refuses a database type without country data and, with a hint to convert
// it with cmd/geodb, a file in the flat ip-location-db layout.
func Open(path string) (*DB, error) {
	r, err := geoip2.Open(path)
	if err != nil {
		if r != nil { // geoip2.Open returns the open reader with an unknown type
			_ = r.Close()
		}
		var unknown geoip2.UnknownDatabaseTypeError
		if !errors.As(err, &unknown) {
			return nil, fmt.Errorf("open geo database %s: %w", path, err)
		}
		if isFlat(path) {
			return nil, fmt.Errorf("open geo database %s: database type %q is the flat ip-location-db layout "+
				`({"country_code": ...}), which the GeoIP2 reader cannot read; convert it with `+
				"`go run ./cmd/geodb convert %s OUT.mmdb` (geo/fetch-db.sh does this) and use OUT.mmdb",
				path, unknown.DatabaseType, path)
		}
		return nil, fmt.Errorf("open geo database %s: unsupported database type %q: "+
			"need a GeoIP2, GeoLite2 or DB-IP City or Country database", path, unknown.DatabaseType)
	}
	md := r.Metadata()
	db := &DB{r: r, v4Only: md.IPVersion == 4}
	switch t := md.DatabaseType; {
	case strings.Contains(t, "City"), strings.Contains(t, "Enterprise"):
		db.city = true
	case strings.Contains(t, "Country"):
	default:
		_ = r.Close()
		return nil, fmt.Errorf("open geo database %s: database type %q has no country data: "+
			"need a City or Country database", path, t)
	}
	return db, nil
}

// isFlat reports whether the MaxMind DB file at path has records in the
// ip-location-db flat layout, judging by its first record with data.
func isFlat(path string) bool {
	r, err := maxminddb.Open(path)
	if err != nil {
		return false
	}
	defer r.Close()
	for res := range r.Networks() {
		var rec struct {
			CountryCode string `maxminddb:"country_code"`
		}
		return res.Decode(&rec) == nil && rec.CountryCode != ""
	}
	return false
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
// the address's /24 or /48 network is cached; an address in a smaller
// database network is decoded every time.
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
	ak := addrKey(a)
	if v, ok := db.addrs.get(ak); ok {
		return unpack(v)
	}
	var (
		loc     Location
		network netip.Prefix
	)
	if db.city {
		c, err := db.r.City(a)
		if err != nil {
			return Location{}
		}
		region := ""
		if len(c.Subdivisions) > 0 {
			region = c.Subdivisions[0].ISOCode
		}
		loc, network = location(c.Country.ISOCode, region), c.Traits.Network
	} else {
		c, err := db.r.Country(a)
		if err != nil {
			return Location{}
		}
		loc, network = location(c.Country.ISOCode, ""), c.Traits.Network
	}
	// Cache by network only when the whole /24 or /48 shares this answer,
	// else by address.
	if network.IsValid() && network.Bits() <= keyBits {
		db.networks.put(key, pack(loc))
	} else {
		db.addrs.put(ak, pack(loc))
	}
	return loc
}

var addrSeed = maphash.MakeSeed()

// addrKey returns a's key in the address cache: a seeded hash, never 0.
func addrKey(a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(addrSeed, b[:]) | 1
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

// location validates and normalises a country code and a subdivision code.
// A malformed country gives the zero Location; a malformed region, none.
func location(country, region string) Location {
	var l Location
	if len(country) != 2 || !isAlpha(country[0]) || !isAlpha(country[1]) {
		return l
	}
	l.Country = [2]byte{upper(country[0]), upper(country[1])}
	if len(region) < 1 || len(region) > len(l.Region) {
		return l
	}
	for i := range len(region) {
		c := region[i]
		if !isAlpha(c) && !('0' <= c && c <= '9') {
			return Location{Country: l.Country}
		}
		l.Region[i] = upper(c)
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
