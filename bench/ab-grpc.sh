#!/bin/bash
# bench/ab-grpc.sh: A/B of two jwtgate binaries on run-grpc.sh's workload: unary /yages.Echo/Ping
# with a Bearer RS256 token, h2load -n -c -m as run-grpc.sh, one upstream (bench/grpc_upstream) shared
# by both. Both variants are up at once (the idle one costs nothing); each of BENCH_ROUNDS rounds runs
# h2load against A then B, in the other order every other round. Prints the median calls/s and CPU
# time per call of each, and the per-round ratios B/A (their median is the paired figure), saved to
# bench/results/<date>-ab-grpc-<label>.txt.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

ROUNDS=${BENCH_ROUNDS:-10}
REQUESTS=${BENCH_REQUESTS:-100000}
CLIENTS=${BENCH_CLIENTS:-16}
STREAMS=${BENCH_STREAMS:-32}
THREADS=${BENCH_THREADS:-1}
PROXY_CPUS=${BENCH_PROXY_CPUS:-}
LOAD_CPUS=${BENCH_LOAD_CPUS:-}
BUILD=${BENCH_BUILD:-$ROOT/build}
JWTGATE_A=${JWTGATE_A:-$BUILD/jwtgate}
JWTGATE_B=${JWTGATE_B:-$BUILD/jwtgate}
JWTGATE_TOKEN_BIN=${JWTGATE_TOKEN_BIN:-$BUILD/jwtgate-token}
GRPC_UPSTREAM_BIN=${GRPC_UPSTREAM_BIN:-$BUILD/bench/grpc_upstream}
H2LOAD_BIN=${H2LOAD_BIN:-h2load}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
PY=${BENCH_PYTHON:-/usr/bin/python3}
AUTHORITY=grpc.example.com
BENCH_COMMAND="$0 $*"
LABEL=""

usage() {
	cat <<EOF
Usage: $0 --label NAME
Environment (defaults): JWTGATE_A=$JWTGATE_A JWTGATE_B=$JWTGATE_B
  BENCH_ROUNDS=$ROUNDS BENCH_REQUESTS=$REQUESTS BENCH_CLIENTS=$CLIENTS BENCH_STREAMS=$STREAMS BENCH_THREADS=$THREADS
  BENCH_PROXY_CPUS='$PROXY_CPUS' BENCH_LOAD_CPUS='$LOAD_CPUS' (e.g. 0 and 1; default: unpinned, as run-grpc.sh)
  GRPC_UPSTREAM_BIN=$GRPC_UPSTREAM_BIN JWTGATE_TOKEN_BIN=$JWTGATE_TOKEN_BIN BENCH_RESULTS_DIR=$RESULTS_DIR
EOF
}
while [ $# -gt 0 ]; do
	case "$1" in
	--label) LABEL=${2:-}; shift 2 ;;
	--help | -h) usage; exit 0 ;;
	*) echo "ab-grpc.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done
die() {
	echo "ab-grpc.sh: $*" >&2
	exit 1
}
[ -n "$LABEL" ] || { usage >&2; exit 2; }
for tool in "$H2LOAD_BIN" "$PY" openssl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
for b in "$JWTGATE_A" "$JWTGATE_B" "$GRPC_UPSTREAM_BIN" "$JWTGATE_TOKEN_BIN"; do
	[ -x "$b" ] || die "no executable $b"
done

WORK=$(mktemp -d /tmp/jwtgate-ab-grpc.XXXXXX) || die "cannot create a temporary folder"
PIDS=()
SCRIPT=ab-grpc.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
LOAD_TASKSET=$(taskset_prefix "$LOAD_CPUS")

wait_port() { # PID PORT
	local pid=$1 port=$2 i
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		"$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.5)" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

printf '\0\0\0\0\0' >"$WORK/ping.bin"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/key.pem" 2>/dev/null || die "openssl genpkey failed"
"$PY" - "$WORK/key.pem" >"$WORK/jwks.json" <<'EOF' || die "cannot write the JWKS (python3-cryptography)"
import base64, json, sys
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
pub = key.public_key().public_numbers()
b64 = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig", "n": b64(pub.n), "e": b64(pub.e)}]}))
EOF
TOKEN=$("$JWTGATE_TOKEN_BIN" --key "$WORK/key.pem" --kid bench --alg RS256 --iss bench --sub bench-user --exp-in 2h) ||
	die "jwtgate-token failed"

UPSTREAM_PORT=$(free_port)
declare -A PORT=([A]=$(free_port) [B]=$(free_port)) BIN=([A]=$JWTGATE_A [B]=$JWTGATE_B) PID=()
for v in A B; do
	grpc_jwtgate_yaml "${PORT[$v]}" "$UPSTREAM_PORT" "$AUTHORITY" "$WORK/jwks.json" >"$WORK/jwtgate-$v.yaml"
done

start upstream "$LOAD_CPUS" "$GRPC_UPSTREAM_BIN" --port "$UPSTREAM_PORT"
wait_port "$STARTED_PID" "$UPSTREAM_PORT" || die "gRPC upstream did not start"
for v in A B; do
	start "jwtgate-$v" "$PROXY_CPUS" "${BIN[$v]}" -c "$WORK/jwtgate-$v.yaml"
	PID[$v]=$STARTED_PID
	wait_port "${PID[$v]}" "${PORT[$v]}" || die "jwtgate $v did not start: $(tail -1 "$WORK/jwtgate-$v.log")"
done

declare -A CPS_ALL=([A]="" [B]="") CPU_ALL=([A]="" [B]="")
RATIOS=()
CPU_RATIOS=()
TABLE=()
# run V: one h2load run against variant V; sets CPS (calls/s) and CPU_US (proxy CPU microseconds per call).
run() {
	local v=$1 raw="$WORK/h2load-$1.txt" t0 t1 ok tick
	tick=$(getconf CLK_TCK)
	t0=$(proc_cpu_ticks "${PID[$v]}")
	# shellcheck disable=SC2086
	$LOAD_TASKSET "$H2LOAD_BIN" -n"$REQUESTS" -c"$CLIENTS" -m"$STREAMS" -t"$THREADS" -d "$WORK/ping.bin" \
		-H "content-type: application/grpc" -H "te: trailers" -H ":authority: $AUTHORITY" \
		-H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/yages.Echo/Ping" >"$raw" 2>&1
	t1=$(proc_cpu_ticks "${PID[$v]}")
	CPS=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$raw")
	ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$raw")
	[ -n "$CPS" ] && [ "${ok:-0}" = "$REQUESTS" ] || die "variant $v: h2load failed or not all 2xx: $(tail -3 "$raw")"
	CPU_US=$(awk -v d=$((t1 - t0)) -v t="$tick" -v n="$REQUESTS" 'BEGIN { printf "%.2f", d * 1e6 / t / n }')
}

echo "ab-grpc.sh: $ROUNDS rounds of h2load -n$REQUESTS -c$CLIENTS -m$STREAMS, A=${BIN[A]} B=${BIN[B]}" >&2
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
	declare -A RC=() RU=()
	for v in $order; do
		run "$v"
		RC[$v]=$CPS
		RU[$v]=$CPU_US
		CPS_ALL[$v]+="$CPS "
		CPU_ALL[$v]+="$CPU_US "
	done
	ratio=$(awk -v a="${RC[A]}" -v b="${RC[B]}" 'BEGIN { printf "%.3f", b / a }')
	cratio=$(awk -v a="${RU[A]}" -v b="${RU[B]}" 'BEGIN { printf "%.3f", (a > 0 ? b / a : 0) }')
	RATIOS+=("$ratio")
	CPU_RATIOS+=("$cratio")
	TABLE+=("$(printf '%5s  %-4s %12s %12s %8s %8s %8s %8s' "$r" "${order// /}" "${RC[A]}" "${RC[B]}" "$ratio" "${RU[A]}" "${RU[B]}" "$cratio")")
	echo "  round $r ($order): A ${RC[A]} B ${RC[B]} calls/s, B/A $ratio; CPU us/call A ${RU[A]} B ${RU[B]}" >&2
done

report() {
	local below=0 x
	for x in "${RATIOS[@]}"; do
		awk -v x="$x" 'BEGIN { exit !(x < 1) }' && below=$((below + 1))
	done
	echo "jwtgate gRPC A/B ($LABEL) $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command: $BENCH_COMMAND"
	echo "host: $(uname -srm), $(nproc) CPUs online; proxy CPUs: ${PROXY_CPUS:-any}; load CPUs: ${LOAD_CPUS:-any}"
	echo "h2load: $ROUNDS rounds of -n$REQUESTS -c$CLIENTS -m$STREAMS -t$THREADS, unary /yages.Echo/Ping with a Bearer RS256 token, A then B (B then A every other round)"
	echo "A: ${BIN[A]} sha256 $(sha256sum "${BIN[A]}" | cut -c1-16)"
	echo "B: ${BIN[B]} sha256 $(sha256sum "${BIN[B]}" | cut -c1-16)"
	echo
	echo "median calls/s:       A $(median ${CPS_ALL[A]})  B $(median ${CPS_ALL[B]})"
	echo "median CPU us/call:   A $(median ${CPU_ALL[A]})  B $(median ${CPU_ALL[B]})"
	echo "calls/s B/A per round, median (paired): $(median "${RATIOS[@]}"); sorted: $(printf '%s\n' "${RATIOS[@]}" | sort -g | tr '\n' ' '); B below A in $below of $ROUNDS"
	echo "CPU per call B/A per round, median (paired): $(median "${CPU_RATIOS[@]}"); sorted: $(printf '%s\n' "${CPU_RATIOS[@]}" | sort -g | tr '\n' ' ')"
	echo
	printf '%5s  %-4s %12s %12s %8s %8s %8s %8s\n' round order "A calls/s" "B calls/s" "B/A" "A us" "B us" "B/A us"
	printf '%s\n' "${TABLE[@]}"
	echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
}
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$(date -u '+%Y%m%d-%H%M%S')-ab-grpc-$LABEL.txt"
report | tee "$OUT"
echo "ab-grpc.sh: saved $OUT" >&2
