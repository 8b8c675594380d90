package app

import (
	"github.com/jobpixel/jobpixel/ingest"
)

// openGeo opens the GeoIP database at path; an empty path disables GeoIP.
func openGeo(path string) (ingest.Geo, error) {
	return nil, nil
}
