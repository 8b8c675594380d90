#!/usr/bin/env bash
# chdb.sh DIR
#
# Installs the current ClickHouse engine the suite checks our SQL on: chDB's
# libchdb.so from the npm package @chdb/lib-linux-x64-gnu, at the version and
# integrity pinned in scripts/chdb/package-lock.json, under DIR (make deps
# uses .data/chdb; internal/testenv looks there or in $JOBPIXEL_TEST_CHDB).
# Idempotent: an install of the same lock file is kept. Prints the library's
# path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mkdir -p "${1:?usage: chdb.sh DIR}" && cd "$1" && pwd)
lib=$dir/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so

if [[ -f $lib ]] && cmp -s "$here/chdb/package-lock.json" "$dir/package-lock.json"; then
	echo "$lib"
	exit 0
fi
command -v npm >/dev/null || { echo "chdb.sh: npm is missing: cannot install @chdb/lib-linux-x64-gnu" >&2; exit 1; }
echo "chdb.sh: installing @chdb/lib-linux-x64-gnu (166 MB download) into $dir" >&2
cp "$here/chdb/package.json" "$here/chdb/package-lock.json" "$dir/"
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
[[ -f $lib ]] || { echo "chdb.sh: npm ci finished without $lib" >&2; exit 1; }
echo "$lib"
