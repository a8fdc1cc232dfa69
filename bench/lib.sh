# shellcheck shell=bash disable=SC2034 # (the tables measure() fills are read by the sourcing script)
# bench/lib.sh: helpers shared by run.sh, ab.sh and run-grpc.sh (sourced, not run): processes and
# ports, configs, and the wrk rounds with their medians and paired ratios.
# The sourcing script sets SCRIPT (its name, for messages) and PY (a python3) first, and WORK (its
# temporary folder) as soon as it has one; PIDS collects the pids that cleanup stops.

# stop_pid PID: SIGTERM, then SIGKILL after 5 s. Only our own children, by pid.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

[ -n "${PIDS+set}" ] || PIDS=()

# Stops every server the script started and removes its folder (BENCH_KEEP=1 keeps it). Also runs
# when the script exits before it made the folder (--help, a missing tool).
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	[ -n "${WORK:-}" ] || return 0
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "$SCRIPT: kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'echo "$SCRIPT: interrupted" >&2; exit 130' INT TERM HUP

taskset_prefix() { # CPUS: the taskset prefix for a CPU list, or nothing
	if [ -n "$1" ]; then echo "taskset -c $1"; fi
}

free_port() { # an ephemeral loopback port that was free a moment ago
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME CPUS CMD...: runs a server in the background, log in $WORK/NAME.log; sets STARTED_PID.
start() {
	local name=$1 cpus=$2
	shift 2
	# shellcheck disable=SC2086
	$(taskset_prefix "$cpus") "$@" >"$WORK/$name.log" 2>&1 &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
}

# bench_cpus: PROXY_CPUS and LOAD_CPUS from BENCH_PROXY_CPUS and BENCH_LOAD_CPUS. By default the proxy
# under test gets CPU 0 to itself and wrk and the upstream share the others, so the proxy is the
# bottleneck and its figure is its own per-core capacity, not how three processes happened to share
# the cores. "none" leaves placement to the scheduler.
bench_cpus() {
	local ncpu
	ncpu=$(nproc 2>/dev/null || echo 1)
	if [ "$ncpu" -ge 2 ]; then
		PROXY_CPUS=${BENCH_PROXY_CPUS-0}
		LOAD_CPUS=${BENCH_LOAD_CPUS-1-$((ncpu - 1))}
	else
		PROXY_CPUS=${BENCH_PROXY_CPUS-}
		LOAD_CPUS=${BENCH_LOAD_CPUS-}
	fi
	[ "$PROXY_CPUS" = none ] && PROXY_CPUS=""
	[ "$LOAD_CPUS" = none ] && LOAD_CPUS=""
	return 0
}

# render TEMPLATE OUT KEY=VALUE...: replaces @KEY@ with VALUE.
render() {
	local in=$1 out=$2 kv expr=()
	shift 2
	for kv in "$@"; do
		expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${expr[@]}" "$in" >"$out"
}

# wait_ready PID PORT: until the port answers HTTP (any status), for at most 10 s.
wait_ready() {
	local pid=$1 port=$2 i
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# status_of URL [HEADER...]: the HTTP status the route gives (Host: $HOST_HEADER).
status_of() {
	local url=$1 args=() h
	shift
	for h in "$@"; do args+=(-H "$h"); done
	curl -s -o /dev/null --max-time 5 -w '%{http_code}' -H "$HOST_HEADER" "${args[@]}" "$url"
}

proc_cpu_ticks() { # PID -> utime + stime in clock ticks of PID (all its threads) and its children (nginx's worker)
	local p t=0 v
	for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
		v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) && t=$((t + v))
	done
	echo "$t"
}

median() { # values... -> the median (the lower middle one for an even count)
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

# ---- wrk rounds ----
# rows_init: the tables measure() fills, by row name. The sourcing script sets WRK_BIN, THREADS,
# CONNECTIONS, DURATION, LOAD_TASKSET, HOST_HEADER and BENCH_DIR (for wrk.lua) before measuring.
rows_init() {
	declare -gA RPS=() P50=() P99=() NON2XX=() ERRS=() NOTE=() RPS_ALL=() P50_ALL=() P99_ALL=() CPU=() CPU_ALL=() REQS_ALL=()
	ROWS=()
	CPU_PID="" # when set, measure() also reports that process's CPU microseconds per request
}

# unavailable ROW REASON
unavailable() {
	ROWS+=("$1")
	NOTE[$1]="unavailable: $2"
	echo "  $1: unavailable: $2" >&2
}

# measure ROW URL [TOKEN_FILE] [HEADER...]: one wrk run; fills the row's figures.
measure() {
	local row=$1 url=$2 tokens=${3:-} out line
	shift 3 2>/dev/null || shift $#
	local hdr=() h
	for h in "$@"; do hdr+=(-H "$h"); done
	[[ " ${ROWS[*]} " == *" $row "* ]] || ROWS+=("$row")
	echo "  $row: wrk -t$THREADS -c$CONNECTIONS -d$DURATION $url" >&2
	local raw="$WORK/wrk-${row//[^A-Za-z0-9]/_}.txt" wrk_pid
	# In the background and then `wait`: a trapped signal interrupts `wait` at once, whereas a command
	# substitution would let wrk (which catches SIGINT to print its summary) keep the script going.
	# shellcheck disable=SC2086
	WRK_TOKENS="$tokens" $LOAD_TASKSET "$WRK_BIN" --latency -t"$THREADS" -c"$CONNECTIONS" \
		-d"$DURATION" -s "$BENCH_DIR/wrk.lua" -H "$HOST_HEADER" "${hdr[@]}" "$url" >"$raw" 2>&1 &
	wrk_pid=$!
	PIDS+=("$wrk_pid")
	local t0="" t1
	[ -n "$CPU_PID" ] && t0=$(proc_cpu_ticks "$CPU_PID")
	wait "$wrk_pid"
	[ -n "$t0" ] && t1=$(proc_cpu_ticks "$CPU_PID")
	out=$(cat "$raw")
	line=$(grep '^JGBENCH ' <<<"$out" | tail -1)
	if [ -z "$line" ]; then
		NOTE[$row]="wrk failed: $(tail -1 <<<"$out")"
		return
	fi
	# Several rounds of the same row: keep every figure, show the medians.
	RPS_ALL[$row]="${RPS_ALL[$row]:-} $(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")"
	P50_ALL[$row]="${P50_ALL[$row]:-} $(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")"
	P99_ALL[$row]="${P99_ALL[$row]:-} $(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")"
	REQS_ALL[$row]="${REQS_ALL[$row]:-} $(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")"
	# shellcheck disable=SC2086
	RPS[$row]=$(median ${RPS_ALL[$row]})
	# shellcheck disable=SC2086
	P50[$row]=$(median ${P50_ALL[$row]})
	# shellcheck disable=SC2086
	P99[$row]=$(median ${P99_ALL[$row]})
	if [ -n "$t0" ]; then
		# CPU time of the proxy per request: the per-core cost, whatever share of the cores it got.
		CPU_ALL[$row]="${CPU_ALL[$row]:-} $(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" \
			-v n="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")" \
			'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / hz / n; else print 0 }')"
		# shellcheck disable=SC2086
		CPU[$row]=$(median ${CPU_ALL[$row]})
	fi
	NON2XX[$row]=$((${NON2XX[$row]:-0} + $(sed -n 's/.* non2xx=\([0-9]*\).*/\1/p' <<<"$line")))
	ERRS[$row]=$((${ERRS[$row]:-0} + $(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")))
	if [ "${NON2XX[$row]}" != 0 ] || [ "${ERRS[$row]}" != 0 ]; then
		NOTE[$row]="INVALID: responses were not all 2xx"
	fi
}

ratio() { # A B: req/s of row A over row B, or n/a
	local a=${RPS[$1]:-} b=${RPS[$2]:-}
	if [ -n "$a" ] && [ -n "$b" ] && [ -z "${NOTE[$1]:-}" ] && [ -z "${NOTE[$2]:-}" ]; then
		awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
	else
		echo "n/a"
	fi
}

# round_ratios "X..." "Y...": the per-round ratios X/Y, one a line in round order;
# nothing when the two lists do not have the same number of rounds, or fewer than 2.
round_ratios() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, " "); m = split(b, y, " ")
		if (n != m || n < 2) exit
		for (i = 1; i <= n; i++) printf "%.6f\n", (y[i] > 0) ? x[i] / y[i] : 0
	}'
}

# paired A B [p99]: the median of the per-round ratios A/B (both measured in every round, next to each
# other), with the ratios themselves; empty when the rows do not have the same rounds. Paired ratios
# cancel the slow swings of a shared machine that medians of each row keep.
paired() {
	local a=${RPS_ALL[$1]:-} b=${RPS_ALL[$2]:-}
	if [ "${3:-}" = p99 ]; then
		a=${P99_ALL[$1]:-} b=${P99_ALL[$2]:-}
	fi
	[ -n "$a" ] && [ -n "$b" ] || return 0
	round_ratios "$a" "$b" | sort -g | awk '{ r[NR] = $1; s = s sprintf(" %.2f", $1) }
		END { if (NR) printf "  (paired: median %.2f of per-round%s)", r[int((NR + 1) / 2)], s }'
}

ms() { # microseconds -> ms
	[ -n "${1:-}" ] && awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }' || echo "-"
}

# make_keys: an RSA-2048 key for the run in $WORK/key.pem, its public key in $WORK/pub.pem (HAProxy's
# jwt_verify) and the JWKS made from it in $WORK/jwks.json (kid "bench", jwtgate's localJWKS).
make_keys() {
	local modulus
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/key.pem" 2>/dev/null || return 1
	openssl pkey -in "$WORK/key.pem" -pubout -out "$WORK/pub.pem" 2>/dev/null || return 1
	modulus=$(openssl rsa -in "$WORK/key.pem" -noout -modulus 2>/dev/null | sed 's/^Modulus=//')
	"$PY" - "$modulus" >"$WORK/jwks.json" <<'PYEOF'
import base64, json, sys
n = bytes.fromhex(sys.argv[1])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig",
                            "n": b64(n), "e": b64((65537).to_bytes(3, "big"))}]}))
PYEOF
}

# grpc_jwtgate_yaml PORT UPSTREAM_PORT AUTHORITY JWKS_FILE: the jwtgate config of the gRPC runs
# (bench/run-grpc.sh, bench/ab-grpc.sh): one worker, h2c listener, the H2C upstream, a GRPCRoute for
# AUTHORITY with a JWT policy on a local JWKS file.
grpc_jwtgate_yaml() {
	cat <<EOF
workers: 1
log: {level: warn}
listeners:
  - {name: h2c, address: "127.0.0.1:$1"}
backends:
  - name: yages
    protocol: H2C
    endpoints:
      - ip: {address: 127.0.0.1, port: $2}
grpcRoutes:
  - name: yages
    hostnames: ["$3"]
    rules:
      - backendRefs: [{name: yages}]
securityPolicies:
  - name: jwt-bench
    targetRefs: [{kind: GRPCRoute, name: yages}]
    jwt:
      providers:
        - name: bench
          localJWKS: {type: File, file: $4}
EOF
}
