#!/bin/bash
# bench/ab.sh: a paired A/B benchmark of two jwtgate variants (binary + config) in one run, on this
# machine: both up at once, wrk visiting A and B in turn for BENCH_ROUNDS rounds, the order reversed
# every other round. Prints the medians of req/s, p99 and CPU per request, and the paired per-round
# ratios B/A with every per-round value; saves it to bench/results/<date>-ab-<label>.txt. Not a test: it
# measures. See bench/README.md ("A/B runs").
#
#   JWTGATE_A=/tmp/wt-before/build/jwtgate JWTGATE_B=build/jwtgate bench/ab.sh --label metrics
#   bench/ab.sh --label admin-scrape --admin-b --scrape-b 100ms
#
# Same upstream, wrk settings and pinning as bench/run.sh (helpers in bench/lib.sh): proxy on CPU 0,
# wrk, the upstream and any scraper on the others. Every process is stopped by pid on exit.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SCRIPT=ab.sh
PY=python3
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

# The variables that define the run, as they were set, for the command line in the result file.
BENCH_ENV=$(env | grep -E '^(JWTGATE_[AB]|BENCH_[A-Z_]+|WRK_BIN|NGINX_BIN)=' | sort | tr '\n' ' ')

DURATION=${BENCH_DURATION:-3s}       # per wrk run
ROUNDS=${BENCH_ROUNDS:-20}           # rounds; each runs A and B once
CONNECTIONS=${BENCH_CONNECTIONS:-64} # keep-alive connections
THREADS=${BENCH_THREADS:-1}          # wrk threads
bench_cpus                           # PROXY_CPUS (both variants), LOAD_CPUS (wrk, upstream, scraper)
JWTGATE_A=${JWTGATE_A:-$ROOT/build/jwtgate}
JWTGATE_B=${JWTGATE_B:-$ROOT/build/jwtgate}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
WRK_BIN=${WRK_BIN:-wrk}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
HOST_HEADER="Host: www.example.com"
URL_PATH=/bar # the open route: proxying alone
MISS=0        # --miss: /foo with distinct RS256 tokens, tokenCache size 0 (every request a full verify)
MISS_TOKENS=${BENCH_MISS_TOKENS:-2000}
JWTGATE_TOKEN_BIN=${JWTGATE_TOKEN_BIN:-$ROOT/build/jwtgate-token}
TOKEN_FILE=""

LABEL=""
declare -A ADMIN=([A]=0 [B]=0) SCRAPE=([A]="" [B]="") SCRAPE_SPEC=([A]="" [B]="") EXTRA=([A]="" [B]="")
declare -A ALOG=([A]="" [B]="") # --access-log-a/-b FORMAT

usage() {
	cat <<EOF
Usage: $0 --label NAME [--admin-a] [--admin-b] [--scrape-a INTERVAL] [--scrape-b INTERVAL]
          [--yaml-a FILE] [--yaml-b FILE] [--access-log-a FORMAT] [--access-log-b FORMAT] [--miss]
  --label NAME        names the result file: bench/results/<date>-ab-NAME.txt
  --admin-a/-b        add an admin block (admin: {address: 127.0.0.1:<free port>}) to that variant
  --scrape-a/-b IVAL  GET that variant's admin /metrics every IVAL (100ms, 1s) during its rounds
                      (bench/scrape.py on the load CPUs); implies --admin-a/-b
  --yaml-a/-b FILE    append FILE (top-level YAML keys) to that variant's config
  --access-log-a/-b FORMAT  add accessLog: {path: <temporary folder>/access-A|B.log, format: FORMAT}
                      (text or json) to that variant; the report gives the lines and bytes written
  --miss              JWT cache misses, both variants: GET /foo (JWT route), tokenCache size 0, wrk rotating
                      through BENCH_MISS_TOKENS distinct RS256 tokens (minted with JWTGATE_TOKEN_BIN)
Both variants get bench/jwtgate.yaml.in (workers: 1, GET $URL_PATH open, upstream keep-alive) plus the above.
Environment (defaults):
  JWTGATE_A=$JWTGATE_A
  JWTGATE_B=$JWTGATE_B
  BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_CONNECTIONS=$CONNECTIONS BENCH_THREADS=$THREADS
  BENCH_PROXY_CPUS='$PROXY_CPUS' BENCH_LOAD_CPUS='$LOAD_CPUS'
  NGINX_BIN=$NGINX_BIN WRK_BIN=$WRK_BIN
  BENCH_RESULTS_DIR=$RESULTS_DIR  BENCH_KEEP=1 keeps the temporary folder (configs, logs, raw output)
EOF
}

die() {
	echo "ab.sh: $*" >&2
	exit 1
}

# seconds INTERVAL: 100ms, 0.5s, 2s -> seconds, or nothing when malformed.
seconds() {
	case "$1" in
	*ms) [[ "${1%ms}" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v v="${1%ms}" 'BEGIN { print v / 1000 }' ;;
	*s) [[ "${1%s}" =~ ^[0-9]+(\.[0-9]+)?$ ]] && echo "${1%s}" ;;
	esac
}

side() { echo "${1: -1}" | tr ab AB; } # --admin-b -> B

ARGS=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
	--label)
		[ $# -ge 2 ] || die "--label needs a value"
		LABEL=$2
		shift
		;;
	--admin-a | --admin-b) ADMIN[$(side "$1")]=1 ;;
	--scrape-a | --scrape-b)
		[ $# -ge 2 ] || die "$1 needs an interval (100ms, 1s)"
		v=$(side "$1")
		SCRAPE[$v]=$(seconds "$2")
		if [ -z "${SCRAPE[$v]}" ] || ! awk -v s="${SCRAPE[$v]}" 'BEGIN { exit !(s > 0) }'; then
			die "$1 '$2': give an interval such as 100ms or 1s"
		fi
		SCRAPE_SPEC[$v]=$2
		ADMIN[$v]=1
		shift
		;;
	--yaml-a | --yaml-b)
		[ $# -ge 2 ] || die "$1 needs a file"
		[ -r "$2" ] || die "$1: cannot read '$2'"
		EXTRA[$(side "$1")]=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
		shift
		;;
	--access-log-a | --access-log-b)
		[ $# -ge 2 ] || die "$1 needs a format (text, json)"
		case "$2" in text | json) ;; *) die "$1 '$2': text or json" ;; esac
		ALOG[$(side "$1")]=$2
		shift
		;;
	--miss) MISS=1 ;;
	--help | -h)
		usage
		exit 0
		;;
	*)
		echo "ab.sh: unknown argument '$1'" >&2
		usage >&2
		exit 2
		;;
	esac
	shift
done
[ -n "$LABEL" ] || die "--label NAME is required (it names the result file)"
[[ "$LABEL" =~ ^[A-Za-z0-9._-]+$ ]] || die "--label: letters, digits, '.', '_' and '-' only"

for tool in "$WRK_BIN" "$NGINX_BIN" curl "$PY" openssl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install wrk nginx-light curl)"
done
for v in A B; do
	bin=JWTGATE_$v
	[ -x "${!bin}" ] || die "no jwtgate binary at $bin=${!bin}"
done

WORK=$(mktemp -d /tmp/jwtgate-bench-ab.XXXXXX) || die "cannot create a temporary folder"
mkdir -p "$WORK/tmp"
LOAD_TASKSET=$(taskset_prefix "$LOAD_CPUS")
rows_init
CACHE_SIZE=4096
AUTH=()
if [ "$MISS" = 1 ]; then
	[ -x "$JWTGATE_TOKEN_BIN" ] || die "--miss needs jwtgate-token ($JWTGATE_TOKEN_BIN): ninja -C build jwtgate-token"
	URL_PATH=/foo
	CACHE_SIZE=0
fi

# ---- ports and configs ----
UPSTREAM_PORT=$(free_port)
declare -A PORT ADMIN_PORT PID BIN CONF
BIN[A]=$JWTGATE_A
BIN[B]=$JWTGATE_B
make_keys || die "cannot make the RSA key and JWKS" # the template's /foo policy reads a JWKS file
if [ "$MISS" = 1 ]; then
	echo "ab.sh: minting $MISS_TOKENS distinct tokens (--miss)" >&2
	TOKEN_FILE=$WORK/tokens.txt
	"$JWTGATE_TOKEN_BIN" --key "$WORK/key.pem" --kid bench --alg RS256 --iss bench --sub bench-user \
		--exp-in 2h --count "$MISS_TOKENS" >"$TOKEN_FILE" || die "jwtgate-token --count failed"
	AUTH=("Authorization: Bearer $(head -1 "$TOKEN_FILE")")
fi
render "$BENCH_DIR/nginx-upstream.conf.in" "$WORK/nginx-upstream.conf" DIR="$WORK" UPSTREAM_PORT="$UPSTREAM_PORT"
for v in A B; do
	PORT[$v]=$(free_port)
	CONF[$v]=$WORK/jwtgate-$v.yaml
	render "$BENCH_DIR/jwtgate.yaml.in" "${CONF[$v]}" DIR="$WORK" UPSTREAM_PORT="$UPSTREAM_PORT" \
		JWKS="$WORK/jwks.json" PORT="${PORT[$v]}" TOKEN_CACHE_SIZE=$CACHE_SIZE
	if [ "${ADMIN[$v]}" = 1 ]; then
		ADMIN_PORT[$v]=$(free_port)
		printf '\n# ab.sh --admin-%s\nadmin: {address: 127.0.0.1:%s}\n' "$(echo $v | tr AB ab)" \
			"${ADMIN_PORT[$v]}" >>"${CONF[$v]}"
	fi
	if [ -n "${ALOG[$v]}" ]; then
		# A file in the run's temporary folder (same filesystem as /tmp), appended to for the whole run.
		printf '\n# ab.sh --access-log-%s %s\naccessLog: {path: %s, format: %s}\n' "$(echo $v | tr AB ab)" \
			"${ALOG[$v]}" "$WORK/access-$v.log" "${ALOG[$v]}" >>"${CONF[$v]}"
	fi
	if [ -n "${EXTRA[$v]}" ]; then
		printf '\n# ab.sh --yaml-%s %s\n' "$(echo $v | tr AB ab)" "${EXTRA[$v]}" >>"${CONF[$v]}"
		cat "${EXTRA[$v]}" >>"${CONF[$v]}"
	fi
done

# ---- servers ----
echo "ab.sh: upstream nginx on 127.0.0.1:$UPSTREAM_PORT, work folder $WORK" >&2
start upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-upstream.error.log" -c "$WORK/nginx-upstream.conf"
UPSTREAM_PID=$STARTED_PID
wait_ready "$UPSTREAM_PID" "$UPSTREAM_PORT" || die "upstream nginx did not start: $(tail -3 "$WORK/upstream.log")"

# Both variants up at once on the proxy CPUs (the idle one costs nothing), so that every round can
# visit both within seconds.
for v in A B; do
	why=$("${BIN[$v]}" -c "${CONF[$v]}" --check 2>&1) || die "variant $v: config refused: $(head -1 <<<"$why")"
	start "jwtgate-$v" "$PROXY_CPUS" "${BIN[$v]}" -c "${CONF[$v]}"
	PID[$v]=$STARTED_PID
	wait_ready "${PID[$v]}" "${PORT[$v]}" || die "variant $v did not start: $(tail -1 "$WORK/jwtgate-$v.log")"
	got=$(status_of "http://127.0.0.1:${PORT[$v]}$URL_PATH" "${AUTH[@]}")
	[ "$got" = 200 ] || die "variant $v: smoke check GET $URL_PATH gave $got, want 200"
	if [ "$MISS" = 1 ]; then
		# A variant that lets a request without a token through is not verifying: its figure is void.
		got=$(status_of "http://127.0.0.1:${PORT[$v]}$URL_PATH")
		[ "$got" = 401 ] || die "variant $v: GET $URL_PATH without a token gave $got, want 401"
	fi
	if [ "${ADMIN[$v]}" = 1 ]; then
		wait_ready "${PID[$v]}" "${ADMIN_PORT[$v]}" || die "variant $v: no admin listener on ${ADMIN_PORT[$v]} (a binary without the admin endpoint?)"
		got=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "http://127.0.0.1:${ADMIN_PORT[$v]}/metrics")
		[ "$got" = 200 ] || die "variant $v: admin GET /metrics gave $got, want 200"
	fi
done

# ---- rounds ----
# Other load: the machine's CPU time (user, nice, system, irq, softirq of every CPU, /proc/stat; a task's
# system time includes the softirq work it did, loopback TCP's receive path) minus that of this
# run's own processes (both variants, the upstream and its worker, this shell and the children it
# reaped: wrk, the scraper, the helpers) over each wrk run, in percent of one CPU. Another process
# busy on the machine shows here, and the round it spoiled can be told from a slow one.
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
own_ticks() {
	local t
	t=$(($(proc_cpu_ticks "${PID[A]}") + $(proc_cpu_ticks "${PID[B]}") + $(proc_cpu_ticks "$UPSTREAM_PID")))
	echo $((t + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$$/stat")))
}
HZ=$(getconf CLK_TCK)
declare -A SCRAPES OTHER_ALL
ORDERS="" # AB BA AB ...: the order of each round, two letters a round
echo "ab.sh: GET $URL_PATH, $ROUNDS rounds of A and B (order reversed every other round)" >&2
for round in $(seq 1 "$ROUNDS"); do
	echo "ab.sh: round $round/$ROUNDS" >&2
	order=(A B)
	[ $((round % 2)) = 0 ] && order=(B A)
	ORDERS+="${order[0]}${order[1]}"
	for v in "${order[@]}"; do
		scraper=""
		o0=$(own_ticks) b0=$(machine_busy) w0=$(date +%s%N)
		if [ -n "${SCRAPE[$v]}" ]; then
			# shellcheck disable=SC2086
			$LOAD_TASKSET "$PY" "$BENCH_DIR/scrape.py" 127.0.0.1 "${ADMIN_PORT[$v]}" /metrics "${SCRAPE[$v]}" \
				>"$WORK/scrape-$v-$round.txt" 2>&1 &
			scraper=$!
			PIDS+=("$scraper")
			sleep 0.2 # python's start-up, before wrk starts
		fi
		CPU_PID=${PID[$v]} measure "$v" "http://127.0.0.1:${PORT[$v]}$URL_PATH" "$TOKEN_FILE"
		if [ -n "$scraper" ]; then
			stop_pid "$scraper"
			SCRAPES[$v]="${SCRAPES[$v]:-}$(grep '^JGSCRAPE ' "$WORK/scrape-$v-$round.txt" || echo "JGSCRAPE failed")"$'\n'
		fi
		b1=$(machine_busy) o1=$(own_ticks) w1=$(date +%s%N)
		OTHER_ALL[$v]="${OTHER_ALL[$v]:-} $(awk -v b="$((b1 - b0))" -v o="$((o1 - o0))" -v w="$((w1 - w0))" -v hz="$HZ" \
			'BEGIN { x = (b - o) * 100 / (w / 1e9 * hz); printf "%.0f", (x > 0) ? x : 0 }')"
	done
done
for v in A B; do stop_pid "${PID[$v]}"; done
stop_pid "$UPSTREAM_PID"

# ---- report ----
# stats "X..." "Y...": the per-round ratios X/Y: median, the middle half, min-max, how many below 1.
stats() {
	round_ratios "$1" "$2" | sort -g | awk '{ r[NR] = $1; s = s sprintf(" %.3f", $1); if ($1 < 1) lo++ }
		END {
			if (!NR) { print "n/a"; exit }
			q1 = r[int((NR + 3) / 4)]; q3 = r[NR + 1 - int((NR + 3) / 4)]
			printf "median %.3f, middle half %.3f-%.3f, range %.3f-%.3f, below 1 in %d of %d rounds\n", \
				r[int((NR + 1) / 2)], q1, q3, r[1], r[NR], lo, NR
			printf "      per round, sorted:%s\n", s
		}'
}

describe() { # VARIANT: binary, its hash and version, the config it ran
	local v=$1 extra=""
	[ "${ADMIN[$v]}" = 1 ] && extra+=" + admin block"
	[ -n "${ALOG[$v]}" ] && extra+=" + accessLog: {path: <tmp>/access-$v.log, format: ${ALOG[$v]}}"
	[ -n "${EXTRA[$v]}" ] && extra+=" + ${EXTRA[$v]}"
	echo "$v: ${BIN[$v]} (sha256 $(sha256sum "${BIN[$v]}" | cut -c1-12), $(timeout 2 "${BIN[$v]}" --version 2>/dev/null | head -1))"
	echo "   config: bench/jwtgate.yaml.in${extra}"
	if [ -n "${ALOG[$v]}" ]; then
		# What the log writer wrote (the smoke check's line included), so a log that silently wrote
		# nothing, or dropped lines, is seen; and one line as an example of the format.
		local f="$WORK/access-$v.log"
		echo "   access log: $(wc -l <"$f" 2>/dev/null || echo 0) lines, $(stat -c %s "$f" 2>/dev/null || echo 0) bytes written; total requests in the rounds: $(awk '{ for (i = 1; i <= NF; i++) s += $i } END { printf "%.0f", s }' <<<"${REQS_ALL[$v]:-0}")"
		echo "   first line: $(head -c 400 "$f" 2>/dev/null | head -1)"
	fi
	if [ -n "${SCRAPE[$v]}" ]; then
		# Sum of the rounds' scraper lines: scrapes, 200s, slowest scrape, size, the scraper's own CPU.
		awk -v iv="${SCRAPE_SPEC[$v]}" -v rounds="$ROUNDS" '
			/^JGSCRAPE failed/ { bad++ }
			/^JGSCRAPE scrapes=/ {
				for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
				n += f["scrapes"]; ok += f["ok"]; cpu += f["cpu_ms"]; b = f["bytes"]
				if (f["max_ms"] > mx) mx = f["max_ms"]
			}
			END {
				printf "   scraper: GET admin /metrics every %s during its rounds: %d scrapes, %d answered 200, ", iv, n, ok
				printf "%d bytes each (last), slowest %.1f ms; scraper CPU %.0f ms in all", b, mx, cpu
				if (bad) printf "; %d rounds without a scraper report", bad
				printf "\n"
			}' <<<"${SCRAPES[$v]:-}"
	fi
}

report() {
	echo "jwtgate A/B benchmark ($LABEL) $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command: ${BENCH_ENV}bench/ab.sh ${ARGS[*]}"
	echo "host: $(uname -srm), $(nproc) CPUs online, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "wrk: -t$THREADS -c$CONNECTIONS -d$DURATION keep-alive, GET $URL_PATH${TOKEN_FILE:+ rotating $MISS_TOKENS distinct RS256 tokens, tokenCache size 0}, $ROUNDS rounds of A and B (A first in odd rounds, B first in even); proxy CPUs: ${PROXY_CPUS:-any} (both variants); load CPUs: ${LOAD_CPUS:-any} (wrk, upstream, scraper)"
	echo "versions: $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), $("$WRK_BIN" -v 2>&1 | head -1 | awk '{print $1, $2}')"
	echo "upstream: nginx, 1 worker, return 200 \"ok\"; each variant: workers: 1, upstream keep-alive"
	describe A
	describe B
	echo
	printf '%-8s %12s %9s %9s %8s %7s %9s  %s\n' variant req/s p50_ms p99_ms non-2xx errors cpu_us note
	for v in A B; do
		printf '%-8s %12s %9s %9s %8s %7s %9s  %s\n' "$v" "${RPS[$v]:--}" "$(ms "${P50[$v]:-}")" \
			"$(ms "${P99[$v]:-}")" "${NON2XX[$v]:--}" "${ERRS[$v]:--}" "${CPU[$v]:--}" "${NOTE[$v]:-}"
	done
	echo
	echo "B/A req/s  (ratio of medians $(awk -v a="${RPS[A]:-0}" -v b="${RPS[B]:-0}" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "n/a" }')): $(stats "${RPS_ALL[B]:-}" "${RPS_ALL[A]:-}")"
	echo "B/A p99    (above 1: B slower): $(stats "${P99_ALL[B]:-}" "${P99_ALL[A]:-}")"
	echo "B/A cpu_us (above 1: B costlier): $(stats "${CPU_ALL[B]:-}" "${CPU_ALL[A]:-}")"
	awk -v a="${OTHER_ALL[A]:-}" -v b="${OTHER_ALL[B]:-}" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) { m = (x[i] > y[i]) ? x[i] : y[i]; if (m > mx) mx = m; if (m >= 10) { k++; l = l " " i } }
		printf "other load (CPU time of processes not in this run, %% of one CPU, per wrk run): at most %d%%", mx
		if (k) printf "; 10%% or more in %d of %d rounds:%s", k, n, l
		printf "\n"
	}'
	echo
	echo "per round, in the order measured:"
	printf '%5s %5s %10s %10s %7s %8s %8s %7s %7s %7s %6s %6s\n' round order A_req/s B_req/s B/A A_p99ms B_p99ms \
		A_cpu B_cpu B/A_cpu A_oth% B_oth%
	awk -v o="$ORDERS" -v ra="${RPS_ALL[A]:-}" -v rb="${RPS_ALL[B]:-}" -v pa="${P99_ALL[A]:-}" \
		-v pb="${P99_ALL[B]:-}" -v ca="${CPU_ALL[A]:-}" -v cb="${CPU_ALL[B]:-}" -v xa="${OTHER_ALL[A]:-}" \
		-v xb="${OTHER_ALL[B]:-}" 'BEGIN {
		n = split(ra, a, " "); split(rb, b, " "); split(pa, p, " "); split(pb, q, " ")
		split(ca, c, " "); split(cb, d, " "); split(xa, e, " "); split(xb, f, " ")
		for (i = 1; i <= n; i++)
			printf "%5d %5s %10.1f %10.1f %7.3f %8.2f %8.2f %7.1f %7.1f %7.3f %6d %6d\n", i, substr(o, 2 * i - 1, 2), \
				a[i], b[i], (a[i] > 0) ? b[i] / a[i] : 0, p[i] / 1000, q[i] / 1000, c[i], d[i], \
				(c[i] > 0) ? d[i] / c[i] : 0, e[i], f[i]
	}'
}

mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M%S)-ab-$LABEL.txt"
report | tee "$RESULT_FILE"
echo "ab.sh: saved $RESULT_FILE" >&2
