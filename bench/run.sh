#!/bin/bash
# bench/run.sh: jwtgate against the upstream served directly, nginx 1.22 and HAProxy 2.6, in one run,
# on this machine, with one worker each (per-core figures). Not a test: it measures, prints a table and
# saves it to bench/results/<date>-<mode>.txt. See bench/README.md.
#
#   bench/run.sh          HTTP/1.1 proxying, no auth (route /bar)
#   bench/run.sh --jwt    Authorization: Bearer <RS256 JWT>: cached and uncached verification
#
# Every server is started from the Debian binaries with a config generated into a temporary folder, and
# stopped on exit (trap), whatever happens. A jwtgate that is missing or does not start is reported as
# unavailable; the other rows still run.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SCRIPT=run.sh
PY=python3
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-}           # per wrk run (default 3s)
CONNECTIONS=${BENCH_CONNECTIONS:-64}   # keep-alive connections
THREADS=${BENCH_THREADS:-1}            # wrk threads
ROUNDS=${BENCH_ROUNDS:-}               # interleaved rounds (default: 10 plain, 8 --jwt); medians shown
MISS_TOKENS=${BENCH_MISS_TOKENS:-2000} # distinct tokens for the cache-miss runs
WORKERS=${BENCH_WORKERS:-1}           # workers of every proxy: jwtgate workers, nginx worker_processes, HAProxy nbthread
[[ "$WORKERS" =~ ^[1-9][0-9]?$ ]] || { echo "run.sh: BENCH_WORKERS '$WORKERS': a number 1-99" >&2; exit 2; }
# Proxy on CPU 0, wrk and the upstream on the others (BENCH_PROXY_CPUS, BENCH_LOAD_CPUS; lib.sh). With
# more than one worker nothing is pinned unless asked: a proxy with two workers on one pinned core would
# measure nothing but the pinning.
if [ "$WORKERS" -gt 1 ]; then
	: "${BENCH_PROXY_CPUS=none}" "${BENCH_LOAD_CPUS=none}"
fi
bench_cpus
JWTGATE_BIN=${JWTGATE_BIN:-$ROOT/build/jwtgate}
JWTGATE_TOKEN_BIN=${JWTGATE_TOKEN_BIN:-$ROOT/build/jwtgate-token}
JWT_STAGE_BIN=${JWT_STAGE_BIN:-$(dirname "$JWTGATE_BIN")/bench/jwt_stage}
STAGE_ROUNDS=${BENCH_STAGE_ROUNDS:-7}  # rounds of bench/jwt_stage (--jwt)
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
WRK_BIN=${WRK_BIN:-wrk}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
HOST_HEADER="Host: www.example.com"

MODE=http1
usage() {
	cat <<EOF
Usage: $0 [--jwt] [--help]
  (no flag)  HTTP/1.1 proxying: direct upstream, jwtgate, nginx, HAProxy on /bar (no auth)
  --jwt      Bearer RS256 JWT on /foo: jwtgate cached and uncached, HAProxy jwt_verify, nginx (no auth),
             openssl speed rsa2048 verify/s as the per-core ceiling of a cache miss
Environment (defaults):
  BENCH_WORKERS=$WORKERS (2: every proxy with 2 workers/threads, unpinned, plus a jwtgate row with 1 worker)
  BENCH_DURATION=$DURATION BENCH_CONNECTIONS=$CONNECTIONS BENCH_THREADS=$THREADS
  BENCH_MISS_TOKENS=$MISS_TOKENS BENCH_PROXY_CPUS='$PROXY_CPUS' BENCH_LOAD_CPUS='$LOAD_CPUS'
  JWTGATE_BIN=$JWTGATE_BIN
  JWTGATE_TOKEN_BIN=$JWTGATE_TOKEN_BIN
  NGINX_BIN=$NGINX_BIN HAPROXY_BIN=$HAPROXY_BIN WRK_BIN=$WRK_BIN
  BENCH_RESULTS_DIR=$RESULTS_DIR  BENCH_KEEP=1 keeps the temporary folder (configs, logs, raw wrk output)
EOF
}
for arg in "$@"; do
	case "$arg" in
	--jwt) MODE=jwt ;;
	--help | -h) usage; exit 0 ;;
	*) echo "run.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
	esac
done

die() {
	echo "run.sh: $*" >&2
	exit 1
}

# This VM's speed swings by +-20% over seconds (one 2 s round of the same binary differs from the next),
# so the plain comparison takes many short rounds and pairs each proxy with its neighbours in time.
if [ "$MODE" = http1 ]; then
	DURATION=${DURATION:-3s}
	ROUNDS=${ROUNDS:-10}
else
	DURATION=${DURATION:-3s}
	ROUNDS=${ROUNDS:-8}
fi

for tool in "$WRK_BIN" "$NGINX_BIN" "$HAPROXY_BIN" curl python3 openssl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install wrk nginx-light haproxy curl)"
done

WORK=$(mktemp -d /tmp/jwtgate-bench.XXXXXX) || die "cannot create a temporary folder"
mkdir -p "$WORK/tmp"

PROXY_TASKSET=$(taskset_prefix "$PROXY_CPUS")
LOAD_TASKSET=$(taskset_prefix "$LOAD_CPUS")

rows_init # the tables measure() fills (lib.sh)


# ---- ports, key material, configs ----
UPSTREAM_PORT=$(free_port)
JWTGATE_PORT=$(free_port)
NGINX_PORT=$(free_port)
HAPROXY_PORT=$(free_port)

# An RSA-2048 key: HAProxy's jwt_verify reads the PEM public key, jwtgate the JWKS made from it.
make_keys || die "cannot make the RSA key and JWKS"

COMMON_SUBST=(DIR="$WORK" UPSTREAM_PORT="$UPSTREAM_PORT" PUBKEY="$WORK/pub.pem" JWKS="$WORK/jwks.json")
render "$BENCH_DIR/nginx-upstream.conf.in" "$WORK/nginx-upstream.conf" "${COMMON_SUBST[@]}"
render "$BENCH_DIR/nginx.conf.in" "$WORK/nginx.conf" "${COMMON_SUBST[@]}" PORT="$NGINX_PORT"
render "$BENCH_DIR/haproxy.cfg.in" "$WORK/haproxy.cfg" "${COMMON_SUBST[@]}" PORT="$HAPROXY_PORT"
render "$BENCH_DIR/jwtgate.yaml.in" "$WORK/jwtgate.yaml" "${COMMON_SUBST[@]}" PORT="$JWTGATE_PORT" \
	TOKEN_CACHE_SIZE=4096
render "$BENCH_DIR/jwtgate.yaml.in" "$WORK/jwtgate-nocache.yaml" "${COMMON_SUBST[@]}" PORT="$JWTGATE_PORT" \
	TOKEN_CACHE_SIZE=0
# BENCH_WORKERS: the peers' configs get the same number of workers; jwtgate's 1-worker config stays as
# it is, as the "jwtgate 1w" row next to the others (the templates say 1, the default run uses them as they are).
JWTGATE1_PORT=""
if [ "$WORKERS" -gt 1 ]; then
	JWTGATE1_PORT=$(free_port)
	render "$BENCH_DIR/jwtgate.yaml.in" "$WORK/jwtgate-1w.yaml" "${COMMON_SUBST[@]}" PORT="$JWTGATE1_PORT" \
		TOKEN_CACHE_SIZE=4096
	sed -i "s/^workers: 1\$/workers: $WORKERS/" "$WORK/jwtgate.yaml" "$WORK/jwtgate-nocache.yaml"
	sed -i "s/^worker_processes 1;\$/worker_processes $WORKERS;/" "$WORK/nginx.conf"
	sed -i "s/^\tnbthread 1\$/\tnbthread $WORKERS/" "$WORK/haproxy.cfg"
	if ! grep -q "^workers: $WORKERS\$" "$WORK/jwtgate.yaml" || ! grep -q "^worker_processes $WORKERS;" "$WORK/nginx.conf" ||
		! grep -q "nbthread $WORKERS\$" "$WORK/haproxy.cfg"; then
		die "BENCH_WORKERS: a template no longer says 1 worker"
	fi
fi

TOKEN=""
if [ "$MODE" = jwt ]; then
	[ -x "$JWTGATE_TOKEN_BIN" ] || die "--jwt needs jwtgate-token ($JWTGATE_TOKEN_BIN): ninja -C build jwtgate-token"
	TOKEN=$("$JWTGATE_TOKEN_BIN" --key "$WORK/key.pem" --kid bench --alg RS256 --iss bench --sub bench-user \
		--exp-in 2h) || die "jwtgate-token failed"
	if [ "$WORKERS" = 1 ]; then # BENCH_WORKERS > 1 measures the cached rows only
		echo "run.sh: minting $MISS_TOKENS distinct tokens for the cache-miss runs" >&2
		"$JWTGATE_TOKEN_BIN" --key "$WORK/key.pem" --kid bench --alg RS256 --iss bench --sub bench-user \
			--exp-in 2h --count "$MISS_TOKENS" >"$WORK/tokens.txt" || die "jwtgate-token --count failed"
	fi
fi
AUTH_HEADER="Authorization: Bearer $TOKEN"
EXPIRED_HEADER=""
FORGED_HEADER=""
if [ "$MODE" = jwt ]; then
	# Negative smoke checks: a proxy that lets these through is not verifying, and its figure is void.
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/other-key.pem" 2>/dev/null ||
		die "openssl genpkey failed"
	EXPIRED_HEADER="Authorization: Bearer $("$JWTGATE_TOKEN_BIN" --key "$WORK/key.pem" --kid bench --exp-in -1h)"
	FORGED_HEADER="Authorization: Bearer $("$JWTGATE_TOKEN_BIN" --key "$WORK/other-key.pem" --kid bench)"
fi

# perf_stage URL: one more cache-miss run (not a table row: perf slows the proxy) with perf, at ~1 kHz,
# sampling the proxy, to split its CPU per request into the JWT stage (jwtgate's auth/jwt/jwk/jsonscan/
# b64url/token_cache functions and libcrypto) and the rest. Sets STAGE_PERF; needs perf (BENCH_PERF=0
# skips it).
STAGE_PERF=""
perf_stage() {
	local url=$1 t0 t1 line n share
	if [ "${BENCH_PERF:-1}" != 1 ] || ! command -v perf >/dev/null 2>&1; then
		STAGE_PERF="skipped: ${BENCH_PERF:+BENCH_PERF=$BENCH_PERF}$(command -v perf >/dev/null 2>&1 || echo "perf not installed")"
		return
	fi
	echo "  jwtgate /foo miss under perf record (stage share of the proxy's CPU)" >&2
	# The raw verify right before and right after (jwt_stage, 3 quick rounds): this machine's speed
	# drifts within minutes, so the stage is compared with a verify measured at the same moment.
	local raw_before raw_after
	raw_before=$(stage_raw_us)
	perf record -q -F 997 -o "$WORK/miss.perf" -p "$JWTGATE_PID" >"$WORK/perf.log" 2>&1 &
	local perf_pid=$!
	sleep 0.5
	t0=$(proc_cpu_ticks "$JWTGATE_PID")
	# shellcheck disable=SC2086
	line=$(WRK_TOKENS="$WORK/tokens.txt" $LOAD_TASKSET "$WRK_BIN" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" \
		-s "$BENCH_DIR/wrk.lua" -H "$HOST_HEADER" "$url" 2>&1 | grep '^JGBENCH ')
	t1=$(proc_cpu_ticks "$JWTGATE_PID")
	kill -INT "$perf_pid" 2>/dev/null
	wait "$perf_pid" 2>/dev/null
	raw_after=$(stage_raw_us)
	n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
	share=$(perf report -i "$WORK/miss.perf" --no-children --stdio --sort dso,sym 2>/dev/null | awk '
		/^#/ || NF < 4 { next }
		{ p = $1; sub(/%/, "", p); all += p
		  if ($2 ~ /libcrypto/ || $4 ~ /^(auth_|jwt_|jwk_|jwks_|jsonscan_|b64url_|token_cache_)/) st += p }
		END { if (all > 0) printf "%.4f", st / all }')
	if [ -z "$n" ] || [ "$n" = 0 ] || [ -z "$share" ]; then
		STAGE_PERF="failed: $(tail -1 "$WORK/perf.log")"
		return
	fi
	STAGE_PERF=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v n="$n" -v s="$share" \
		-v r1="${raw_before:-0}" -v r2="${raw_after:-0}" \
		'BEGIN { c = (b - a) * 1e6 / hz / n; printf "cpu_us=%.1f share=%.3f stage_us=%.1f near_raw_us=%.2f", c, s, c * s, (r1 + r2) / 2 }')
}

# stage_raw_us: the raw RSA verify in microseconds now (3 quick rounds of jwt_stage), or nothing.
stage_raw_us() {
	[ -x "$JWT_STAGE_BIN" ] || return 0
	# shellcheck disable=SC2086
	$PROXY_TASKSET "$JWT_STAGE_BIN" "$WORK/jwtgate.yaml" jwt-bench "$WORK/tokens.txt" "$WORK/pub.pem" 3 2>/dev/null |
		sed -n 's/.* raw_us=\([0-9.]*\).*/\1/p'
}

# verifies_jwt ROW URL: no token, an expired one, a forged one -> 401; the bench token -> 200.
verifies_jwt() {
	check_status "$1" "$2" 401 && check_status "$1" "$2" 401 "$EXPIRED_HEADER" &&
		check_status "$1" "$2" 401 "$FORGED_HEADER" && check_status "$1" "$2" 200 "$AUTH_HEADER"
}

# ---- the upstream, shared by every row ----
echo "run.sh: upstream nginx on 127.0.0.1:$UPSTREAM_PORT, work folder $WORK" >&2
start upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-upstream.error.log" -c "$WORK/nginx-upstream.conf"
UPSTREAM_PID=$STARTED_PID
wait_ready "$UPSTREAM_PID" "$UPSTREAM_PORT" || die "upstream nginx did not start: $(tail -3 "$WORK/upstream.log")"

# with_server ROW_PREFIX NAME CONFIG_CHECK_CMD... -- START_CMD... : helpers below keep the order simple.
JWTGATE_PID=""
start_jwtgate() { # CONFIG -> 0 when up; sets JWTGATE_WHY otherwise
	local conf=$1 why
	JWTGATE_WHY=""
	if [ ! -x "$JWTGATE_BIN" ]; then
		JWTGATE_WHY="no binary at $JWTGATE_BIN"
		return 1
	fi
	if ! why=$("$JWTGATE_BIN" -c "$conf" --check 2>&1); then
		JWTGATE_WHY="config refused: $(head -1 <<<"$why")"
		return 1
	fi
	start jwtgate "$PROXY_CPUS" "$JWTGATE_BIN" -c "$conf"
	JWTGATE_PID=$STARTED_PID
	if ! wait_ready "$JWTGATE_PID" "$JWTGATE_PORT"; then
		JWTGATE_WHY="did not start: $(tail -1 "$WORK/jwtgate.log")"
		stop_pid "$JWTGATE_PID"
		return 1
	fi
	return 0
}

# start_jwtgate1: the 1-worker jwtgate next to the BENCH_WORKERS one (its own port); sets JWTGATE1_PID.
JWTGATE1_PID=""
start_jwtgate1() {
	start jwtgate-1w "$PROXY_CPUS" "$JWTGATE_BIN" -c "$WORK/jwtgate-1w.yaml"
	JWTGATE1_PID=$STARTED_PID
	if ! wait_ready "$JWTGATE1_PID" "$JWTGATE1_PORT"; then
		JWTGATE_WHY="did not start: $(tail -1 "$WORK/jwtgate-1w.log")"
		stop_pid "$JWTGATE1_PID"
		return 1
	fi
}

# thread_snap PID: one line per thread: tid, utime+stime (clock ticks), voluntary and involuntary
# context switches (/proc/PID/task/TID/status). Two snapshots around the rounds show how the workers
# shared the load: the busiest threads are the workers (the control and log writer threads stay near 0).
thread_snap() {
	local t
	for t in /proc/"$1"/task/*; do
		awk -v t="${t##*/}" '{ printf "%s %d", t, $14 + $15 }' "$t/stat" 2>/dev/null || continue
		awk '/^voluntary_ctxt_switches:/ { v = $2 } /^nonvoluntary_ctxt_switches:/ { n = $2 }
			END { printf " %d %d\n", v, n }' "$t/status" 2>/dev/null || echo " 0 0"
	done
}

# thread_split SNAP0 SNAP1 [N]: the threads' CPU seconds and context switches between the two
# snapshots, busiest first, and the busiest N (default WORKERS) threads' shares of their CPU (even:
# each 1/N).
thread_split() {
	awk 'NR == FNR { c[$1] = $2; r[$1] = $3; x[$1] = $4; next }
		{ d = $2 - c[$1]; print d, $1, $3 - r[$1], $4 - x[$1] }' <(echo "$1") <(echo "$2") | sort -rn | awk -v w="${3:-$WORKERS}" -v hz="$(getconf CLK_TCK)" '
		{ t[NR] = $2; d[NR] = $1; r[NR] = $3; x[NR] = $4; if (NR <= w) s += $1 }
		END {
			for (i = 1; i <= NR; i++) {
				if (d[i] == 0 && i > w) continue
				printf "  thread %-8s %7.2f s CPU  %9d voluntary %9d involuntary switches", t[i], d[i] / hz, r[i], x[i]
				if (i <= w && s > 0) printf "  %5.1f%% of the %d busiest", d[i] * 100 / s, w
				printf "\n"
			}
		}'
}

start_nginx() {
	start nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-proxy.error.log" -c "$WORK/nginx.conf"
	NGINX_PID=$STARTED_PID
	wait_ready "$NGINX_PID" "$NGINX_PORT"
}

start_haproxy() {
	if ! "$HAPROXY_BIN" -c -q -f "$WORK/haproxy.cfg" >"$WORK/haproxy-check.log" 2>&1; then
		HAPROXY_WHY="config refused: $(grep -m1 ALERT "$WORK/haproxy-check.log")"
		return 1
	fi
	start haproxy "$PROXY_CPUS" "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg"
	HAPROXY_PID=$STARTED_PID
	if ! wait_ready "$HAPROXY_PID" "$HAPROXY_PORT"; then
		HAPROXY_WHY="did not start: $(grep -m1 ALERT "$WORK/haproxy.log" || tail -1 "$WORK/haproxy.log")"
		stop_pid "$HAPROXY_PID"
		return 1
	fi
}

# check_status ROW URL WANT [HEADER...]: a route that answers wrongly is not benchmarked.
check_status() {
	local row=$1 url=$2 want=$3 got
	shift 3
	got=$(status_of "$url" "$@")
	if [ "$got" != "$want" ]; then
		unavailable "$row" "smoke check $url gave $got, want $want"
		return 1
	fi
	return 0
}

U="http://127.0.0.1:$UPSTREAM_PORT"
J="http://127.0.0.1:$JWTGATE_PORT"
N="http://127.0.0.1:$NGINX_PORT"
H="http://127.0.0.1:$HAPROXY_PORT"
J1="http://127.0.0.1:${JWTGATE1_PORT:-0}"
SNAP0="" THREAD_SPLIT="" SNAP1W="" THREAD_SPLIT1W=""

if [ "$MODE" = http1 ]; then
	echo "run.sh: HTTP/1.1, no auth, GET /bar, $ROUNDS interleaved rounds (medians)" >&2
	# All servers up at once (idle ones cost nothing), then rounds that visit each in turn, so that
	# a noisy spell on this shared machine hits every target rather than one.
	have_j=0 have_n=0 have_h=0
	if start_jwtgate "$WORK/jwtgate.yaml"; then
		check_status jwtgate "$J/bar" 200 && have_j=1
	else
		unavailable jwtgate "$JWTGATE_WHY"
	fi
	if start_nginx; then
		check_status nginx "$N/bar" 200 && have_n=1
	else
		unavailable nginx "did not start: $(tail -1 "$WORK/nginx.log")"
	fi
	if start_haproxy; then
		check_status haproxy "$H/bar" 200 && have_h=1
	else
		unavailable haproxy "$HAPROXY_WHY"
	fi
	have_j1=0
	if [ "$WORKERS" -gt 1 ] && [ "$have_j" = 1 ]; then
		if start_jwtgate1; then
			check_status "jwtgate 1w" "$J1/bar" 200 && have_j1=1
		else
			unavailable "jwtgate 1w" "$JWTGATE_WHY"
		fi
	fi
	[ "$have_j" = 1 ] && [ "$WORKERS" -gt 1 ] && SNAP0=$(thread_snap "$JWTGATE_PID")
	[ "$have_j1" = 1 ] && SNAP1W=$(thread_snap "$JWTGATE1_PID")
	# Odd rounds go direct, jwtgate, nginx, HAProxy; even rounds the other way round, so a machine
	# that slowly speeds up or slows down favours no target.
	for round in $(seq 1 "$ROUNDS"); do
		echo "run.sh: round $round/$ROUNDS" >&2
		order=(direct jwtgate nginx haproxy)
		[ $((round % 2)) = 0 ] && order=(haproxy nginx jwtgate direct)
		if [ "$have_j1" = 1 ]; then # the 1-worker jwtgate next to the other one
			# shellcheck disable=SC2206
			[ $((round % 2)) = 1 ] && order=(${order[@]/jwtgate/jwtgate jwtgate1w}) || order=(${order[@]/jwtgate/jwtgate1w jwtgate})
		fi
		# cpu_us: each proxy's own CPU time per request (the upstream's for direct).
		for t in "${order[@]}"; do
			case $t in
			direct) CPU_PID=$UPSTREAM_PID measure direct "$U/bar" ;;
			jwtgate) [ "$have_j" = 1 ] && CPU_PID=$JWTGATE_PID measure jwtgate "$J/bar" ;;
			jwtgate1w) CPU_PID=$JWTGATE1_PID measure "jwtgate 1w" "$J1/bar" ;;
			nginx) [ "$have_n" = 1 ] && CPU_PID=$NGINX_PID measure nginx "$N/bar" ;;
			haproxy) [ "$have_h" = 1 ] && CPU_PID=$HAPROXY_PID measure haproxy "$H/bar" ;;
			esac
		done
	done
	[ -n "${SNAP0:-}" ] && THREAD_SPLIT=$(thread_split "$SNAP0" "$(thread_snap "$JWTGATE_PID")")
	[ -n "${SNAP1W:-}" ] && THREAD_SPLIT1W=$(thread_split "$SNAP1W" "$(thread_snap "$JWTGATE1_PID")" 1)
	[ -n "${JWTGATE_PID:-}" ] && stop_pid "$JWTGATE_PID"
	[ -n "${JWTGATE1_PID:-}" ] && stop_pid "$JWTGATE1_PID"
	[ -n "${NGINX_PID:-}" ] && stop_pid "$NGINX_PID"
	[ -n "${HAPROXY_PID:-}" ] && stop_pid "$HAPROXY_PID"
elif [ "$WORKERS" -gt 1 ]; then
	# BENCH_WORKERS > 1 with --jwt: the cached rows only (the cache-miss rows are a per-core measure),
	# every server up at once and visited in turn, so each figure has neighbours in time.
	echo "run.sh: JWT with $WORKERS workers: cached rows, $ROUNDS interleaved rounds" >&2
	have_bar=0 have_foo=0 have_j1=0 have_n=0 have_h=0
	if start_jwtgate "$WORK/jwtgate.yaml"; then
		check_status "jwtgate /bar no-auth" "$J/bar" 200 "$AUTH_HEADER" && have_bar=1
		verifies_jwt "jwtgate /foo cached" "$J/foo" && have_foo=1
		if start_jwtgate1; then
			verifies_jwt "jwtgate 1w /foo cached" "$J1/foo" && have_j1=1
		else
			unavailable "jwtgate 1w /foo cached" "$JWTGATE_WHY"
		fi
	else
		unavailable "jwtgate /bar no-auth" "$JWTGATE_WHY"
		unavailable "jwtgate /foo cached" "$JWTGATE_WHY"
	fi
	if start_nginx; then
		check_status "nginx /foo no-auth" "$N/foo" 200 "$AUTH_HEADER" && have_n=1
	else
		unavailable "nginx /foo no-auth" "did not start: $(tail -1 "$WORK/nginx.log")"
	fi
	if start_haproxy; then
		verifies_jwt "haproxy /foo jwt_verify" "$H/foo" && have_h=1
	else
		unavailable "haproxy /foo jwt_verify" "$HAPROXY_WHY"
	fi
	[ "$have_foo" = 1 ] && SNAP0=$(thread_snap "$JWTGATE_PID")
	[ "$have_j1" = 1 ] && SNAP1W=$(thread_snap "$JWTGATE1_PID")
	for round in $(seq 1 "$ROUNDS"); do
		echo "run.sh: round $round/$ROUNDS" >&2
		order=(direct bar foo foo1 nginx haproxy)
		[ $((round % 2)) = 0 ] && order=(haproxy nginx foo1 foo bar direct)
		for t in "${order[@]}"; do
			case $t in
			direct) CPU_PID=$UPSTREAM_PID measure direct "$U/foo" "" "$AUTH_HEADER" ;;
			bar) [ "$have_bar" = 1 ] && CPU_PID=$JWTGATE_PID measure "jwtgate /bar no-auth" "$J/bar" "" "$AUTH_HEADER" ;;
			foo) [ "$have_foo" = 1 ] && CPU_PID=$JWTGATE_PID measure "jwtgate /foo cached" "$J/foo" "" "$AUTH_HEADER" ;;
			foo1) [ "$have_j1" = 1 ] && CPU_PID=$JWTGATE1_PID measure "jwtgate 1w /foo cached" "$J1/foo" "" "$AUTH_HEADER" ;;
			nginx) [ "$have_n" = 1 ] && CPU_PID=$NGINX_PID measure "nginx /foo no-auth" "$N/foo" "" "$AUTH_HEADER" ;;
			haproxy) [ "$have_h" = 1 ] && CPU_PID=$HAPROXY_PID measure "haproxy /foo jwt_verify" "$H/foo" "" "$AUTH_HEADER" ;;
			esac
		done
	done
	[ -n "${SNAP0:-}" ] && THREAD_SPLIT=$(thread_split "$SNAP0" "$(thread_snap "$JWTGATE_PID")")
	[ -n "${SNAP1W:-}" ] && THREAD_SPLIT1W=$(thread_split "$SNAP1W" "$(thread_snap "$JWTGATE1_PID")" 1)
	for pid in "${JWTGATE_PID:-}" "${JWTGATE1_PID:-}" "${NGINX_PID:-}" "${HAPROXY_PID:-}"; do
		[ -n "$pid" ] && stop_pid "$pid"
	done
	STAGE_LINE="skipped: BENCH_WORKERS=$WORKERS measures the cached rows only"
	STAGE_PERF="skipped"
else
	echo "run.sh: JWT, Authorization: Bearer <RS256, RSA-2048>" >&2
	measure direct "$U/foo" "" "$AUTH_HEADER"
	if start_jwtgate "$WORK/jwtgate.yaml"; then
		# The cached-vs-no-auth ratio compares two rows of one process: interleave them in rounds.
		ok_bar=0 ok_foo=0
		check_status "jwtgate /bar no-auth" "$J/bar" 200 "$AUTH_HEADER" && ok_bar=1
		verifies_jwt "jwtgate /foo cached" "$J/foo" && ok_foo=1
		CPU_PID=$JWTGATE_PID
		for round in $(seq 1 "$ROUNDS"); do
			if [ $((round % 2)) = 1 ]; then
				[ "$ok_bar" = 1 ] && measure "jwtgate /bar no-auth" "$J/bar" "" "$AUTH_HEADER"
				[ "$ok_foo" = 1 ] && measure "jwtgate /foo cached" "$J/foo" "" "$AUTH_HEADER"
			else
				[ "$ok_foo" = 1 ] && measure "jwtgate /foo cached" "$J/foo" "" "$AUTH_HEADER"
				[ "$ok_bar" = 1 ] && measure "jwtgate /bar no-auth" "$J/bar" "" "$AUTH_HEADER"
			fi
		done
		CPU_PID=""
		stop_pid "$JWTGATE_PID"
	else
		unavailable "jwtgate /bar no-auth" "$JWTGATE_WHY"
		unavailable "jwtgate /foo cached" "$JWTGATE_WHY"
	fi
	if start_nginx; then
		check_status "nginx /foo no-auth" "$N/foo" 200 "$AUTH_HEADER" && measure "nginx /foo no-auth" "$N/foo" "" "$AUTH_HEADER"
	else
		unavailable "nginx /foo no-auth" "did not start: $(tail -1 "$WORK/nginx.log")"
	fi
	stop_pid "$NGINX_PID"
	HAPROXY_UP=0
	if start_haproxy; then
		HAPROXY_UP=1
		if verifies_jwt "haproxy /foo jwt_verify" "$H/foo"; then
			measure "haproxy /foo jwt_verify" "$H/foo" "" "$AUTH_HEADER"
		fi
	else
		unavailable "haproxy /foo jwt_verify" "$HAPROXY_WHY"
	fi
	# The miss ratio compares two proxies on the same tokens: both are up, so interleave them in rounds
	# (the order reversed every other round) and pair the rounds, as the cached rows are.
	DISTINCT_DONE=0
	if start_jwtgate "$WORK/jwtgate-nocache.yaml"; then
		if verifies_jwt "jwtgate /foo miss" "$J/foo"; then
			for round in $(seq 1 "$ROUNDS"); do
				order=(J H)
				[ $((round % 2)) = 0 ] && order=(H J)
				for who in "${order[@]}"; do
					if [ "$who" = J ]; then
						CPU_PID=$JWTGATE_PID measure "jwtgate /foo miss" "$J/foo" "$WORK/tokens.txt"
					elif [ "$HAPROXY_UP" = 1 ]; then
						measure "haproxy /foo distinct" "$H/foo" "$WORK/tokens.txt"
						DISTINCT_DONE=1
					fi
				done
			done
			perf_stage "$J/foo"
		fi
		stop_pid "$JWTGATE_PID"
	else
		unavailable "jwtgate /foo miss" "$JWTGATE_WHY"
	fi
	if [ "$HAPROXY_UP" = 1 ]; then
		[ "$DISTINCT_DONE" = 1 ] || measure "haproxy /foo distinct" "$H/foo" "$WORK/tokens.txt"
		stop_pid "$HAPROXY_PID"
	else
		unavailable "haproxy /foo distinct" "$HAPROXY_WHY"
	fi
	echo "  openssl speed -seconds 5 -mr rsa2048 (per core: sign then verify, 5 s each)" >&2
	# shellcheck disable=SC2086
	speed=$($PROXY_TASKSET openssl speed -seconds 5 -mr rsa2048 2>/dev/null | grep '^+F2:' | tail -1)
	# OpenSSL 3.0: +F2:<index>:<bits>:<signs per second>:<verifies per second>
	VERIFY_PER_S=$(awk -F: '$5 > 0 { printf "%.0f", $5 }' <<<"$speed")
	ROWS+=("openssl rsa2048 verify/s")
	RPS["openssl rsa2048 verify/s"]=${VERIFY_PER_S:-}
	[ -n "$VERIFY_PER_S" ] || NOTE["openssl rsa2048 verify/s"]="openssl speed gave no figure"
	# The JWT stage alone, in one process on one core, next to the raw RSA verify (bench/jwt_stage.c):
	# what a cache miss costs jwtgate, without the kernel's share of a proxied request.
	if [ -x "$JWT_STAGE_BIN" ]; then
		echo "  $JWT_STAGE_BIN (auth_check per token: miss, hit; raw EVP_PKEY_verify), $STAGE_ROUNDS rounds" >&2
		# shellcheck disable=SC2086
		STAGE_LINE=$($PROXY_TASKSET "$JWT_STAGE_BIN" "$WORK/jwtgate.yaml" jwt-bench "$WORK/tokens.txt" \
			"$WORK/pub.pem" "$STAGE_ROUNDS" 2>"$WORK/jwt_stage.log" | grep '^JGSTAGE ') ||
			STAGE_LINE="unavailable: $(tail -1 "$WORK/jwt_stage.log")"
	else
		STAGE_LINE="unavailable: $JWT_STAGE_BIN not built (ninja -C build bench/jwt_stage)"
	fi
fi
stop_pid "$UPSTREAM_PID"

# ---- report ----

report() {
	local row
	echo "jwtgate benchmark ($MODE) $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command: ${BENCH_COMMAND}"
	echo "host: $(uname -srm), $(nproc) CPUs online, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
	echo "wrk: -t$THREADS -c$CONNECTIONS -d$DURATION keep-alive, medians of $ROUNDS interleaved rounds$([ "$MODE" = jwt ] && echo " (jwtgate rows; haproxy /foo distinct in the rounds of jwtgate /foo miss)"); proxy CPUs: ${PROXY_CPUS:-any}; load CPUs: ${LOAD_CPUS:-any}"
	echo "versions: $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), $("$HAPROXY_BIN" -v 2>&1 | head -1 | awk '{print "haproxy " $3}'), $("$WRK_BIN" -v 2>&1 | head -1 | awk '{print $1, $2}'), $( [ -x "$JWTGATE_BIN" ] && timeout 2 "$JWTGATE_BIN" --version 2>/dev/null | head -1 || echo "jwtgate unavailable")"
	if [ "$WORKERS" -gt 1 ]; then
		echo "upstream: nginx, 1 worker, return 200 \"ok\"; every proxy: $WORKERS workers/threads (jwtgate workers: $WORKERS, nginx worker_processes $WORKERS, HAProxy nbthread $WORKERS), upstream keep-alive; rows 'jwtgate 1w': the same jwtgate with workers: 1"
		echo "note: wrk, the upstream and the proxy share this machine's $(nproc) CPUs: the ratios are those of proxies competing with their load for the cores, not per-core figures"
	else
		echo "upstream: nginx, 1 worker, return 200 \"ok\"; every proxy: 1 worker/thread, upstream keep-alive"
	fi
	[ "$MODE" = jwt ] && [ "$WORKERS" = 1 ] && echo "tokens: RS256 RSA-2048; cache-miss runs rotate $MISS_TOKENS distinct tokens, jwtgate with tokenCache size 0"
	echo
	printf '%-26s %12s %9s %9s %8s %7s %9s  %s\n' target req/s p50_ms p99_ms non-2xx errors cpu_us note
	for row in "${ROWS[@]}"; do
		printf '%-26s %12s %9s %9s %8s %7s %9s  %s\n' "$row" "${RPS[$row]:--}" "$(ms "${P50[$row]:-}")" \
			"$(ms "${P99[$row]:-}")" "${NON2XX[$row]:--}" "${ERRS[$row]:--}" "${CPU[$row]:--}" "${NOTE[$row]:-}"
	done
	echo
	if [ "$MODE" = http1 ]; then
		echo "jwtgate/nginx   $(ratio jwtgate nginx)$(paired jwtgate nginx)"
		echo "jwtgate/haproxy $(ratio jwtgate haproxy)$(paired jwtgate haproxy)"
		echo "p99 jwtgate/nginx   $(paired jwtgate nginx p99 | sed 's/^  //')   (at most 1: no worse)"
		echo "p99 jwtgate/haproxy $(paired jwtgate haproxy p99 | sed 's/^  //')"
		echo "jwtgate/direct  $(ratio jwtgate direct)"
		if [ "$WORKERS" -gt 1 ]; then
			echo "jwtgate/jwtgate 1w  $(ratio jwtgate "jwtgate 1w")$(paired jwtgate "jwtgate 1w")   ($WORKERS workers over 1)"
		fi
		# CPU per request, a per-core cost less swayed by how the three processes share the cores.
		local cj=${CPU[jwtgate]:-} cn=${CPU[nginx]:-} ch=${CPU[haproxy]:-}
		if [ -n "$cj" ] && [ -n "$cn" ] && [ -n "$ch" ]; then
			awk -v j="$cj" -v n="$cn" -v h="$ch" 'BEGIN { if (j > 0) printf "CPU per request: nginx/jwtgate %.2f, haproxy/jwtgate %.2f (above 1: jwtgate cheaper)\n", n / j, h / j }'
		fi
	else
		echo "jwtgate cached/haproxy jwt_verify      $(ratio "jwtgate /foo cached" "haproxy /foo jwt_verify")"
		echo "jwtgate cached/nginx no-auth          $(ratio "jwtgate /foo cached" "nginx /foo no-auth")"
		echo "jwtgate cached/jwtgate no-auth        $(ratio "jwtgate /foo cached" "jwtgate /bar no-auth")$(paired "jwtgate /foo cached" "jwtgate /bar no-auth")"
		echo "jwtgate cached/direct                 $(ratio "jwtgate /foo cached" direct)"
		if [ "$WORKERS" -gt 1 ]; then
			echo "paired, $WORKERS workers each:"
			echo "  jwtgate cached/haproxy jwt_verify    $(paired "jwtgate /foo cached" "haproxy /foo jwt_verify" | sed 's/^  //')"
			echo "  jwtgate cached/nginx no-auth        $(paired "jwtgate /foo cached" "nginx /foo no-auth" | sed 's/^  //')"
			echo "  jwtgate cached/jwtgate 1w cached    $(ratio "jwtgate /foo cached" "jwtgate 1w /foo cached")$(paired "jwtgate /foo cached" "jwtgate 1w /foo cached")   ($WORKERS workers over 1)"
			local r
			for r in "jwtgate /foo cached" "jwtgate 1w /foo cached" "nginx /foo no-auth" "haproxy /foo jwt_verify"; do
				[ -n "${CPU[$r]:-}" ] && printf '  CPU per request %-24s %s us\n' "$r" "${CPU[$r]}"
			done
		fi
		echo "jwtgate miss/haproxy distinct         $(ratio "jwtgate /foo miss" "haproxy /foo distinct")$(paired "jwtgate /foo miss" "haproxy /foo distinct")"
		echo "jwtgate miss/openssl verify per core  $(ratio "jwtgate /foo miss" "openssl rsa2048 verify/s")"
		# What a cache miss adds to a request, in units of one raw RSA-2048 verification (target <= 1.25).
		local miss=${RPS["jwtgate /foo miss"]:-} noauth=${RPS["jwtgate /bar no-auth"]:-} osl=${RPS["openssl rsa2048 verify/s"]:-}
		if [ -n "$miss" ] && [ -n "$noauth" ] && [ -n "$osl" ]; then
			awk -v m="$miss" -v n="$noauth" -v o="$osl" 'BEGIN { printf "jwtgate miss extra wall time / one verify  %.2f (%.1f us over no-auth, verify %.1f us)\n", (1e6/m - 1e6/n) / (1e6/o), 1e6/m - 1e6/n, 1e6/o }'
		fi
		# The same in the proxy's own CPU time per request (cpu_us column): the per-core cost, kernel
		# included (a saturated proxy wakes its idle peers more often: see bench/README.md).
		local cmiss=${CPU["jwtgate /foo miss"]:-} cnoauth=${CPU["jwtgate /bar no-auth"]:-}
		if [ -n "$cmiss" ] && [ -n "$cnoauth" ] && [ -n "$osl" ]; then
			awk -v m="$cmiss" -v n="$cnoauth" -v o="$osl" 'BEGIN { printf "jwtgate miss extra CPU / one verify      %.2f (%.1f us CPU over no-auth, verify %.1f us)\n", (m - n) / (1e6/o), m - n, 1e6/o }'
		fi
		echo
		echo "JWT stage in process (bench/jwt_stage: auth_check on $MISS_TOKENS distinct tokens, CPU time, medians):"
		if [[ "${STAGE_LINE:-}" == JGSTAGE* ]]; then
			awk -v l="$STAGE_LINE" -v o="${osl:-0}" 'BEGIN {
				n = split(l, f, " "); for (i = 2; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
				printf "  raw RSA-2048 verify (EVP_PKEY_verify on a digest)  %7.2f us", v["raw_us"]
				if (o > 0) printf "   (openssl speed: %.2f us)", 1e6 / o
				printf "\n  cache miss (parse, claims, SHA-256, verify, insert) %7.2f us\n", v["miss_us"]
				printf "  cache hit                                          %7.3f us\n", v["hit_us"]
				printf "jwtgate miss stage / raw verify        %.2f  (target <= 1.25)\n", v["miss_over_raw"]
			}'
			if [[ "$STAGE_PERF" == cpu_us=* ]]; then
				awk -v l="$STAGE_PERF" -v l2="$STAGE_LINE" 'BEGIN {
					n = split(l " " l2, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
					printf "In the proxy (perf, one more miss run): %.1f us CPU per request, %.0f%% of it in the JWT stage\n", v["cpu_us"], v["share"] * 100
					printf "  (auth/jwt/jwk/jsonscan/b64url/token_cache and libcrypto) = %.1f us; raw verify just before/after: %.2f us\n", v["stage_us"], v["near_raw_us"]
					if (v["near_raw_us"] > 0) printf "jwtgate miss stage in the proxy / raw verify  %.2f\n", v["stage_us"] / v["near_raw_us"]
				}'
			else
				echo "In the proxy (perf): ${STAGE_PERF:-not run}"
			fi
		else
			echo "  ${STAGE_LINE:-not run}"
		fi
	fi
	if [ -n "${THREAD_SPLIT:-}" ]; then
		echo
		echo "jwtgate ($WORKERS workers): its threads from the first round to the last (all rows' runs; it is idle in the others'):"
		echo "$THREAD_SPLIT"
		if [ -n "${THREAD_SPLIT1W:-}" ]; then
			echo "jwtgate 1w: its threads over the same rounds:"
			echo "$THREAD_SPLIT1W"
		fi
	fi
}

BENCH_COMMAND="$([ "$WORKERS" -gt 1 ] && echo "BENCH_WORKERS=$WORKERS ")$0 $*"
mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M%S)-$MODE.txt"
report | tee "$RESULT_FILE"
echo "run.sh: saved $RESULT_FILE" >&2
