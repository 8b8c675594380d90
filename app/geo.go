package app

import (
	"net/netip"

	"github.com/jobpixel/jobpixel/geo"
	"github.com/jobpixel/jobpixel/ingest"
)

// openGeo opens the GeoIP database at path; an empty path disables GeoIP.
func openGeo(path string) (ingest.Geo, error) {
	if path == "" {
		return nil, nil
	}
	db, err := geo.Open(path)
	if err != nil {
		return nil, err
	}
	return geoAdapter{db}, nil
}

// geoAdapter gives ingest the country and region of a full address.
type geoAdapter struct{ db *geo.DB }

func (g geoAdapter) Lookup(a netip.Addr, dst []byte) ([2]byte, []byte) {
	l := g.db.Lookup(a)
	return l.Country, append(dst, l.RegionCode()...)
}
