package geo

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

type network struct {
	cidr   string
	record mmdbtype.Map
}

// writeDB builds a MaxMind DB in t.TempDir() and returns its path.
func writeDB(t testing.TB, ipVersion int, dbType string, networks []network) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		IPVersion:               ipVersion,
		RecordSize:              28,
		IncludeReservedNetworks: true, // the tests use documentation ranges
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range networks {
		_, ipnet, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(ipnet, n.record); err != nil {
			t.Fatalf("insert %s: %v", n.cidr, err)
		}
	}
	path := filepath.Join(t.TempDir(), dbType+".mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// city is a record in the GeoIP2 City layout.
func city(country string, regions ...string) mmdbtype.Map {
	subs := mmdbtype.Slice{}
	for _, r := range regions {
		subs = append(subs, mmdbtype.Map{"iso_code": mmdbtype.String(r), "geoname_id": mmdbtype.Uint32(1)})
	}
	m := mmdbtype.Map{
		"continent": mmdbtype.Map{"code": mmdbtype.String("EU")},
		"country": mmdbtype.Map{
			"iso_code": mmdbtype.String(country),
			"names":    mmdbtype.Map{"en": mmdbtype.String("Somewhere")},
		},
		"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("ZZ")},
	}
	if len(subs) > 0 {
		m["subdivisions"] = subs
	}
	return m
}

// flat is a record in the ip-location-db layout, which Open refuses.
func flat(country string) mmdbtype.Map {
	return mmdbtype.Map{"country_code": mmdbtype.String(country)}
}

// country is a record in the GeoIP2 Country layout.
func country(iso string) mmdbtype.Map {
	return mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(iso)}}
}

func cityDB(t testing.TB) string {
	return writeDB(t, 6, "GeoIP2-City", []network{
		{"81.2.69.0/24", city("GB", "ENG", "WBK")},
		{"192.0.2.0/25", city("US", "CA")},
		{"192.0.2.128/25", city("US", "NY")},
		{"198.51.100.0/24", city("FR")},
		{"203.0.113.0/24", mmdbtype.Map{"continent": mmdbtype.Map{"code": mmdbtype.String("AS")}}}, // no country
		{"100.64.0.0/10", city("NL", "TOOLONG")},
		{"2001:db8:1::/48", city("DE", "BY")},
		{"2001:db8:2::/64", city("AT", "9")},
		{"2001:db8:2:1::/64", city("CH", "ZH")},
	})
}

// countryDB is a Country database as cmd/geodb writes it (IPv6) or an
// IPv4-only one. Records with subdivisions show that Country lookups
// ignore them.
func countryDB(t testing.TB, ipVersion int) string {
	nets := []network{
		{"8.8.8.0/24", country("US")},
		{"1.1.1.0/24", country("au")}, // lowercase is normalised
		{"5.0.0.0/8", country("X")},   // malformed is ignored
		{"81.2.69.0/24", city("GB", "ENG")},
	}
	if ipVersion == 6 {
		nets = append(nets, network{"2a02:2e0::/29", country("DE")})
	}
	return writeDB(t, ipVersion, "DBIP-Country-Lite", nets)
}

// flatDB is a database in the ip-location-db layout, with the database
// type those packages write.
func flatDB(t testing.TB) string {
	return writeDB(t, 6, "country ipvAll", []network{
		{"8.8.8.0/24", flat("US")},
		{"2a02:2e0::/29", flat("DE")},
	})
}

func open(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func loc(country, region string) Location {
	var l Location
	copy(l.Country[:], country)
	copy(l.Region[:], region)
	return l
}

func TestLookup(t *testing.T) {
	dbs := map[string]*DB{
		"city":     open(t, cityDB(t)),
		"country":  open(t, countryDB(t, 6)),
		"country4": open(t, countryDB(t, 4)),
		"nil-db":   nil,
	}
	f := func(db, addr string, want Location) {
		t.Helper()
		var a netip.Addr
		if addr != "" {
			a = netip.MustParseAddr(addr)
		}
		// Three times: decoded, then from the caches.
		for i := range 3 {
			if got := dbs[db].Lookup(a); got != want {
				t.Errorf("%s: Lookup(%s) #%d = %q/%q, want %q/%q", db, addr, i, got.Country, got.RegionCode(), want.Country, want.RegionCode())
			}
		}
	}
	f("city", "81.2.69.160", loc("GB", "ENG"))
	f("city", "::ffff:81.2.69.161", loc("GB", "ENG"))
	f("city", "192.0.2.1", loc("US", "CA"))
	f("city", "192.0.2.200", loc("US", "NY"))
	f("city", "192.0.2.2", loc("US", "CA"))
	f("city", "198.51.100.7", loc("FR", ""))
	f("city", "203.0.113.9", Location{})
	f("city", "100.64.1.1", loc("NL", ""))
	f("city", "2001:db8:1:ffff::1", loc("DE", "BY"))
	f("city", "2001:db8:1::1%eth0", loc("DE", "BY"))
	f("city", "2001:db8:2::5", loc("AT", "9"))
	f("city", "2001:db8:2:1::5", loc("CH", "ZH"))
	f("city", "2001:db8:2:2::5", Location{})
	f("city", "8.8.8.8", Location{})
	f("city", "", Location{})

	f("country", "8.8.8.8", loc("US", ""))
	f("country", "::ffff:8.8.4.4", Location{})
	f("country", "::ffff:8.8.8.9", loc("US", ""))
	f("country", "1.1.1.1", loc("AU", ""))
	f("country", "5.5.5.5", Location{})
	f("country", "81.2.69.1", loc("GB", "")) // Country lookups have no region
	f("country", "2a02:2e0:1234::1", loc("DE", ""))
	f("country", "2a03::1", Location{})
	f("country", "10.1.2.3", Location{})

	f("country4", "8.8.8.8", loc("US", ""))
	f("country4", "::ffff:8.8.8.8", loc("US", ""))
	f("country4", "2a02:2e0::1", Location{})

	f("nil-db", "8.8.8.8", Location{})
}

func TestRegionCode(t *testing.T) {
	l := loc("GB", "ENG")
	if string(l.RegionCode()) != "ENG" {
		t.Errorf("RegionCode = %q", l.RegionCode())
	}
	l = loc("DE", "BY")
	if string(l.RegionCode()) != "BY" {
		t.Errorf("RegionCode = %q", l.RegionCode())
	}
	var zero Location
	if len(zero.RegionCode()) != 0 || !zero.IsZero() || l.IsZero() {
		t.Error("zero Location")
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing.mmdb"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.mmdb")
	if err := os.WriteFile(junk, []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk); err == nil {
		t.Error("junk file opened")
	}
	var db *DB
	if err := db.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}

	refused := func(path string, want ...string) {
		t.Helper()
		db, err := Open(path)
		if err == nil {
			db.Close()
			t.Fatalf("%s opened", path)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Open error %q does not mention %q", err, w)
			}
		}
	}
	// The flat ip-location-db layout, with a hint to convert it.
	refused(flatDB(t), `"country ipvAll"`, "flat ip-location-db layout", "go run ./cmd/geodb convert")
	// Types without country data, known to geoip2 or not.
	refused(writeDB(t, 6, "GeoLite2-ASN", []network{
		{"8.8.8.0/24", mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(15169)}},
	}), `"GeoLite2-ASN"`, "no country data")
	refused(writeDB(t, 6, "GeoIP2-Anonymous-IP", nil), `"GeoIP2-Anonymous-IP"`, "no country data")
	refused(writeDB(t, 6, "My-Own-City", []network{{"8.8.8.0/24", city("US")}}), `"My-Own-City"`, "unsupported database type")
	refused(writeDB(t, 6, "country", nil), `"country"`, "unsupported database type") // empty: not flat

	// An empty but valid GeoIP2 database opens and knows nothing.
	for _, typ := range []string{"GeoIP2-Country", "GeoLite2-City"} {
		db := open(t, writeDB(t, 6, typ, nil))
		if got := db.Lookup(netip.MustParseAddr("8.8.8.8")); !got.IsZero() {
			t.Errorf("empty %s: Lookup = %v", typ, got)
		}
	}
}

// TestCorruptDatabase opens truncated and bit-flipped copies of a valid
// database: errors, zero Locations, never a panic.
func TestCorruptDatabase(t *testing.T) {
	good, err := os.ReadFile(cityDB(t))
	if err != nil {
		t.Fatal(err)
	}
	addrs := append([]netip.Addr{netip.MustParseAddr("192.0.2.77")}, allocAddrs...)
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		b := append([]byte(nil), good...)
		if i%3 == 0 {
			b = b[:r.IntN(len(b))]
		} else {
			for range 1 + r.IntN(8) {
				b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("corrupt%d.mmdb", i))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := Open(path)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			db.Lookup(a)
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}
}

// allocAddrs are in networks of /24 or /48 or larger: cached by network.
var allocAddrs = []netip.Addr{
	netip.MustParseAddr("81.2.69.160"),
	netip.MustParseAddr("::ffff:81.2.69.1"),
	netip.MustParseAddr("198.51.100.7"),
	netip.MustParseAddr("100.64.1.1"),
	netip.MustParseAddr("2001:db8:1::1"),
	netip.MustParseAddr("203.0.113.1"), // no country
	netip.MustParseAddr("8.8.8.8"),     // not found
	netip.MustParseAddr("2001:db8:3::1"),
}

// smallAddrs are in networks smaller than /24 or /48: cached by address.
var smallAddrs = []netip.Addr{
	netip.MustParseAddr("192.0.2.1"),
	netip.MustParseAddr("192.0.2.200"),
	netip.MustParseAddr("2001:db8:2::1"),
}

func TestLookupAllocs(t *testing.T) {
	for name, path := range map[string]string{"city": cityDB(t), "country": countryDB(t, 6)} {
		db := open(t, path)
		for _, a := range allocAddrs {
			db.Lookup(a)
		}
		if n := testing.AllocsPerRun(1000, func() {
			for _, a := range allocAddrs {
				db.Lookup(a)
			}
		}); n != 0 {
			t.Errorf("%s: warm Lookup allocates %v times per run", name, n)
		}
		// New addresses in a cached /24 and /48 network.
		var i uint32
		if n := testing.AllocsPerRun(1000, func() {
			i++
			db.Lookup(netip.AddrFrom4([4]byte{81, 2, 69, byte(i)}))
			db.Lookup(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, byte(i >> 8), byte(i)}))
		}); n != 0 {
			t.Errorf("%s: Lookup in a cached network allocates %v times per run", name, n)
		}
	}
	// An address in a network smaller than the cache key is decoded once,
	// then cached by itself; a new one in the same small network is decoded.
	// The address cache is direct-mapped under a random seed, so two of
	// smallAddrs may share a slot and evict each other (about 1 run in
	// 1,400): each address is timed on its own.
	db := open(t, cityDB(t))
	for _, a := range smallAddrs {
		if n := testing.AllocsPerRun(1000, func() { db.Lookup(a) }); n != 0 {
			t.Errorf("repeated Lookup(%v) in a network smaller than /24 or /48 allocates %v times per run", a, n)
		}
	}
	var j byte
	if n := testing.AllocsPerRun(100, func() {
		j++
		db.Lookup(netip.AddrFrom4([4]byte{192, 0, 2, 100 + j%100}))
	}); n == 0 {
		t.Error("new addresses in a small network do not allocate: is the address cache keyed by network?")
	}
}

func TestConcurrentLookup(t *testing.T) {
	db := open(t, cityDB(t))
	addrs := append(append([]netip.Addr(nil), allocAddrs...), smallAddrs...)
	want := map[netip.Addr]Location{}
	for _, a := range addrs {
		want[a] = db.Lookup(a)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 20000 {
				// Known addresses, and random ones that churn the caches.
				a := addrs[r.IntN(len(addrs))]
				if got := db.Lookup(a); got != want[a] {
					t.Errorf("Lookup(%v) = %v under contention, want %v", a, got, want[a])
					return
				}
				db.Lookup(netip.AddrFrom4([4]byte{192, 0, byte(r.IntN(4)), byte(r.Uint32())}))
				db.Lookup(netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), 1}))
			}
		})
	}
	wg.Wait()
}

// realDB returns the path of a real database: $JOBPIXEL_GEO_DB, or the
// converted DB-IP file geo/fetch-db.sh installs for `make run`
// (.data/geo at the repository root), or "" if neither exists.
func realDB() string {
	if path := os.Getenv("JOBPIXEL_GEO_DB"); path != "" {
		return path
	}
	path := filepath.Join("..", ".data", "geo", "dbip-country-lite.mmdb")
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// TestRealDatabase checks a downloaded database (geo/fetch-db.sh), named by
// JOBPIXEL_GEO_DB or found where `make run` puts it.
func TestRealDatabase(t *testing.T) {
	path := realDB()
	if path == "" {
		t.Skip("no real database: set JOBPIXEL_GEO_DB or run geo/fetch-db.sh .data/geo")
	}
	db := open(t, path)
	t.Logf("%s: %s, built %v", path, db.r.Metadata().DatabaseType, time.Unix(int64(db.r.Metadata().BuildEpoch), 0).UTC())
	for addr, country := range map[string]string{
		"8.8.8.8":           "US",
		"::ffff:8.8.8.8":    "US",
		"1.1.1.1":           "AU",
		"2a00:1450:4001::1": "DE",
	} {
		// Twice: decoded, then cached.
		for range 2 {
			if got := db.Lookup(netip.MustParseAddr(addr)); string(got.Country[:]) != country {
				t.Errorf("Lookup(%s) = %q, want %s", addr, got.Country, country)
			}
		}
	}
	for _, addr := range []string{"10.0.0.1", "127.0.0.1", "fd00::1"} {
		if got := db.Lookup(netip.MustParseAddr(addr)); !got.IsZero() {
			t.Errorf("private address %s located in %q", addr, got.Country)
		}
	}
	// The npm file next to it, if there, is the flat layout: refused.
	flat := filepath.Join(filepath.Dir(path), "node_modules", "@ip-location-db", "dbip-country-mmdb", "dbip-country.mmdb")
	if _, err := os.Stat(flat); err == nil {
		if db, err := Open(flat); err == nil {
			db.Close()
			t.Errorf("%s (flat layout) opened", flat)
		} else if !strings.Contains(err.Error(), "cmd/geodb") {
			t.Errorf("flat layout refused without the conversion hint: %v", err)
		}
	}
}

func BenchmarkLookupCached(b *testing.B) {
	db := open(b, cityDB(b))
	a := netip.MustParseAddr("81.2.69.160")
	db.Lookup(a)
	b.ReportAllocs()
	for b.Loop() {
		db.Lookup(a)
	}
}

func BenchmarkLookupSmallNetwork(b *testing.B) {
	// 256 addresses in networks smaller than the /24 key: each is decoded
	// (a tree walk plus a geoip2 City decode) once, then cached by address.
	db := open(b, cityDB(b))
	var i byte
	b.ReportAllocs()
	for b.Loop() {
		i++
		db.Lookup(netip.AddrFrom4([4]byte{192, 0, 2, i}))
	}
}

func BenchmarkLookupUncached(b *testing.B) {
	// What a cache miss costs: a tree walk and a geoip2 decode.
	a := netip.MustParseAddr("81.2.69.160")
	b.Run("City", func(b *testing.B) {
		db := open(b, cityDB(b))
		b.ReportAllocs()
		for b.Loop() {
			c, err := db.r.City(a)
			if err != nil {
				b.Fatal(err)
			}
			_ = location(c.Country.ISOCode, c.Subdivisions[0].ISOCode)
		}
	})
	b.Run("Country", func(b *testing.B) {
		db := open(b, countryDB(b, 6))
		b.ReportAllocs()
		for b.Loop() {
			c, err := db.r.Country(a)
			if err != nil {
				b.Fatal(err)
			}
			_ = location(c.Country.ISOCode, "")
		}
	})
}

func BenchmarkLookupReal(b *testing.B) {
	// Random IPv4 addresses against the real database: "hot" cycles through
	// 1024 addresses, whose /24s fit in the 4096-entry cache (except those in
	// smaller networks); "cold" through 1M, nearly all cache misses.
	path := realDB()
	if path == "" {
		b.Skip("no real database")
	}
	db := open(b, path)
	for _, n := range []int{1 << 10, 1 << 20} {
		name := map[int]string{1 << 10: "hot", 1 << 20: "cold"}[n]
		b.Run(name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 4))
			addrs := make([]netip.Addr, n)
			for i := range addrs {
				addrs[i] = netip.AddrFrom4([4]byte{byte(1 + r.IntN(222)), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				db.Lookup(addrs[i%len(addrs)])
				i++
			}
		})
	}
}
