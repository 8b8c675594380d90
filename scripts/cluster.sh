#!/usr/bin/env bash
# cluster.sh start|stop|status DIR [BASE]
# cluster.sh stop-node|start-node DIR N
#
# Runs a replicated ClickHouse cluster on loopback with all its data under
# DIR: ZooKeeper (Debian's zookeeper package, installed when missing) and
# four ClickHouse 18.16 servers (scripts/clickhouse.sh) forming the cluster
# "jobpixel": 2 shards x 2 replicas, internal_replication on.
#
# Ports are derived from BASE (default 19000; make passes CH_TCP):
#   node N (1-4): native BASE+100+N, http BASE+200+N, interserver BASE+300+N
#   ZooKeeper:    BASE+400
# Nodes 1 and 2 are shard 01, nodes 3 and 4 shard 02; each node's {replica}
# macro is node1..node4, unique in the cluster. Idempotent: "start" on a
# running cluster only checks that everything answers. stop-node and
# start-node stop and start one server (tests of a replica that goes away).
set -euo pipefail
usage="usage: cluster.sh start|stop|status DIR [BASE] | stop-node|start-node DIR N"
cmd=${1:?$usage}
dir=$(mkdir -p "${2:?$usage}" && cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
nodes=(1 2 3 4)

if [[ $cmd == start ]]; then
	base=${3:-19000}
	echo "$base" >"$dir/base"
elif [[ -f $dir/base ]]; then
	base=$(cat "$dir/base")
else
	[[ $cmd == stop || $cmd == stop-node ]] && exit 0 # never started: nothing to stop
	echo "cluster.sh: no cluster in $dir (run start first)" >&2
	exit 1
fi
zk=$((base + 400))
zkpid=$dir/zookeeper/zookeeper.pid
tcp() { echo $((base + 100 + $1)); }
http() { echo $((base + 200 + $1)); }

zk_ok() {
	local r
	r=$( { exec 3<>"/dev/tcp/127.0.0.1/$zk" && echo ruok >&3 && timeout 1 cat <&3; } 2>/dev/null) || true
	[[ $r == imok ]]
}
zk_running() { [[ -f $zkpid ]] && kill -0 "$(cat "$zkpid")" 2>/dev/null; }

install_zk() {
	[[ -f /usr/share/java/zookeeper.jar ]] && return
	echo "cluster.sh: installing zookeeper from Debian" >&2
	SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
	# Wait for another install's lock rather than fail.
	$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq zookeeper >/dev/null
}

start_zk() {
	if zk_running && zk_ok; then return; fi
	if zk_ok; then
		echo "cluster.sh: port $zk already answers for another ZooKeeper: stop it or choose another BASE" >&2
		exit 1
	fi
	install_zk
	local z=$dir/zookeeper
	mkdir -p "$z/data"
	cat >"$z/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$z/data
clientPort=$zk
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr,mntr,cons
CFG
	cat >"$z/log4j.properties" <<CFG
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$z/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p %c{1}: %m%n
CFG
	setsid java -Xms32m -Xmx256m -XX:+UseSerialGC \
		-cp "$z:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar" \
		org.apache.zookeeper.server.ZooKeeperServerMain "$z/zoo.cfg" >"$z/stdout.log" 2>&1 </dev/null &
	echo $! >"$zkpid"
	for _ in $(seq 1 100); do
		zk_ok && return
		sleep 0.1
	done
	echo "cluster.sh: ZooKeeper did not answer on :$zk; see $z/zookeeper.log" >&2
	tail -20 "$z/stdout.log" "$z/zookeeper.log" >&2 || true
	exit 1
}

stop_zk() {
	zk_running || return 0
	local pid
	pid=$(cat "$zkpid")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || { rm -f "$zkpid"; return; }; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$zkpid"
}

# node_config writes the cluster settings of node $1 (given to
# clickhouse.sh as its extra config).
node_config() {
	local n=$1 shard=$(( ($1 + 1) / 2 )) is=$((base + 300 + $1))
	local replica s r
	mkdir -p "$dir/node$n"
	{
		echo "<interserver_http_host>127.0.0.1</interserver_http_host>"
		echo "<interserver_http_port>$is</interserver_http_port>"
		echo "<zookeeper><node><host>127.0.0.1</host><port>$zk</port></node><session_timeout_ms>30000</session_timeout_ms></zookeeper>"
		echo "<macros><shard>0$shard</shard><replica>node$n</replica></macros>"
		echo "<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"
		echo "<remote_servers><jobpixel>"
		for s in 1 2; do
			echo "<shard><internal_replication>true</internal_replication>"
			for r in 1 2; do
				replica=$(( (s - 1) * 2 + r ))
				echo "<replica><host>127.0.0.1</host><port>$(tcp $replica)</port></replica>"
			done
			echo "</shard>"
		done
		echo "</jobpixel></remote_servers>"
	} >"$dir/node$n/cluster.xml"
}

start_node() {
	node_config "$1"
	bash "$here/clickhouse.sh" start "$dir/node$1" "$(tcp "$1")" "$(http "$1")" "$dir/node$1/cluster.xml"
}

stop_node() { bash "$here/clickhouse.sh" stop "$dir/node$1" "$(tcp "$1")" "$(http "$1")"; }

case $cmd in
start)
	start_zk
	pids=()
	for n in "${nodes[@]}"; do
		start_node "$n" 2>"$dir/node$n.start.log" &
		pids+=($!)
	done
	failed=0
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || { failed=1; cat "$dir/node${nodes[$i]}.start.log" >&2; }
	done
	((failed == 0)) || exit 1
	echo "cluster.sh: cluster jobpixel (2 shards x 2 replicas) on 127.0.0.1:$(tcp 1)-$(tcp 4), ZooKeeper :$zk, data in $dir" >&2
	;;
stop)
	for n in "${nodes[@]}"; do stop_node "$n" & done
	wait
	stop_zk
	;;
status)
	zk_running && zk_ok || exit 1
	for n in "${nodes[@]}"; do bash "$here/clickhouse.sh" status "$dir/node$n" "$(tcp "$n")" "$(http "$n")" || exit 1; done
	;;
stop-node)
	stop_node "${3:?node 1-4}"
	;;
start-node)
	start_node "${3:?node 1-4}"
	;;
*)
	echo "$usage" >&2; exit 2
	;;
esac
