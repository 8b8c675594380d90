package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobpixel/jobpixel/geo"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"
)

// stats describes a conversion.
type stats struct {
	networks int   // networks written
	skipped  int   // networks without a valid country code, left out
	size     int64 // bytes written
}

// convert writes the networks of the flat ip-location-db country database
// in to out, in the GeoIP2 Country layout with database type dbType, an IPv6
// tree (IPv4 in ::/96, no aliases) and 24-bit records. out is replaced
// atomically, and only after geo.Open has accepted the new file.
func convert(in, out, dbType string) (st stats, err error) {
	if !strings.Contains(dbType, "Country") {
		return st, fmt.Errorf("database type %q: must be a Country type (e.g. DBIP-Country-Lite)", dbType)
	}
	r, err := maxminddb.Open(in)
	if err != nil {
		return st, fmt.Errorf("open %s: %w", in, err)
	}
	defer r.Close()
	md := r.Metadata
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType,
		Description: map[string]string{"en": fmt.Sprintf(
			"%s, GeoIP2 Country layout, converted by jobpixel cmd/geodb from %s (ip-location-db flat layout, database type %q)",
			dbType, filepath.Base(in), md.DatabaseType)},
		BuildEpoch: int64(md.BuildEpoch), // the data's date, and a reproducible output
		IPVersion:  6,
		RecordSize: 24,
		// Copy what the source has, no more, no less: it has data of its own
		// for Teredo (2001::/32), which mmdbwriter would alias to IPv4, and
		// no ::ffff:0:0/96 alias (geo.Lookup unmaps those addresses itself).
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     true,
		KeyGenerator:            countryKey{},
	})
	if err != nil {
		return st, err
	}
	values := map[string]mmdbtype.Map{} // one value per country: small data section
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return st, fmt.Errorf("read %s: %w", in, err)
		}
		var rec struct {
			CountryCode string `maxminddb:"country_code"`
		}
		if err := res.Decode(&rec); err != nil {
			return st, fmt.Errorf("read %s: network %v: %w", in, res.Prefix(), err)
		}
		cc := strings.ToUpper(rec.CountryCode)
		if !isCountryCode(cc) {
			st.skipped++
			continue
		}
		v, ok := values[cc]
		if !ok {
			v = mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)}}
			values[cc] = v
		}
		if err := w.Insert(ipNet(res.Prefix()), v); err != nil {
			return st, fmt.Errorf("insert %v: %w", res.Prefix(), err)
		}
		st.networks++
	}
	if st.networks == 0 {
		return st, fmt.Errorf("%s (database type %q) has no network with a country_code: not an ip-location-db country database",
			in, md.DatabaseType)
	}
	st.size, err = writeAtomic(out, w)
	return st, err
}

// countryKey identifies the records convert writes by their country code,
// which is cheaper than mmdbwriter's default (a SHA-256 of the serialised
// record) for each of the million and more networks.
type countryKey struct{}

func (countryKey) Key(v mmdbtype.DataType) ([]byte, error) {
	if m, ok := v.(mmdbtype.Map); ok {
		if c, ok := m["country"].(mmdbtype.Map); ok {
			if cc, ok := c["iso_code"].(mmdbtype.String); ok && len(m) == 1 && len(c) == 1 {
				return []byte(cc), nil
			}
		}
	}
	return nil, fmt.Errorf("unexpected record %v", v)
}

func isCountryCode(s string) bool {
	return len(s) == 2 && 'A' <= s[0] && s[0] <= 'Z' && 'A' <= s[1] && s[1] <= 'Z'
}

func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// writeAtomic writes w to a temporary file next to out, checks that
// geo.Open accepts it and renames it to out.
func writeAtomic(out string, w *mmdbwriter.Tree) (size int64, err error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if size, err = w.WriteTo(f); err != nil {
		return 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	db, err := geo.Open(tmp)
	if err != nil {
		return 0, fmt.Errorf("check converted database: %w", err)
	}
	if err = db.Close(); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, out); err != nil {
		return 0, err
	}
	syncDir(filepath.Dir(out))
	return size, nil
}

// syncDir makes a rename in dir durable, as far as the file system allows
// (some cannot sync a directory: best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
