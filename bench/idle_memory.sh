#!/bin/bash
# bench/idle_memory.sh: memory per idle connection, jwtgate next to nginx (issue 13).
#
# For each kind of idle connection, a fresh server process (one worker each) is given N client
# connections by bench/idle_conns.py; the server's RSS growth (VmRSS of the process and its children,
# measured after a warm-up and again once all N are open and idle) divided by N is printed in KiB:
#   h1-fresh  HTTP/1.1 connection that has sent nothing yet
#   h1-idle   HTTP/1.1 keep-alive connection after one complete request/response, back in idle
#   h2-fresh  h2c (prior knowledge) after the preface and SETTINGS, no stream yet
#   h2-idle   h2c after one complete request/response on stream 1 (HPACK with incremental indexing)
# The goals of issue 13 apply to the idle-after-one-request rows: at most 2 KiB (h1), 4 KiB (h2).
# Both servers proxy /bar to the same nginx upstream (`return 200 "ok"`, keep-alive).
set -u

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
N=${BENCH_IDLE_CONNS:-10000}
KINDS=${BENCH_IDLE_KINDS:-"h1-fresh h1-idle h2-fresh h2-idle"}
JWTGATE_BIN=${JWTGATE_BIN:-$SRC_DIR/build/jwtgate}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
PY=${BENCH_PYTHON:-/usr/bin/python3}
BENCH_COMMAND="$0 $*"

usage() {
	cat <<USAGE
Usage: $0 [--help]
Environment (defaults):
  BENCH_IDLE_CONNS=$N  BENCH_IDLE_KINDS='$KINDS'
  JWTGATE_BIN=$JWTGATE_BIN  NGINX_BIN=$NGINX_BIN
  BENCH_RESULTS_DIR=$RESULTS_DIR  BENCH_KEEP=1 keeps the temporary folder
Needs a file-descriptor limit of at least N + 200 for this shell and the servers (ulimit -n).
USAGE
}
for arg in "$@"; do
	case "$arg" in
	--help | -h) usage; exit 0 ;;
	*) echo "idle_memory.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
	esac
done

die() {
	echo "idle_memory.sh: $*" >&2
	exit 1
}

[ -x "$JWTGATE_BIN" ] || die "no jwtgate at $JWTGATE_BIN: ninja -C build"
command -v "$NGINX_BIN" >/dev/null 2>&1 || die "$NGINX_BIN not found (Debian: apt-get install nginx-light)"
# Each side holds N sockets: raise the soft limit as far as the hard one allows (root may raise both).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((N + 200)) ] ||
	die "file-descriptor limit $(ulimit -n) is below N + 200 = $((N + 200)); lower BENCH_IDLE_CONNS"

WORK=$(mktemp -d /tmp/jwtgate-bench-idle.XXXXXX) || die "cannot create a temporary folder"
mkdir -p "$WORK/tmp"
PIDS=()
SCRIPT=idle_memory.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

wait_port() { # PID PORT: until something listens, at most 10 s
	local pid=$1 port=$2 i
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		"$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.5)" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

UP_PORT=$(free_port)
sed -e "s#@DIR@#$WORK#g" -e "s#@UPSTREAM_PORT@#$UP_PORT#g" "$BENCH_DIR/nginx-upstream.conf.in" >"$WORK/upstream.conf"
start upstream "" "$NGINX_BIN" -c "$WORK/upstream.conf" -e "$WORK/upstream.error.log"
wait_port "$STARTED_PID" "$UP_PORT" || die "the nginx upstream did not start ($WORK/upstream.log)"

# jwtgate: the bench's route shape, one worker, limits raised so that N idle connections stay open.
jwtgate_config() { # PORT
	cat <<YAML
workers: 1
log: {level: warn}
limits: {maxConnections: $((N + 1000)), headerTimeout: 600s, idleTimeout: 600s}
listeners:
  - name: http
    address: 127.0.0.1:$1
backends:
  - name: backend
    endpoints:
      - ip: {address: 127.0.0.1, port: $UP_PORT}
httpRoutes:
  - name: bar
    hostnames: ["www.example.com"]
    rules:
      - matches: [{path: {type: PathPrefix, value: /bar}}]
        backendRefs: [{name: backend}]
YAML
}

# nginx: the bench's reverse proxy (bench/nginx.conf.in), plus `http2` on the listener for h2c.
nginx_config() { # PORT KIND
	local h2=""
	case "$2" in h2-*) h2=" http2" ;; esac
	sed -e "s#@DIR@#$WORK#g" -e "s#@UPSTREAM_PORT@#$UP_PORT#g" -e "s#@PORT@#$1#g" \
		-e "s#worker_connections 8192;#worker_connections $((N + 1000));#" \
		-e "s#^worker_processes 1;#worker_processes 1;\nworker_rlimit_nofile $((2 * N + 2000));#" \
		-e "s#backlog=4096;#backlog=4096$h2;\n\t\tclient_header_timeout 600s;\n\t\thttp2_idle_timeout 600s;\n\t\thttp2_recv_timeout 600s;#" \
		"$BENCH_DIR/nginx.conf.in"
}

declare -A RESULT
measure() { # SERVER KIND
	local server=$1 kind=$2 port pid out
	port=$(free_port)
	if [ "$server" = jwtgate ]; then
		jwtgate_config "$port" >"$WORK/jwtgate.yaml"
		start "jwtgate-$kind" "" "$JWTGATE_BIN" -c "$WORK/jwtgate.yaml"
	else
		nginx_config "$port" "$kind" >"$WORK/nginx-$kind.conf"
		start "nginx-$kind" "" "$NGINX_BIN" -c "$WORK/nginx-$kind.conf" -e "$WORK/nginx-$kind.error.log"
	fi
	pid=$STARTED_PID
	if ! wait_port "$pid" "$port"; then
		RESULT[$server,$kind]="unavailable"
		return
	fi
	if out=$("$PY" "$BENCH_DIR/idle_conns.py" --port "$port" --pid "$pid" --kind "$kind" -n "$N" --settle 2 \
		2>"$WORK/idle-$server-$kind.err"); then
		RESULT[$server,$kind]=$(sed -n 's/.*kib_per_conn=\([0-9.]*\).*/\1/p' <<<"$out")
		echo "$server $kind: $out" >&2
	else
		RESULT[$server,$kind]="failed"
		echo "$server $kind: failed: $(tail -1 "$WORK/idle-$server-$kind.err")" >&2
	fi
	stop_pid "$pid"
}

for kind in $KINDS; do
	measure jwtgate "$kind"
	measure nginx "$kind"
done

STAMP=$(date -u +%Y-%m-%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$STAMP-idle-memory.txt"
{
	echo "jwtgate idle-connection memory $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
	echo "command: $BENCH_COMMAND"
	echo "host: $(uname -srm), $(nproc) CPUs online"
	echo "versions: $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), jwtgate $("$JWTGATE_BIN" --version 2>/dev/null | head -1)"
	echo "jwtgate binary: ${JWTGATE_BIN#"$SRC_DIR"/} (source tree at $(git -C "$SRC_DIR" log -1 --format=%h 2>/dev/null))"
	echo "N=$N connections per row, one worker each, RSS growth / N (KiB), fresh server process per row"
	echo
	printf '%-10s %10s %10s %14s\n' kind jwtgate nginx jwtgate/nginx
	for kind in $KINDS; do
		j=${RESULT[jwtgate,$kind]} n=${RESULT[nginx,$kind]}
		r=$("$PY" -c "import sys; a, b = sys.argv[1:]; print(f'{float(a) / float(b):.2f}')" "$j" "$n" 2>/dev/null || echo -)
		printf '%-10s %10s %10s %14s\n' "$kind" "$j" "$n" "$r"
	done
	echo
	echo "goals (issue 13): h1-idle <= 2 KiB, h2-idle <= 4 KiB"
} | tee "$OUT"
echo "saved $OUT" >&2
