#!/bin/bash
# bench/ab_h2.sh: a paired A/B benchmark of two jwtgate binaries over h2c (prior knowledge), h2load
# visiting A and B in turn for BENCH_ROUNDS rounds, the order reversed every other round; prints the
# median req/s of each and the paired per-round ratios B/A, and saves the report to
# bench/results/<date>-ab-h2-<label>.txt. The HTTP/2 counterpart of bench/ab.sh (same upstream,
# config template and pinning: proxy on CPU 0, h2load and the upstream on the others). Not a test.
#
#   JWTGATE_A=/tmp/b0/jwtgate JWTGATE_B=build/jwtgate bench/ab_h2.sh --label h2mem
set -u -o pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SCRIPT=ab_h2.sh
PY=python3
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
BENCH_ENV=$(env | grep -E '^(JWTGATE_[AB]|BENCH_[A-Z_]+|H2LOAD_BIN|NGINX_BIN)=' | sort | tr '\n' ' ')
DURATION=${BENCH_DURATION:-3}   # seconds per h2load run
ROUNDS=${BENCH_ROUNDS:-10}      # rounds; each runs A and B once
CLIENTS=${BENCH_H2_CLIENTS:-4}  # h2load -c
STREAMS=${BENCH_H2_STREAMS:-1}  # h2load -m (concurrent streams per connection)
bench_cpus
JWTGATE_A=${JWTGATE_A:-$ROOT/build/jwtgate}
JWTGATE_B=${JWTGATE_B:-$ROOT/build/jwtgate}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
H2LOAD_BIN=${H2LOAD_BIN:-h2load}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
HOST_HEADER="Host: www.example.com"
URL_PATH=/bar
LABEL=""
ARGS=("$@")
die() {
	echo "ab_h2.sh: $*" >&2
	exit 1
}
while [ $# -gt 0 ]; do
	case "$1" in
	--label)
		[ $# -ge 2 ] || die "--label needs a value"
		LABEL=$2
		shift
		;;
	--help | -h)
		echo "Usage: $0 --label NAME   (JWTGATE_A, JWTGATE_B, BENCH_ROUNDS=$ROUNDS, BENCH_DURATION=$DURATION s,"
		echo "       BENCH_H2_CLIENTS=$CLIENTS, BENCH_H2_STREAMS=$STREAMS, BENCH_PROXY_CPUS, BENCH_LOAD_CPUS)"
		exit 0
		;;
	*) die "unknown argument '$1'" ;;
	esac
	shift
done
[[ "$LABEL" =~ ^[A-Za-z0-9._-]+$ ]] || die "--label NAME (letters, digits, '.', '_', '-') is required"
for tool in "$H2LOAD_BIN" "$NGINX_BIN" curl openssl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install nghttp2-client nginx-light curl)"
done
WORK=$(mktemp -d /tmp/jwtgate-bench-abh2.XXXXXX) || die "cannot create a temporary folder"
mkdir -p "$WORK/tmp"
LOAD_TASKSET=$(taskset_prefix "$LOAD_CPUS")
UPSTREAM_PORT=$(free_port)
declare -A PORT PID BIN RPS_ALL FAILED
BIN[A]=$JWTGATE_A
BIN[B]=$JWTGATE_B
make_keys || die "cannot make the RSA key and JWKS"
render "$BENCH_DIR/nginx-upstream.conf.in" "$WORK/nginx-upstream.conf" DIR="$WORK" UPSTREAM_PORT="$UPSTREAM_PORT"
start upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-upstream.error.log" -c "$WORK/nginx-upstream.conf"
wait_ready "$STARTED_PID" "$UPSTREAM_PORT" || die "upstream nginx did not start"
UPSTREAM_PID=$STARTED_PID
for v in A B; do
	[ -x "${BIN[$v]}" ] || die "no jwtgate binary at JWTGATE_$v=${BIN[$v]}"
	PORT[$v]=$(free_port)
	render "$BENCH_DIR/jwtgate.yaml.in" "$WORK/jwtgate-$v.yaml" DIR="$WORK" UPSTREAM_PORT="$UPSTREAM_PORT" \
		JWKS="$WORK/jwks.json" PORT="${PORT[$v]}" TOKEN_CACHE_SIZE=4096
	start "jwtgate-$v" "$PROXY_CPUS" "${BIN[$v]}" -c "$WORK/jwtgate-$v.yaml"
	PID[$v]=$STARTED_PID
	wait_ready "${PID[$v]}" "${PORT[$v]}" || die "variant $v did not start"
	[ "$(curl -s -o /dev/null --http2-prior-knowledge -w '%{http_code}' -H "$HOST_HEADER" \
		"http://127.0.0.1:${PORT[$v]}$URL_PATH")" = 200 ] || die "variant $v: h2c GET $URL_PATH is not 200"
done
for round in $(seq 1 "$ROUNDS"); do
	order=(A B)
	[ $((round % 2)) = 0 ] && order=(B A)
	for v in "${order[@]}"; do
		# shellcheck disable=SC2086
		out=$($LOAD_TASKSET "$H2LOAD_BIN" -D "$DURATION" --warm-up-time=1 -c "$CLIENTS" -m "$STREAMS" \
			-H ":authority: www.example.com" "http://127.0.0.1:${PORT[$v]}$URL_PATH" 2>&1)
		rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
		failed=$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' <<<"$out")
		RPS_ALL[$v]="${RPS_ALL[$v]:-} ${rps:-0}"
		FAILED[$v]=$((${FAILED[$v]:-0} + ${failed:-1}))
		echo "ab_h2.sh: round $round $v ${rps:-?} req/s" >&2
	done
done
for v in A B; do stop_pid "${PID[$v]}"; done
stop_pid "$UPSTREAM_PID"
STAMP=$(date -u +%Y-%m-%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$STAMP-ab-h2-$LABEL.txt"
{
	echo "jwtgate h2c A/B benchmark ($LABEL) $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command: ${BENCH_ENV}bench/ab_h2.sh ${ARGS[*]}"
	echo "host: $(uname -srm), $(nproc) CPUs online; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "h2load: -D $DURATION --warm-up-time=1 -c $CLIENTS -m $STREAMS, GET $URL_PATH over h2c, $ROUNDS rounds of A and B (A first in odd rounds); proxy CPUs: ${PROXY_CPUS:-any}; load CPUs: ${LOAD_CPUS:-any}"
	echo "upstream: nginx, 1 worker, return 200 \"ok\"; each variant: bench/jwtgate.yaml.in (workers: 1)"
	for v in A B; do
		echo "$v: ${BIN[$v]} (sha256 $(sha256sum "${BIN[$v]}" | cut -c1-12)), median $(median ${RPS_ALL[$v]}) req/s, failed requests ${FAILED[$v]}"
		echo "   per round:${RPS_ALL[$v]}"
	done
	round_ratios "${RPS_ALL[B]}" "${RPS_ALL[A]}" | sort -g | awk '{ r[NR] = $1; s = s sprintf(" %.3f", $1); if ($1 < 1) lo++ }
		END { if (NR) printf "B/A req/s paired: median %.3f, range %.3f-%.3f, below 1 in %d of %d rounds\n  sorted:%s\n",
			r[int((NR + 1) / 2)], r[1], r[NR], lo, NR, s }'
} | tee "$OUT"
echo "saved $OUT" >&2
