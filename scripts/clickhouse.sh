#!/usr/bin/env bash
# clickhouse.sh start|stop|status DIR TCP_PORT HTTP_PORT [EXTRA_CONFIG]
#
# Runs a private ClickHouse server on loopback with all its data under DIR.
# Installs Debian's clickhouse-server if it is missing. Idempotent: "start"
# on a running server only checks that it answers. EXTRA_CONFIG, when given,
# is a file of server settings (XML elements of <yandex>) added to the
# config; scripts/cluster.sh passes each node's cluster settings this way.
set -euo pipefail
cmd=${1:?usage: clickhouse.sh start|stop|status DIR TCP_PORT HTTP_PORT [EXTRA_CONFIG]}
dir=$(mkdir -p "${2:?dir}" && cd "$2" && pwd)
tcp=${3:-19000}
http=${4:-18123}
extra=${5:-}
pidfile=$dir/clickhouse.pid

ping() { curl -fsS --max-time 1 "http://127.0.0.1:$http/ping" >/dev/null 2>&1; }
running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

install() {
	command -v clickhouse-server >/dev/null && return
	echo "clickhouse.sh: installing clickhouse-server from Debian" >&2
	SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}

config() {
	mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
	cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog><size>10M</size><count>2</count></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$tcp</tcp_port>
    <http_port>$http</http_port>
    <max_connections>512</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
$(if [[ -n $extra ]]; then cat "$extra"; fi)
</yandex>
XML
	cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage><log_queries>0</log_queries></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}

case $cmd in
start)
	if running && ping; then exit 0; fi
	if ping; then
		echo "clickhouse.sh: port $http already answers, but not for a server with its data in $dir: stop that server or choose other ports" >&2
		exit 1
	fi
	install
	config
	rm -f "$pidfile"
	/usr/sbin/clickhouse-server --config-file="$dir/config.xml" --pid-file="$pidfile" --daemon
	for _ in $(seq 1 300); do
		if ping; then
			echo "clickhouse.sh: ClickHouse on 127.0.0.1:$tcp (http $http), data in $dir" >&2
			exit 0
		fi
		sleep 0.1
	done
	echo "clickhouse.sh: server did not answer on :$http; see $dir/log/error.log" >&2
	tail -20 "$dir/log/error.log" >&2 || true
	exit 1
	;;
stop)
	running || exit 0
	pid=$(cat "$pidfile")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; exit 0; }; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$pidfile"
	;;
status)
	running && ping
	;;
*)
	echo "usage: clickhouse.sh start|stop|status DIR TCP_PORT HTTP_PORT [EXTRA_CONFIG]" >&2; exit 2
	;;
esac
