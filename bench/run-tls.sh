#!/bin/bash
# bench/run-tls.sh: TLS termination, jwtgate against nginx 1.22 and HAProxy 2.6 (one worker each, proxy
# pinned like bench/run.sh), in one run, with a certificate made for the run (RSA-2048 or ECDSA P-256).
# Rows, each for every proxy, in interleaved rounds (paired per-round ratios):
#   keepalive  wrk, HTTPS/1.1 keep-alive (one handshake per connection, then records)
#   full       bench/tls_load: a new TLS 1.3 connection per request, full handshake
#   resumed    bench/tls_load --resume: a new connection per request resuming with the last ticket
#   h2         h2load over TLS (ALPN h2)
# Same upstream (nginx, return 200 "ok") for all, route GET /bar, TLS 1.2-1.3 offered by every server,
# OpenSSL's default TLS 1.3 suites and groups (X25519 first) on both sides, tickets on (each server's
# default). Not a test: prints a table and saves it to bench/results/<date>-tls-<cert>.txt.
#
#   bench/run-tls.sh [--rsa | --p256]   (default --p256)
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SCRIPT=run-tls.sh
PY=python3
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-3s}         # per wrk / tls_load / h2load run
CONNECTIONS=${BENCH_CONNECTIONS:-64}   # wrk keep-alive connections
NEWCONN=${BENCH_NEWCONN:-16}           # tls_load connections in flight
H2_CLIENTS=${BENCH_H2_CLIENTS:-16}     # h2load -c
H2_STREAMS=${BENCH_H2_STREAMS:-10}     # h2load -m
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-3}
ROW_SET=${BENCH_ROWS:-keepalive full resumed h2}
bench_cpus
BUILD=${BENCH_BUILD:-$ROOT/build}
JWTGATE_BIN=${JWTGATE_BIN:-$BUILD/jwtgate}
TLS_LOAD_BIN=${TLS_LOAD_BIN:-$BUILD/bench/tls_load}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
WRK_BIN=${WRK_BIN:-wrk}
H2LOAD_BIN=${H2LOAD_BIN:-h2load}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
HOST_HEADER="Host: www.example.com"
TARGETS=${BENCH_TARGETS:-jwtgate nginx haproxy}
# BENCH_B_BIN: a second jwtgate binary (e.g. /tmp/b0/jwtgate) measured as target "jwtgate-b" next
# to the others: an A/B of two builds under the same TLS load.
B_BIN=${BENCH_B_BIN:-}

CERT=p256
usage() {
	cat <<EOF
Usage: $0 [--rsa | --p256] [--help]
Environment (defaults):
  BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS BENCH_CONNECTIONS=$CONNECTIONS (wrk)
  BENCH_NEWCONN=$NEWCONN (tls_load) BENCH_H2_CLIENTS=$H2_CLIENTS BENCH_H2_STREAMS=$H2_STREAMS
  BENCH_ROWS='$ROW_SET' BENCH_TARGETS='$TARGETS' BENCH_B_BIN='$B_BIN'
  BENCH_PROXY_CPUS='$PROXY_CPUS' BENCH_LOAD_CPUS='$LOAD_CPUS'
  JWTGATE_BIN=$JWTGATE_BIN TLS_LOAD_BIN=$TLS_LOAD_BIN (ninja -C build bench/tls_load)
  NGINX_BIN=$NGINX_BIN HAPROXY_BIN=$HAPROXY_BIN WRK_BIN=$WRK_BIN H2LOAD_BIN=$H2LOAD_BIN
  BENCH_RESULTS_DIR=$RESULTS_DIR  BENCH_KEEP=1 keeps the temporary folder
EOF
}
for arg in "$@"; do
	case "$arg" in
	--rsa) CERT=rsa ;;
	--p256) CERT=p256 ;;
	--help | -h) usage; exit 0 ;;
	*) echo "run-tls.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
	esac
done

die() {
	echo "run-tls.sh: $*" >&2
	exit 1
}

for tool in "$WRK_BIN" "$H2LOAD_BIN" "$NGINX_BIN" "$HAPROXY_BIN" curl python3 openssl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install wrk nghttp2-client nginx-light haproxy curl)"
done
[ -x "$TLS_LOAD_BIN" ] || die "no $TLS_LOAD_BIN: ninja -C build bench/tls_load"

WORK=$(mktemp -d /tmp/jwtgate-bench-tls.XXXXXX) || die "cannot create a temporary folder"
mkdir -p "$WORK/tmp"
LOAD_TASKSET=$(taskset_prefix "$LOAD_CPUS")
rows_init

# ---- the certificate of this run ----
if [ "$CERT" = rsa ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 \
		-subj /CN=www.example.com -addext subjectAltName=DNS:www.example.com 2>/dev/null || die "openssl req failed"
else
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" \
		-out "$WORK/cert.pem" -days 2 -subj /CN=www.example.com -addext subjectAltName=DNS:www.example.com \
		2>/dev/null || die "openssl req failed"
fi
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"

UPSTREAM_PORT=$(free_port)
declare -A PORT=() PID=()
for t in jwtgate jwtgate-b nginx haproxy; do PORT[$t]=$(free_port); done
SUBST=(DIR="$WORK" UPSTREAM_PORT="$UPSTREAM_PORT" CERT="$WORK/cert.pem" KEY="$WORK/key.pem" PEM="$WORK/haproxy.pem")
render "$BENCH_DIR/nginx-upstream.conf.in" "$WORK/nginx-upstream.conf" "${SUBST[@]}"
render "$BENCH_DIR/nginx-tls.conf.in" "$WORK/nginx.conf" "${SUBST[@]}" PORT="${PORT[nginx]}"
render "$BENCH_DIR/haproxy-tls.cfg.in" "$WORK/haproxy.cfg" "${SUBST[@]}" PORT="${PORT[haproxy]}"
render "$BENCH_DIR/jwtgate-tls.yaml.in" "$WORK/jwtgate.yaml" "${SUBST[@]}" PORT="${PORT[jwtgate]}"
render "$BENCH_DIR/jwtgate-tls.yaml.in" "$WORK/jwtgate-b.yaml" "${SUBST[@]}" PORT="${PORT[jwtgate-b]}"

# wait_tls PID PORT: until the port answers HTTPS (any status), for at most 10 s.
wait_tls() {
	local pid=$1 port=$2 i
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$port/" && return 0
		sleep 0.1
	done
	return 1
}

echo "run-tls.sh: upstream nginx on 127.0.0.1:$UPSTREAM_PORT, $CERT certificate, work folder $WORK" >&2
start upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-upstream.error.log" -c "$WORK/nginx-upstream.conf"
wait_ready "$STARTED_PID" "$UPSTREAM_PORT" || die "upstream nginx did not start"

[ -n "$B_BIN" ] && TARGETS="$TARGETS jwtgate-b"
UP=()
for t in $TARGETS; do
	case $t in
	jwtgate) start jwtgate "$PROXY_CPUS" "$JWTGATE_BIN" -c "$WORK/jwtgate.yaml" ;;
	jwtgate-b) start jwtgate-b "$PROXY_CPUS" "$B_BIN" -c "$WORK/jwtgate-b.yaml" ;;
	nginx) start nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-proxy.error.log" -c "$WORK/nginx.conf" ;;
	haproxy) start haproxy "$PROXY_CPUS" "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg" ;;
	*) die "unknown target $t" ;;
	esac
	PID[$t]=$STARTED_PID
	if ! wait_tls "${PID[$t]}" "${PORT[$t]}"; then
		unavailable "$t" "did not start: $(tail -1 "$WORK/$t.log")"
		continue
	fi
	got=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 -H "$HOST_HEADER" "https://127.0.0.1:${PORT[$t]}/bar")
	if [ "$got" != 200 ]; then
		unavailable "$t" "smoke check /bar gave $got"
		continue
	fi
	UP+=("$t")
done

# record ROW RPS REQUESTS T0 T1 ERRORS: one round's figures of a row (not wrk: tls_load, h2load).
record() {
	local row=$1 rps=$2 n=$3 t0=$4 t1=$5 errs=$6
	[[ " ${ROWS[*]} " == *" $row "* ]] || ROWS+=("$row")
	RPS_ALL[$row]="${RPS_ALL[$row]:-} $rps"
	# shellcheck disable=SC2086
	RPS[$row]=$(median ${RPS_ALL[$row]})
	CPU_ALL[$row]="${CPU_ALL[$row]:-} $(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v n="$n" \
		'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / hz / n; else print 0 }')"
	# shellcheck disable=SC2086
	CPU[$row]=$(median ${CPU_ALL[$row]})
	ERRS[$row]=$((${ERRS[$row]:-0} + errs))
	NON2XX[$row]=${NON2XX[$row]:-0}
	[ "${ERRS[$row]}" != 0 ] && NOTE[$row]="INVALID: $errs errors"
	return 0
}

# newconn ROW TARGET [--resume]: one tls_load run.
newconn() {
	local row=$1 t=$2 line t0 t1 secs=${DURATION%s}
	shift 2
	echo "  $row: tls_load -c$NEWCONN -d$secs $*" >&2
	t0=$(proc_cpu_ticks "${PID[$t]}")
	# shellcheck disable=SC2086
	line=$($LOAD_TASKSET "$TLS_LOAD_BIN" --port "${PORT[$t]}" --connections "$NEWCONN" --duration "$secs" "$@" \
		2>"$WORK/tls_load.err" | grep '^JGTLS ')
	t1=$(proc_cpu_ticks "${PID[$t]}")
	if [ -z "$line" ]; then
		NOTE[$row]="tls_load failed: $(tail -1 "$WORK/tls_load.err")"
		[[ " ${ROWS[*]} " == *" $row "* ]] || ROWS+=("$row")
		return
	fi
	local kv conns cps resumed errs
	for kv in $line; do
		case $kv in
		conns=*) conns=${kv#*=} ;; cps=*) cps=${kv#*=} ;; resumed=*) resumed=${kv#*=} ;; errors=*) errs=${kv#*=} ;;
		esac
	done
	record "$row" "$cps" "$conns" "$t0" "$t1" "$errs"
	# A resumed row whose handshakes did not resume measures full handshakes: say so.
	if [ "${1:-}" = --resume ] && [ "$conns" -gt 0 ] && [ $((resumed * 100 / conns)) -lt 95 ]; then
		NOTE[$row]="INVALID: only $resumed of $conns resumed"
	fi
	if [ "${1:-}" != --resume ] && [ "${resumed:-0}" != 0 ]; then
		NOTE[$row]="INVALID: $resumed resumed"
	fi
}

# h2 ROW TARGET: one h2load run over TLS for DURATION.
h2() {
	local row=$1 t=$2 out t0 t1 rps n errs secs=${DURATION%s}
	echo "  $row: h2load -c$H2_CLIENTS -m$H2_STREAMS -D$secs" >&2
	t0=$(proc_cpu_ticks "${PID[$t]}")
	# shellcheck disable=SC2086
	out=$($LOAD_TASKSET "$H2LOAD_BIN" -t"$THREADS" -c"$H2_CLIENTS" -m"$H2_STREAMS" -D"$secs" \
		-H ":authority: www.example.com" "https://127.0.0.1:${PORT[$t]}/bar" 2>&1)
	t1=$(proc_cpu_ticks "${PID[$t]}")
	rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
	n=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
	# "requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout"
	errs=$(awk '/^requests:/ { print $10 + $12 + $14 }' <<<"$out")
	if [ -z "$rps" ] || [ -z "$n" ]; then
		[[ " ${ROWS[*]} " == *" $row "* ]] || ROWS+=("$row")
		NOTE[$row]="h2load failed: $(tail -1 <<<"$out")"
		return
	fi
	record "$row" "$rps" "$n" "$t0" "$t1" "${errs:-0}"
	grep -q 'Application protocol: h2' <<<"$out" || NOTE[$row]="INVALID: not h2"
}

for round in $(seq 1 "$ROUNDS"); do
	echo "run-tls.sh: round $round/$ROUNDS" >&2
	order=("${UP[@]}")
	if [ $((round % 2)) = 0 ]; then
		order=()
		for ((i = ${#UP[@]} - 1; i >= 0; i--)); do order+=("${UP[$i]}"); done
	fi
	for r in $ROW_SET; do
		for t in "${order[@]}"; do
			case $r in
			keepalive) CPU_PID=${PID[$t]} measure "$t keepalive" "https://127.0.0.1:${PORT[$t]}/bar" ;;
			full) newconn "$t full" "$t" ;;
			resumed) newconn "$t resumed" "$t" --resume ;;
			h2) h2 "$t h2" "$t" ;;
			esac
		done
	done
done
for t in "${UP[@]}"; do stop_pid "${PID[$t]}"; done

report() {
	local row r
	echo "jwtgate TLS benchmark ($CERT) $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command: ${BENCH_COMMAND}"
	echo "host: $(uname -srm), $(nproc) CPUs online, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
	echo "certificate: $([ "$CERT" = rsa ] && echo RSA-2048 || echo 'ECDSA P-256'), self-signed; TLS 1.3 (tls_load forces it; wrk/h2load negotiate it), default suites and groups"
	echo "rounds: $ROUNDS interleaved, ${DURATION} each; proxy CPUs: ${PROXY_CPUS:-any}; load CPUs: ${LOAD_CPUS:-any}"
	echo "keepalive: wrk -t$THREADS -c$CONNECTIONS; full/resumed: bench/tls_load -c$NEWCONN (new connection per request, Connection: close); h2: h2load -c$H2_CLIENTS -m$H2_STREAMS"
	echo "versions: $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), $("$HAPROXY_BIN" -v 2>&1 | head -1 | awk '{print "haproxy " $3}'), $(openssl version | awk '{print $1, $2}'), $(timeout 2 "$JWTGATE_BIN" --version 2>/dev/null | head -1)${B_BIN:+; jwtgate-b: $B_BIN}"
	echo
	printf '%-22s %12s %8s %9s  %s\n' target req/s errors cpu_us note
	for row in "${ROWS[@]}"; do
		printf '%-22s %12s %8s %9s  %s\n' "$row" "${RPS[$row]:--}" "${ERRS[$row]:--}" "${CPU[$row]:--}" "${NOTE[$row]:-}"
	done
	echo
	echo "(cpu_us: the proxy's own CPU time per request, user+system; its ratio is the per-core cost, whatever share of the cores the proxy got)"
	for r in $ROW_SET; do
		for peer in nginx haproxy jwtgate-b; do
			[ -n "${RPS["jwtgate $r"]:-}" ] && [ -n "${RPS["$peer $r"]:-}" ] || continue
			printf 'jwtgate/%-8s %-9s %s%s' "$peer" "$r" "$(ratio "jwtgate $r" "$peer $r")" "$(paired "jwtgate $r" "$peer $r")"
			awk -v j="${CPU["jwtgate $r"]:-0}" -v p="${CPU["$peer $r"]:-0}" \
				'BEGIN { if (j > 0) printf "   cpu/req %s/jwtgate %.2f", "peer", p / j; print "" }' | sed "s/peer/$peer/"
		done
	done
}

BENCH_COMMAND="$0 $*"
mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M%S)-tls-$CERT.txt"
report | tee "$RESULT_FILE"
echo "run-tls.sh: saved $RESULT_FILE" >&2
