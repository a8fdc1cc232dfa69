#!/bin/bash
# bench/run-body.sh: request and response bodies through jwtgate, HAProxy 2.6 and nginx 1.22, next to
# the upstream served directly, one worker each, proxy pinned as in run.sh. Not a test: it measures,
# prints a table and saves it to bench/results/<date>-body.txt. See bench/README.md, "Bodies".
#
# Cases (BENCH_BODY_CASES, default all):
#   dl1m      GET, 1 MiB response with Content-Length (nginx file upstream, sendfile)
#   dl64m     GET, 64 MiB response with Content-Length
#   dl1m-chunked  GET, 1 MiB chunked response (same file, nginx add_after_body drops the length)
#   ul1m      POST, 1 MiB request body with Content-Length (bench/body_upstream reads it all, then 200)
#   ul1m-chunked  POST, 1 MiB chunked request body in 16 KiB chunks
#   h2-dl1m   dl1m over h2c (prior knowledge) with h2load; the proxies go upstream in HTTP/1.1 as above
#   h2-ul1m   ul1m over h2c: h2load -d sends the 1 MiB body as DATA frames with content-length
# --h2 measures the two h2 cases only (when BENCH_BODY_CASES is unset); h2 cases have no direct row
# (neither upstream speaks h2c).
# Every round visits every case and target (the order reversed every other round); the figures are
# medians of the rounds and paired ratios (median of per-round ratios). Also each proxy's CPU time per
# MiB and its peak RSS (VmHWM, process and children) over the whole run.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
SCRIPT=run-body.sh
PY=python3
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-8}
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-3}
CASES=${BENCH_BODY_CASES:-dl1m dl64m dl1m-chunked ul1m ul1m-chunked}
H2_CLIENTS=${BENCH_H2_CLIENTS:-4} # h2load -c: connections of the h2 cases
H2_STREAMS=${BENCH_H2_STREAMS:-4} # h2load -m: concurrent streams per connection
H2LOAD_BIN=${H2LOAD_BIN:-h2load}
TARGETS=${BENCH_BODY_TARGETS:-direct jwtgate nginx haproxy}
# JWTGATE_B_BIN: a second jwtgate build as one more target, "jwtgate-b", for an A/B of two builds
# measured next to each other in every round (paired ratios jwtgate-b/jwtgate, CPU per request).
JWTGATE_B_BIN=${JWTGATE_B_BIN:-}
[ -n "$JWTGATE_B_BIN" ] && [[ " $TARGETS " != *" jwtgate-b "* ]] && TARGETS="$TARGETS jwtgate-b"
bench_cpus
JWTGATE_BIN=${JWTGATE_BIN:-$ROOT/build/jwtgate}
BODY_UPSTREAM_BIN=${BODY_UPSTREAM_BIN:-$(dirname "$JWTGATE_BIN")/bench/body_upstream}
# A jwtgate from elsewhere (an A/B against an older build) may have no sink beside it: use ours.
[ -x "$BODY_UPSTREAM_BIN" ] || BODY_UPSTREAM_BIN=$ROOT/build/bench/body_upstream
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
WRK_BIN=${WRK_BIN:-wrk}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
HOST_HEADER="Host: www.example.com"

die() {
	echo "run-body.sh: $*" >&2
	exit 1
}
case "${1:-}" in
--help | -h)
	sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
	echo "Environment: BENCH_DURATION=$DURATION BENCH_CONNECTIONS=$CONNECTIONS BENCH_ROUNDS=$ROUNDS"
	echo "  BENCH_H2_CLIENTS=$H2_CLIENTS BENCH_H2_STREAMS=$H2_STREAMS H2LOAD_BIN=$H2LOAD_BIN"
	echo "  BENCH_BODY_CASES='$CASES' BENCH_BODY_TARGETS='$TARGETS'"
	echo "  JWTGATE_BIN=$JWTGATE_BIN BODY_UPSTREAM_BIN=$BODY_UPSTREAM_BIN"
	exit 0
	;;
--h2) [ -n "${BENCH_BODY_CASES:-}" ] || CASES="h2-dl1m h2-ul1m" ;;
"") ;;
*) die "unknown argument '$1' (--help)" ;;
esac

for tool in "$WRK_BIN" "$NGINX_BIN" "$HAPROXY_BIN" curl python3; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
if [[ " $CASES " == *" h2-"* ]]; then
	command -v "$H2LOAD_BIN" >/dev/null 2>&1 || die "$H2LOAD_BIN not found"
fi
[ -x "$BODY_UPSTREAM_BIN" ] || die "no upload sink at $BODY_UPSTREAM_BIN: ninja -C build bench/body_upstream"

WORK=$(mktemp -d /tmp/jwtgate-bench-body.XXXXXX) || die "cannot create a temporary folder"
mkdir -p "$WORK/tmp" "$WORK/files"
chmod 755 "$WORK" "$WORK/files" # nginx's workers run as another user: the files and temp folders
PROXY_TASKSET=$(taskset_prefix "$PROXY_CPUS")
LOAD_TASKSET=$(taskset_prefix "$LOAD_CPUS")
rows_init

head -c 1048576 /dev/urandom >"$WORK/files/1m"
head -c 67108864 /dev/urandom >"$WORK/files/64m"
: >"$WORK/files/empty"

UPSTREAM_PORT=$(free_port)
SINK_PORT=$(free_port)
JWTGATE_PORT=$(free_port)
JWTGATE_B_PORT=$(free_port)
NGINX_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
NGINX_H2_PORT=$(free_port)   # nginx 1.22 and HAProxy 2.6 need a listener of their own for h2c
HAPROXY_H2_PORT=$(free_port) # with prior knowledge; jwtgate serves it on its plaintext port
SUBST=(DIR="$WORK" FILES="$WORK/files" UPSTREAM_PORT="$UPSTREAM_PORT" SINK_PORT="$SINK_PORT")
render "$BENCH_DIR/nginx-body-upstream.conf.in" "$WORK/nginx-upstream.conf" "${SUBST[@]}"
render "$BENCH_DIR/nginx-body.conf.in" "$WORK/nginx.conf" "${SUBST[@]}" PORT="$NGINX_PORT" H2PORT="$NGINX_H2_PORT"
render "$BENCH_DIR/haproxy-body.cfg.in" "$WORK/haproxy.cfg" "${SUBST[@]}" PORT="$HAPROXY_PORT" H2PORT="$HAPROXY_H2_PORT"
render "$BENCH_DIR/jwtgate-body.yaml.in" "$WORK/jwtgate.yaml" "${SUBST[@]}" PORT="$JWTGATE_PORT"
render "$BENCH_DIR/jwtgate-body.yaml.in" "$WORK/jwtgate-b.yaml" "${SUBST[@]}" PORT="$JWTGATE_B_PORT"

# ---- servers: the two upstreams on the load CPUs, the proxies on the proxy CPU ----
start upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-upstream.error.log" -c "$WORK/nginx-upstream.conf"
UPSTREAM_PID=$STARTED_PID
wait_ready "$UPSTREAM_PID" "$UPSTREAM_PORT" || die "upstream nginx did not start: $(tail -3 "$WORK/upstream.log")"
start sink "$LOAD_CPUS" "$BODY_UPSTREAM_BIN" --port "$SINK_PORT"
SINK_PID=$STARTED_PID
wait_ready "$SINK_PID" "$SINK_PORT" || die "upload sink did not start: $(tail -3 "$WORK/sink.log")"

declare -A PID=() BASE=()
BASE[direct]="" # per case below
if [[ " $TARGETS " == *" jwtgate "* ]]; then
	if why=$("$JWTGATE_BIN" -c "$WORK/jwtgate.yaml" --check 2>&1); then
		start jwtgate "$PROXY_CPUS" "$JWTGATE_BIN" -c "$WORK/jwtgate.yaml"
		PID[jwtgate]=$STARTED_PID
		wait_ready "${PID[jwtgate]}" "$JWTGATE_PORT" || { unavailable jwtgate "did not start"; unset 'PID[jwtgate]'; }
	else
		unavailable jwtgate "config refused: $(head -1 <<<"$why")"
	fi
fi
if [[ " $TARGETS " == *" jwtgate-b "* ]]; then
	start jwtgate-b "$PROXY_CPUS" "$JWTGATE_B_BIN" -c "$WORK/jwtgate-b.yaml"
	PID[jwtgate-b]=$STARTED_PID
	wait_ready "${PID[jwtgate-b]}" "$JWTGATE_B_PORT" || { unavailable jwtgate-b "did not start"; unset 'PID[jwtgate-b]'; }
fi
if [[ " $TARGETS " == *" nginx "* ]]; then
	start nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx-proxy.error.log" -c "$WORK/nginx.conf"
	PID[nginx]=$STARTED_PID
	wait_ready "${PID[nginx]}" "$NGINX_PORT" || { unavailable nginx "did not start"; unset 'PID[nginx]'; }
fi
if [[ " $TARGETS " == *" haproxy "* ]]; then
	start haproxy "$PROXY_CPUS" "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg"
	PID[haproxy]=$STARTED_PID
	wait_ready "${PID[haproxy]}" "$HAPROXY_PORT" || { unavailable haproxy "did not start"; unset 'PID[haproxy]'; }
fi
BASE[jwtgate]="http://127.0.0.1:$JWTGATE_PORT"
BASE[jwtgate-b]="http://127.0.0.1:$JWTGATE_B_PORT"
BASE[nginx]="http://127.0.0.1:$NGINX_PORT"
BASE[haproxy]="http://127.0.0.1:$HAPROXY_PORT"
declare -A H2BASE=(
	[jwtgate]="${BASE[jwtgate]}" [jwtgate-b]="${BASE[jwtgate-b]}"
	[nginx]="http://127.0.0.1:$NGINX_H2_PORT" [haproxy]="http://127.0.0.1:$HAPROXY_H2_PORT"
)

case_path() { # CASE -> path
	case $1 in
	dl1m | h2-dl1m) echo /bar/1m ;; dl64m) echo /bar/64m ;; dl1m-chunked) echo /bar/chunked/1m ;;
	ul1m | ul1m-chunked | h2-ul1m) echo /up ;;
	*) return 1 ;;
	esac
}
case_bytes() { # CASE -> body bytes per request
	case $1 in dl64m) echo 67108864 ;; *) echo 1048576 ;; esac
}
case_base() { # CASE TARGET -> base URL
	if [[ $1 == h2-* ]]; then
		echo "${H2BASE[$2]:-}"
	elif [ "$2" = direct ]; then
		case $1 in ul*) echo "http://127.0.0.1:$SINK_PORT" ;; *) echo "http://127.0.0.1:$UPSTREAM_PORT" ;; esac
	else
		echo "${BASE[$2]}"
	fi
}
case_cpu_pid() { # CASE TARGET -> the pid whose CPU time counts (the upstream's for direct)
	if [ "$2" = direct ]; then
		case $1 in ul*) echo "$SINK_PID" ;; *) echo "$UPSTREAM_PID" ;; esac
	else
		echo "${PID[$2]:-}"
	fi
}

# smoke: every target gives the file intact (sha256) and the sink answers 200 to both uploads.
want=$(sha256sum <"$WORK/files/1m" | cut -d' ' -f1)
declare -A OK=()
for t in $TARGETS; do
	[ "$t" = direct ] || [ -n "${PID[$t]:-}" ] || continue
	OK[$t]=1
	for path in /bar/1m /bar/chunked/1m; do
		got=$(curl -s --max-time 10 -H "$HOST_HEADER" "$(case_base dl1m "$t")$path" | sha256sum | cut -d' ' -f1)
		[ "$got" = "$want" ] || { unavailable "$t" "smoke: $path body differs"; OK[$t]=0; }
	done
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "$HOST_HEADER" -H 'Expect:' --data-binary @"$WORK/files/1m" "$(case_base ul1m "$t")/up")
	[ "$code" = 200 ] || { unavailable "$t" "smoke: upload gave $code"; OK[$t]=0; }
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "$HOST_HEADER" -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/files/1m" "$(case_base ul1m "$t")/up")
	[ "$code" = 200 ] || { unavailable "$t" "smoke: chunked upload gave $code"; OK[$t]=0; }
	if [[ " $CASES " == *" h2-"* ]] && [ "$t" != direct ]; then
		got=$(curl -s --http2-prior-knowledge --max-time 10 -H "$HOST_HEADER" "$(case_base h2-dl1m "$t")/bar/1m" | sha256sum | cut -d' ' -f1)
		[ "$got" = "$want" ] || { unavailable "$t" "smoke: h2c /bar/1m body differs"; OK[$t]=0; }
		code=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code} %{http_version}' --max-time 10 -H "$HOST_HEADER" --data-binary @"$WORK/files/1m" "$(case_base h2-ul1m "$t")/up")
		[ "$code" = "200 2" ] || { unavailable "$t" "smoke: h2c upload gave $code"; OK[$t]=0; }
	fi
done

# measure_h2 ROW URL [BODY_FILE]: one h2load run of DURATION (h2c prior knowledge), into the same
# per-round figures as measure() (lib.sh). h2load reports no percentiles: p50/p99 stay empty.
measure_h2() {
	local row=$1 url=$2 body=${3:-} raw line pid t0="" t1 secs n ok2xx
	[[ " ${ROWS[*]} " == *" $row "* ]] || ROWS+=("$row")
	raw="$WORK/h2load-${row//[^A-Za-z0-9]/_}.txt"
	secs=${DURATION%s}
	echo "  $row: h2load -D$secs -c$H2_CLIENTS -m$H2_STREAMS ${body:+-d $body }$url" >&2
	# shellcheck disable=SC2086
	$LOAD_TASKSET "$H2LOAD_BIN" -D"$secs" -c"$H2_CLIENTS" -m"$H2_STREAMS" -t1 ${body:+-d "$body"} \
		-H ":authority: www.example.com" "$url" >"$raw" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	[ -n "$CPU_PID" ] && t0=$(proc_cpu_ticks "$CPU_PID")
	wait "$pid"
	[ -n "$t0" ] && t1=$(proc_cpu_ticks "$CPU_PID")
	line=$(sed -n 's/^finished in \([0-9.]*\)\(m*s\), \([0-9.]*\) req\/s.*/\3/p' "$raw")
	n=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$raw")
	ok2xx=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$raw")
	if [ -z "$line" ] || [ -z "$n" ]; then
		NOTE[$row]="h2load failed: $(tail -1 "$raw")"
		return
	fi
	RPS_ALL[$row]="${RPS_ALL[$row]:-} $line"
	REQS_ALL[$row]="${REQS_ALL[$row]:-} $n"
	# shellcheck disable=SC2086
	RPS[$row]=$(median ${RPS_ALL[$row]})
	if [ -n "$t0" ]; then
		CPU_ALL[$row]="${CPU_ALL[$row]:-} $(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v n="$n" \
			'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / hz / n; else print 0 }')"
		# shellcheck disable=SC2086
		CPU[$row]=$(median ${CPU_ALL[$row]})
	fi
	# Every answered request must be a 2xx, and none may have failed or errored (h2load's counts).
	local bad
	bad=$(awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^(failed|errored|timeout)/) s += $i } END { print s + 0 }' "$raw")
	ERRS[$row]=$((${ERRS[$row]:-0} + bad))
	# "status codes" also counts answers whose head came in before the run ended: other than 2xx
	# counts, and fewer 2xx than succeeded requests.
	NON2XX[$row]=$((${NON2XX[$row]:-0} + $(sed -n 's/^status codes: [0-9]* 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx.*/\1 + \2 + \3/p' "$raw")))
	[ "${ok2xx:-0}" -ge "$n" ] || NON2XX[$row]=$((NON2XX[$row] + n - ${ok2xx:-0}))
	if [ "$n" = 0 ] || [ "${NON2XX[$row]}" != 0 ] || [ "${ERRS[$row]}" != 0 ]; then
		NOTE[$row]="INVALID: responses were not all 2xx"
	fi
}

echo "run-body.sh: cases '$CASES', targets '$TARGETS', $ROUNDS rounds of $DURATION, -c$CONNECTIONS, work folder $WORK" >&2
for round in $(seq 1 "$ROUNDS"); do
	echo "run-body.sh: round $round/$ROUNDS" >&2
	order=$TARGETS
	[ $((round % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$TARGETS" | tac | tr '\n' ' ')
	for c in $CASES; do
		path=$(case_path "$c") || die "unknown case $c"
		for t in $order; do
			[ "${OK[$t]:-0}" = 1 ] || continue
			if [[ $c == h2-* ]]; then
				[ "$t" = direct ] && continue # no h2c upstream
				body=""
				[ "$c" = h2-ul1m ] && body=$WORK/files/1m
				CPU_PID=$(case_cpu_pid "$c" "$t") measure_h2 "$c $t" "$(case_base "$c" "$t")$path" "$body"
				continue
			fi
			bytes=0 chunk=0
			case $c in ul1m) bytes=1048576 ;; ul1m-chunked) bytes=1048576 chunk=16384 ;; esac
			WRK_BODY_BYTES=$bytes WRK_BODY_CHUNK=$chunk CPU_PID=$(case_cpu_pid "$c" "$t") \
				measure "$c $t" "$(case_base "$c" "$t")$path"
		done
	done
done

peak_rss_kb() { # PID -> VmHWM of PID plus its children (nginx's worker), KiB
	local p t=0 v
	for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
		v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null) && t=$((t + ${v:-0}))
	done
	echo "$t"
}
declare -A HWM=()
for t in jwtgate jwtgate-b nginx haproxy; do
	[ -n "${PID[$t]:-}" ] && HWM[$t]=$(peak_rss_kb "${PID[$t]}")
done

# per-round ratio helpers from lib.sh work on row names
report() {
	local c t row mib
	echo "jwtgate body benchmark $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command: $BENCH_COMMAND"
	echo "host: $(uname -srm), $(nproc) CPUs online"
	echo "wrk: -t$THREADS -c$CONNECTIONS -d$DURATION keep-alive, medians of $ROUNDS interleaved rounds; proxy CPUs: ${PROXY_CPUS:-any}; load CPUs: ${LOAD_CPUS:-any}"
	[[ " $CASES " == *" h2-"* ]] && echo "h2 cases: h2load -D${DURATION%s} -c$H2_CLIENTS -m$H2_STREAMS -t1, h2c prior knowledge (nginx and HAProxy on h2c listeners of their own), HTTP/1.1 upstream; no p50/p99 (h2load has none)"
	echo "versions: $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), $("$HAPROXY_BIN" -v 2>&1 | head -1 | awk '{print "haproxy " $3}'), $(timeout 2 "$JWTGATE_BIN" --version 2>/dev/null | head -1)"
	echo "jwtgate binary: $JWTGATE_BIN (sha256 $(sha256sum <"$JWTGATE_BIN" | cut -c1-12))"
	echo "upstreams: nginx 1 worker, sendfile, files from tmpfs/disk (dl*); bench/body_upstream (ul*); every proxy 1 worker/thread, upstream keep-alive, default buffers"
	echo
	printf '%-22s %10s %10s %9s %9s %7s %10s  %s\n' target req/s MiB/s p50_ms p99_ms errors cpu_us/MiB note
	for row in "${ROWS[@]}"; do
		c=${row%% *}
		mib=$(awk -v b="$(case_bytes "$c" 2>/dev/null || echo 1048576)" 'BEGIN { print b / 1048576 }')
		printf '%-22s %10s %10s %9s %9s %7s %10s  %s\n' "$row" "${RPS[$row]:--}" \
			"$(awk -v r="${RPS[$row]:-0}" -v m="$mib" 'BEGIN { printf "%.0f", r * m }')" \
			"$(ms "${P50[$row]:-}")" "$(ms "${P99[$row]:-}")" "${ERRS[$row]:--}" \
			"$(awk -v u="${CPU[$row]:-}" -v m="$mib" 'BEGIN { if (u != "") printf "%.0f", u / m; else print "-" }')" \
			"${NOTE[$row]:-}"
	done
	echo
	for c in $CASES; do
		echo "$c: jwtgate/haproxy $(ratio "$c jwtgate" "$c haproxy")$(paired "$c jwtgate" "$c haproxy")"
		echo "$c: jwtgate/nginx   $(ratio "$c jwtgate" "$c nginx")$(paired "$c jwtgate" "$c nginx")"
		echo "$c: jwtgate/direct  $(ratio "$c jwtgate" "$c direct")"
		local cj=${CPU["$c jwtgate"]:-} ch=${CPU["$c haproxy"]:-} cn=${CPU["$c nginx"]:-}
		[ -n "$cj" ] && [ -n "$ch" ] && [ -n "$cn" ] &&
			awk -v j="$cj" -v h="$ch" -v n="$cn" -v c="$c" 'BEGIN { if (j > 0) printf "%s: CPU per request haproxy/jwtgate %.2f, nginx/jwtgate %.2f (above 1: jwtgate cheaper)\n", c, h / j, n / j }'
		if [ -n "$JWTGATE_B_BIN" ]; then
			echo "$c: jwtgate-b/jwtgate $(ratio "$c jwtgate-b" "$c jwtgate")$(paired "$c jwtgate-b" "$c jwtgate")"
			echo "$c: jwtgate-b/haproxy $(ratio "$c jwtgate-b" "$c haproxy")$(paired "$c jwtgate-b" "$c haproxy")"
			local cb=${CPU["$c jwtgate-b"]:-}
			[ -n "$cj" ] && [ -n "$cb" ] && [ -n "$ch" ] &&
				awk -v j="$cj" -v b="$cb" -v h="$ch" -v c="$c" 'BEGIN { if (b > 0) printf "%s: CPU per request jwtgate/jwtgate-b %.2f, haproxy/jwtgate-b %.2f\n", c, j / b, h / b }'
		fi
	done
	echo
	[ -n "$JWTGATE_B_BIN" ] && echo "jwtgate-b binary: $JWTGATE_B_BIN (sha256 $(sha256sum <"$JWTGATE_B_BIN" | cut -c1-12)); peak RSS ${HWM[jwtgate-b]:--} KiB"
	echo "peak RSS (VmHWM, KiB, process + children, whole run): jwtgate ${HWM[jwtgate]:--}, nginx ${HWM[nginx]:--}, haproxy ${HWM[haproxy]:--}"
}

BENCH_COMMAND="$0 $* (BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_CONNECTIONS=$CONNECTIONS BENCH_BODY_CASES='$CASES' BENCH_H2_CLIENTS=$H2_CLIENTS BENCH_H2_STREAMS=$H2_STREAMS)"
mkdir -p "$RESULTS_DIR"
RESULT_FILE="$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M%S)-body.txt"
report | tee "$RESULT_FILE"
echo "run-body.sh: saved $RESULT_FILE" >&2
