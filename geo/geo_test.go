package geo

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

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

// flat is a record in the ip-location-db layout.
func flat(country string) mmdbtype.Map {
	return mmdbtype.Map{"country_code": mmdbtype.String(country)}
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

func flatDB(t testing.TB, ipVersion int) string {
	nets := []network{
		{"8.8.8.0/24", flat("US")},
		{"1.1.1.0/24", flat("au")}, // lowercase is normalised
		{"5.0.0.0/8", flat("X")},   // malformed is ignored
	}
	if ipVersion == 6 {
		nets = append(nets, network{"2a02:2e0::/29", flat("DE")})
	}
	return writeDB(t, ipVersion, "dbip-country-lite", nets)
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
		"city":   open(t, cityDB(t)),
		"flat":   open(t, flatDB(t, 6)),
		"flat4":  open(t, flatDB(t, 4)),
		"nil-db": nil,
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

	f("flat", "8.8.8.8", loc("US", ""))
	f("flat", "::ffff:8.8.4.4", Location{})
	f("flat", "::ffff:8.8.8.9", loc("US", ""))
	f("flat", "1.1.1.1", loc("AU", ""))
	f("flat", "5.5.5.5", Location{})
	f("flat", "2a02:2e0:1234::1", loc("DE", ""))
	f("flat", "2a03::1", Location{})
	f("flat", "10.1.2.3", Location{})

	f("flat4", "8.8.8.8", loc("US", ""))
	f("flat4", "::ffff:8.8.8.8", loc("US", ""))
	f("flat4", "2a02:2e0::1", Location{})

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
}

var allocAddrs = []netip.Addr{
	netip.MustParseAddr("81.2.69.160"),
	netip.MustParseAddr("::ffff:81.2.69.1"),
	netip.MustParseAddr("192.0.2.1"),   // network smaller than /24: record cache
	netip.MustParseAddr("192.0.2.200"), // idem
	netip.MustParseAddr("2001:db8:1::1"),
	netip.MustParseAddr("2001:db8:2::1"), // network smaller than /48
	netip.MustParseAddr("203.0.113.1"),
	netip.MustParseAddr("8.8.8.8"), // not found
}

func TestLookupAllocs(t *testing.T) {
	db := open(t, cityDB(t))
	for _, a := range allocAddrs {
		db.Lookup(a)
	}
	if n := testing.AllocsPerRun(1000, func() {
		for _, a := range allocAddrs {
			db.Lookup(a)
		}
	}); n != 0 {
		t.Fatalf("warm Lookup allocates %v times per run", n)
	}
	// Addresses never seen before, in networks whose record is cached:
	// a tree walk and no decoding.
	var i uint32
	if n := testing.AllocsPerRun(1000, func() {
		i++
		db.Lookup(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		db.Lookup(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, byte(i >> 8), byte(i)}))
	}); n != 0 {
		t.Fatalf("Lookup with a cached record allocates %v times per run", n)
	}
}

func TestConcurrentLookup(t *testing.T) {
	db := open(t, cityDB(t))
	want := map[netip.Addr]Location{}
	for _, a := range allocAddrs {
		want[a] = db.Lookup(a)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 20000 {
				// Known addresses, and random ones that churn the caches.
				a := allocAddrs[r.IntN(len(allocAddrs))]
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

// TestRealDatabase checks a downloaded database (geo/fetch-db.sh) when
// JOBPIXEL_GEO_DB names it.
func TestRealDatabase(t *testing.T) {
	path := os.Getenv("JOBPIXEL_GEO_DB")
	if path == "" {
		t.Skip("JOBPIXEL_GEO_DB not set")
	}
	db := open(t, path)
	for addr, country := range map[string]string{"8.8.8.8": "US", "::ffff:8.8.8.8": "US", "1.1.1.1": "AU"} {
		if got := db.Lookup(netip.MustParseAddr(addr)); string(got.Country[:]) != country {
			t.Errorf("Lookup(%s) = %q, want %s", addr, got.Country, country)
		}
	}
	if got := db.Lookup(netip.MustParseAddr("10.0.0.1")); !got.IsZero() {
		t.Errorf("private address located in %q", got.Country)
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

func BenchmarkLookupRecordCached(b *testing.B) {
	// Every address is new to the network cache (networks smaller than the
	// /24 key): tree walk plus record cache.
	db := open(b, cityDB(b))
	var i byte
	b.ReportAllocs()
	for b.Loop() {
		i++
		db.Lookup(netip.AddrFrom4([4]byte{192, 0, 2, i}))
	}
}

func BenchmarkLookupUncached(b *testing.B) {
	// What a lookup costs when neither cache has the answer: tree walk and
	// record decoding.
	db := open(b, cityDB(b))
	a := netip.MustParseAddr("81.2.69.160")
	b.ReportAllocs()
	for b.Loop() {
		res := db.r.Lookup(a)
		var rec record
		if err := res.Decode(&rec); err != nil {
			b.Fatal(err)
		}
		_ = rec.location()
	}
}
