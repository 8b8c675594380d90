package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobpixel/jobpixel/geo"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// writeFlat builds a database in the ip-location-db flat layout, with the
// metadata those packages write.
func writeFlat(t *testing.T, dbType string, networks map[string]string) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		IPVersion:               6,
		RecordSize:              24,
		BuildEpoch:              1780345978,
		IncludeReservedNetworks: true, // documentation ranges
		DisableIPv4Aliasing:     true, // as in the real file
	})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, cc := range networks {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(n, mmdbtype.Map{"country_code": mmdbtype.String(cc)}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "flat.mmdb")
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

var flatNetworks = map[string]string{
	"8.8.8.0/24":      "US",
	"192.0.2.0/25":    "FR", // smaller than the /24 cache key
	"192.0.2.128/25":  "IT",
	"1.1.1.0/24":      "au", // upper-cased
	"5.0.0.0/8":       "X",  // malformed: skipped
	"2a00:1450::/32":  "DE",
	"2001::/32":       "NL", // Teredo: kept, not aliased to IPv4
	"2001:db8:1::/64": "CH",
}

func TestConvert(t *testing.T) {
	in := writeFlat(t, "country ipvAll", flatNetworks)
	if _, err := geo.Open(in); err == nil || !strings.Contains(err.Error(), "cmd/geodb") {
		t.Fatalf("geo.Open of the flat layout: %v, want a hint to convert", err)
	}
	out := filepath.Join(t.TempDir(), "out.mmdb")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := convert(in, out, "DBIP-Country-Lite")
	if err != nil {
		t.Fatal(err)
	}
	if st.networks != len(flatNetworks)-1 || st.skipped != 1 {
		t.Errorf("stats %+v", st)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != st.size {
		t.Errorf("out: %v, size %d, want %d", err, fi.Size(), st.size)
	}

	db, err := geo.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for addr, want := range map[string]string{
		"8.8.8.8":           "US",
		"::ffff:8.8.8.8":    "US",
		"192.0.2.1":         "FR",
		"192.0.2.200":       "IT",
		"1.1.1.1":           "AU",
		"5.5.5.5":           "",
		"9.9.9.9":           "",
		"2a00:1450:4001::1": "DE",
		"2001::1":           "NL",
		"2001:db8:1::1":     "CH",
		"2001:db8:2::1":     "",
	} {
		got := db.Lookup(netip.MustParseAddr(addr))
		if want == "" && !got.IsZero() || want != "" && string(got.Country[:]) != want || len(got.RegionCode()) != 0 {
			t.Errorf("Lookup(%s) = %q/%q, want %q", addr, got.Country, got.RegionCode(), want)
		}
	}

	// The layout and metadata, and the same networks as the source.
	r, err := geoip2.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	md := r.Metadata()
	if md.DatabaseType != "DBIP-Country-Lite" || md.IPVersion != 6 || md.RecordSize != 24 ||
		md.BuildEpoch != 1780345978 || !strings.Contains(md.Description["en"], `"country ipvAll"`) {
		t.Errorf("metadata %+v", md)
	}
	src, err := maxminddb.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	n := 0
	for res := range src.Networks() {
		var rec struct {
			CountryCode string `maxminddb:"country_code"`
		}
		if err := res.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		if len(rec.CountryCode) != 2 {
			continue
		}
		c, err := r.Country(res.Prefix().Addr())
		if err != nil || c.Country.ISOCode != strings.ToUpper(rec.CountryCode) || c.Traits.Network != res.Prefix() {
			t.Errorf("%v: converted %q in %v (%v), source %q", res.Prefix(), c.Country.ISOCode, c.Traits.Network, err, rec.CountryCode)
		}
		n++
	}
	if n != st.networks {
		t.Errorf("%d source networks with a country, %d converted", n, st.networks)
	}
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.mmdb")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := writeFlat(t, "country ipvAll", flatNetworks)
	notFlat := writeFlat(t, "country ipvAll", nil) // no country_code anywhere
	junk := filepath.Join(t.TempDir(), "junk.mmdb")
	if err := os.WriteFile(junk, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, dbType, want string }{
		{in, "DBIP-City-Lite", "must be a Country type"},
		{in, "My-Country", "unsupported database type"}, // geo.Open refuses it: out untouched
		{notFlat, "DBIP-Country-Lite", "not an ip-location-db country database"},
		{junk, "DBIP-Country-Lite", "open "},
		{filepath.Join(dir, "missing.mmdb"), "DBIP-Country-Lite", "no such file"},
	} {
		if _, err := convert(c.in, out, c.dbType); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("convert(%s, %s) = %v, want an error containing %q", filepath.Base(c.in), c.dbType, err, c.want)
		}
	}
	// Nothing replaced, no temporary file left.
	if b, err := os.ReadFile(out); err != nil || string(b) != "old" {
		t.Errorf("out changed: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the output directory, want 1", len(ents))
	}
}
