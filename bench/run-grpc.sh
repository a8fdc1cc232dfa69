#!/bin/bash
# bench/run-grpc.sh: gRPC unary calls (/yages.Echo/Ping) with h2load, in one run, on this machine:
# the C gRPC upstream (bench/grpc_upstream) served directly, jwtgate (workers: 1, grpcRoute with a
# JWT policy: every call carries a Bearer RS256 token), HAProxy 2.6 (h2c front, proto h2 backend,
# jwt_verify RS256) and nginx 1.22 (grpc_pass, no auth: open-source nginx has none). When ghz is on
# PATH (it is optional: not a Debian package), every target is also measured with ghz right after
# h2load, with bench/echo.proto (the upstream has no server reflection). Prints calls/s and the
# ratios, saves the table to bench/results/<date>-grpc.txt.
#
# Same conventions as bench/run.sh (helpers repeated here so run.sh stays untouched): servers from
# the Debian binaries, configs generated into a temporary folder, every child stopped by pid on exit,
# a proxy that fails its smoke check (no token / forged token must be refused) gets no figure.
set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

REQUESTS=${BENCH_REQUESTS:-200000}    # h2load -n
CLIENTS=${BENCH_CLIENTS:-16}          # h2load -c (HTTP/2 connections)
STREAMS=${BENCH_STREAMS:-32}          # h2load -m (concurrent streams per connection)
THREADS=${BENCH_THREADS:-1}           # h2load -t
PROXY_CPUS=${BENCH_PROXY_CPUS:-}      # e.g. 0: pin the proxy under test
LOAD_CPUS=${BENCH_LOAD_CPUS:-}        # e.g. 1: pin h2load and the upstream
BUILD=${BENCH_BUILD:-$ROOT/build}
JWTGATE_BIN=${JWTGATE_BIN:-$BUILD/jwtgate}
JWTGATE_TOKEN_BIN=${JWTGATE_TOKEN_BIN:-$BUILD/jwtgate-token}
GRPC_UPSTREAM_BIN=${GRPC_UPSTREAM_BIN:-$BUILD/bench/grpc_upstream}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
H2LOAD_BIN=${H2LOAD_BIN:-h2load}
GHZ_BIN=${GHZ_BIN:-ghz}               # optional; rows "ghz ..." only when found
RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
AUTHORITY=grpc.example.com
BENCH_COMMAND="$0 $*"
PY=${BENCH_PYTHON:-/usr/bin/python3} # Debian python3 with python3-h2 and python3-cryptography

usage() {
	cat <<EOF
Usage: $0 [--help]
Environment (defaults):
  BENCH_REQUESTS=$REQUESTS BENCH_CLIENTS=$CLIENTS BENCH_STREAMS=$STREAMS BENCH_THREADS=$THREADS
  BENCH_PROXY_CPUS='$PROXY_CPUS' BENCH_LOAD_CPUS='$LOAD_CPUS'
  JWTGATE_BIN=$JWTGATE_BIN
  JWTGATE_TOKEN_BIN=$JWTGATE_TOKEN_BIN
  GRPC_UPSTREAM_BIN=$GRPC_UPSTREAM_BIN   (ninja -C build bench/grpc_upstream)
  NGINX_BIN=$NGINX_BIN HAPROXY_BIN=$HAPROXY_BIN H2LOAD_BIN=$H2LOAD_BIN
  GHZ_BIN=$GHZ_BIN   (optional: when found, each target is also measured with ghz)
  BENCH_RESULTS_DIR=$RESULTS_DIR  BENCH_KEEP=1 keeps the temporary folder
EOF
}
for arg in "$@"; do
	case "$arg" in
	--help | -h) usage; exit 0 ;;
	*) echo "run-grpc.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
	esac
done

die() {
	echo "run-grpc.sh: $*" >&2
	exit 1
}

for tool in "$H2LOAD_BIN" "$NGINX_BIN" "$HAPROXY_BIN" "$PY" openssl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install nghttp2-client nginx-light haproxy)"
done
[ -x "$GRPC_UPSTREAM_BIN" ] || die "no gRPC upstream at $GRPC_UPSTREAM_BIN: ninja -C build bench/grpc_upstream"
[ -x "$JWTGATE_TOKEN_BIN" ] || die "no jwtgate-token at $JWTGATE_TOKEN_BIN: ninja -C build jwtgate-token"

WORK=$(mktemp -d /tmp/jwtgate-bench-grpc.XXXXXX) || die "cannot create a temporary folder"
mkdir -p "$WORK/tmp"
PIDS=()

SCRIPT=run-grpc.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
LOAD_TASKSET=$(taskset_prefix "$LOAD_CPUS")

wait_port() { # PID PORT: until something listens, at most 10 s
	local pid=$1 port=$2 i
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		"$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.5)" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# grpc_status PORT [AUTH_HEADER]: one Ping call made by a raw
# HTTP/2 client (python3-h2); prints its grpc-status, or "http:<status>" when there is none.
grpc_status() {
	"$PY" - "$1" "${2:-}" <<'EOF'
import socket, sys
import h2.connection, h2.config, h2.events
port, auth = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
c.initiate_connection()
hdrs = [(":method", "POST"), (":scheme", "http"), (":authority", "grpc.example.com"),
        (":path", "/yages.Echo/Ping"), ("content-type", "application/grpc"), ("te", "trailers")]
if auth:
    hdrs.append(("authorization", auth))
c.send_headers(1, hdrs)
c.send_data(1, b"\0\0\0\0\0", end_stream=True)
s.sendall(c.data_to_send())
status, grpc = None, None
done = False
while not done:
    data = s.recv(65536)
    if not data:
        break
    for ev in c.receive_data(data):
        if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            d = dict(ev.headers)
            status = d.get(":status", status)
            grpc = d.get("grpc-status", grpc)
        if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
            done = True
    s.sendall(c.data_to_send())
print(grpc if grpc is not None else "http:%s" % status)
EOF
}

declare -A CPS FAILED NOTE
ROWS=()

unavailable() { # ROW REASON
	ROWS+=("$1")
	NOTE[$1]="unavailable: $2"
	echo "  $1: unavailable: $2" >&2
}

# check ROW PORT WANT [AUTH]: the call's grpc-status must be WANT, or the row gets no figure.
check() {
	local row=$1 port=$2 want=$3 got
	got=$(grpc_status "$port" "${4:-}" 2>/dev/null)
	if [ "$got" != "$want" ]; then
		unavailable "$row" "smoke check gave grpc-status '$got', want $want"
		return 1
	fi
	return 0
}

# measure ROW PORT [HEADER...]: one h2load run of unary Ping calls.
measure() {
	local row=$1 port=$2 raw hdr=() h pid
	shift 2
	for h in "$@"; do hdr+=(-H "$h"); done
	ROWS+=("$row")
	raw="$WORK/h2load-${row//[^A-Za-z0-9]/_}.txt"
	echo "  $row: h2load -n$REQUESTS -c$CLIENTS -m$STREAMS -t$THREADS" >&2
	# shellcheck disable=SC2086
	$LOAD_TASKSET "$H2LOAD_BIN" -n"$REQUESTS" -c"$CLIENTS" -m"$STREAMS" -t"$THREADS" -d "$WORK/ping.bin" \
		-H "content-type: application/grpc" -H "te: trailers" -H ":authority: $AUTHORITY" "${hdr[@]}" \
		"http://127.0.0.1:$port/yages.Echo/Ping" >"$raw" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait "$pid"
	CPS[$row]=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$raw")
	FAILED[$row]=$(awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) print $i }' "$raw")
	local ok2xx
	ok2xx=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$raw")
	if [ -z "${CPS[$row]}" ]; then
		NOTE[$row]="h2load failed: $(tail -1 "$raw")"
	elif [ "${ok2xx:-0}" != "$REQUESTS" ]; then
		NOTE[$row]="INVALID: ${ok2xx:-0} of $REQUESTS answers were 2xx"
	fi
}

# ghz_measure ROW PORT: the same calls with ghz (when found), right after h2load on the same server:
# the same number of calls, connections (--connections = h2load -c) and calls in flight (-c = h2load
# -c x -m), pinned like h2load; the metadata carries the same token. A row whose calls were not all OK
# gets no figure.
GHZ=""
command -v "$GHZ_BIN" >/dev/null 2>&1 && GHZ=$(command -v "$GHZ_BIN")
ghz_measure() {
	[ -n "$GHZ" ] || return 0
	local row="ghz $1" port=$2 raw pid ok
	ROWS+=("$row")
	raw="$WORK/ghz-${1//[^A-Za-z0-9]/_}.txt"
	echo "  $row: ghz -n$REQUESTS --connections $CLIENTS -c $((CLIENTS * STREAMS))" >&2
	# shellcheck disable=SC2086
	$LOAD_TASKSET "$GHZ" --insecure --proto "$BENCH_DIR/echo.proto" --call yages.Echo.Ping \
		--authority "$AUTHORITY" -n "$REQUESTS" --connections "$CLIENTS" -c "$((CLIENTS * STREAMS))" \
		-d '{}' --metadata "{\"authorization\":\"$AUTH\"}" "127.0.0.1:$port" >"$raw" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait "$pid"
	CPS[$row]=$(sed -n 's/^ *Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$raw")
	ok=$(sed -n 's/^ *\[OK\][[:space:]]*\([0-9]*\) responses.*/\1/p' "$raw")
	if [ -z "${CPS[$row]}" ]; then
		NOTE[$row]="ghz failed: $(grep -v '^ *$' "$raw" | tail -1)"
	elif [ "${ok:-0}" != "$REQUESTS" ]; then
		NOTE[$row]="INVALID: ${ok:-0} of $REQUESTS calls were OK ($(grep -A3 'Status code distribution' "$raw" | tr -s ' \n' ' '))"
	fi
}

# ---- key, token, JWKS ----
printf '\0\0\0\0\0' >"$WORK/ping.bin" # one gRPC message: yages.Empty
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/key.pem" 2>/dev/null || die "openssl genpkey failed"
openssl pkey -in "$WORK/key.pem" -pubout -out "$WORK/pub.pem" 2>/dev/null || die "openssl pkey failed"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/other.pem" 2>/dev/null || die "openssl genpkey failed"
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
FORGED=$("$JWTGATE_TOKEN_BIN" --key "$WORK/other.pem" --kid bench --alg RS256 --iss bench --exp-in 2h) ||
	die "jwtgate-token failed"
AUTH="Bearer $TOKEN"

UPSTREAM_PORT=$(free_port)
JWTGATE_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
NGINX_PORT=$(free_port)

grpc_jwtgate_yaml "$JWTGATE_PORT" "$UPSTREAM_PORT" "$AUTHORITY" "$WORK/jwks.json" >"$WORK/jwtgate.yaml"

cat >"$WORK/haproxy.cfg" <<EOF
global
	nbthread 1
	maxconn 4096
defaults
	mode http
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend grpc
	bind 127.0.0.1:$HAPROXY_PORT proto h2
	http-request deny deny_status 401 unless { req.hdr(authorization) -m found }
	http-request set-var(txn.jwt_alg) http_auth_bearer,jwt_header_query('\$.alg')
	http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str RS256 }
	http-request deny deny_status 401 unless { http_auth_bearer,jwt_verify(txn.jwt_alg,"$WORK/pub.pem") -m int 1 }
	default_backend yages
backend yages
	server up 127.0.0.1:$UPSTREAM_PORT proto h2
EOF

cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path $WORK/tmp/body;
	proxy_temp_path $WORK/tmp/proxy;
	fastcgi_temp_path $WORK/tmp/fastcgi;
	uwsgi_temp_path $WORK/tmp/uwsgi;
	scgi_temp_path $WORK/tmp/scgi;
	http2_max_requests 100000000;
	keepalive_requests 100000000;
	upstream yages {
		server 127.0.0.1:$UPSTREAM_PORT;
		keepalive 64;
		keepalive_requests 100000000;
	}
	server {
		listen 127.0.0.1:$NGINX_PORT http2;
		location / { grpc_pass grpc://yages; }
	}
}
EOF

# ---- runs ----
echo "run-grpc.sh: gRPC upstream on 127.0.0.1:$UPSTREAM_PORT, work folder $WORK" >&2
start upstream "$LOAD_CPUS" "$GRPC_UPSTREAM_BIN" --port "$UPSTREAM_PORT"
UPSTREAM_PID=$STARTED_PID
wait_port "$UPSTREAM_PID" "$UPSTREAM_PORT" || die "gRPC upstream did not start: $(tail -3 "$WORK/upstream.log")"

check direct "$UPSTREAM_PORT" 0 && measure direct "$UPSTREAM_PORT" "authorization: $AUTH" &&
	ghz_measure direct "$UPSTREAM_PORT"

if [ ! -x "$JWTGATE_BIN" ]; then
	unavailable "jwtgate jwt" "no binary at $JWTGATE_BIN"
elif ! why=$("$JWTGATE_BIN" -c "$WORK/jwtgate.yaml" --check 2>&1); then
	unavailable "jwtgate jwt" "config refused: $(head -1 <<<"$why")"
else
	start jwtgate "$PROXY_CPUS" "$JWTGATE_BIN" -c "$WORK/jwtgate.yaml"
	JWTGATE_PID=$STARTED_PID
	if wait_port "$JWTGATE_PID" "$JWTGATE_PORT"; then
		# No token -> UNAUTHENTICATED (16), forged -> 16, the bench token -> OK.
		check "jwtgate jwt" "$JWTGATE_PORT" 16 && check "jwtgate jwt" "$JWTGATE_PORT" 16 "Bearer $FORGED" &&
			check "jwtgate jwt" "$JWTGATE_PORT" 0 "$AUTH" &&
			measure "jwtgate jwt" "$JWTGATE_PORT" "authorization: $AUTH" &&
			ghz_measure "jwtgate jwt" "$JWTGATE_PORT"
	else
		unavailable "jwtgate jwt" "did not start: $(tail -1 "$WORK/jwtgate.log")"
	fi
	stop_pid "$JWTGATE_PID"
fi

if "$HAPROXY_BIN" -c -q -f "$WORK/haproxy.cfg" >"$WORK/haproxy-check.log" 2>&1; then
	start haproxy "$PROXY_CPUS" "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg"
	HAPROXY_PID=$STARTED_PID
	if wait_port "$HAPROXY_PID" "$HAPROXY_PORT"; then
		# HAProxy denies with an HTTP 401 (no gRPC mapping): the smoke check sees http:401.
		check "haproxy jwt_verify" "$HAPROXY_PORT" "http:401" &&
			check "haproxy jwt_verify" "$HAPROXY_PORT" "http:401" "Bearer $FORGED" &&
			check "haproxy jwt_verify" "$HAPROXY_PORT" 0 "$AUTH" &&
			measure "haproxy jwt_verify" "$HAPROXY_PORT" "authorization: $AUTH" &&
			ghz_measure "haproxy jwt_verify" "$HAPROXY_PORT"
	else
		unavailable "haproxy jwt_verify" "did not start: $(tail -1 "$WORK/haproxy.log")"
	fi
	stop_pid "$HAPROXY_PID"
else
	unavailable "haproxy jwt_verify" "config refused: $(grep -m1 ALERT "$WORK/haproxy-check.log")"
fi

start nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$WORK/" -e "$WORK/nginx.error.log" -c "$WORK/nginx.conf"
NGINX_PID=$STARTED_PID
if wait_port "$NGINX_PID" "$NGINX_PORT"; then
	check "nginx no-auth" "$NGINX_PORT" 0 "$AUTH" && measure "nginx no-auth" "$NGINX_PORT" "authorization: $AUTH" &&
		ghz_measure "nginx no-auth" "$NGINX_PORT"
else
	unavailable "nginx no-auth" "did not start: $(tail -1 "$WORK/nginx.log")"
fi
stop_pid "$NGINX_PID"

stop_pid "$UPSTREAM_PID"

# ---- report ----
ratio() { # A B
	local a=${CPS[$1]:-} b=${CPS[$2]:-}
	if [ -n "$a" ] && [ -n "$b" ] && [ -z "${NOTE[$1]:-}" ] && [ -z "${NOTE[$2]:-}" ]; then
		awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
	else
		echo "n/a"
	fi
}

report() {
	local row
	echo "jwtgate gRPC benchmark $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "command: $BENCH_COMMAND"
	echo "host: $(uname -srm), $(nproc) CPUs online, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
	echo "h2load: -n$REQUESTS -c$CLIENTS -m$STREAMS -t$THREADS, unary /yages.Echo/Ping with a Bearer RS256 token;" \
		"proxy CPUs: ${PROXY_CPUS:-any}; load CPUs: ${LOAD_CPUS:-any}"
	echo "versions: $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //'), $("$HAPROXY_BIN" -v 2>&1 | head -1 | awk '{print "haproxy " $3}'), $("$H2LOAD_BIN" --version 2>&1 | head -1)"
	if [ -n "$GHZ" ]; then
		echo "ghz: $GHZ $("$GHZ" --version 2>&1 | head -1): -n$REQUESTS --connections $CLIENTS -c $((CLIENTS * STREAMS)), --proto bench/echo.proto, --cpus default (all), same pinning as h2load; each ghz row runs right after the h2load row of the same server"
	else
		echo "ghz: not on PATH, skipped (optional: PATH=/path/to/ghz/dir:\$PATH)"
	fi
	echo
	printf '%-22s %12s  %s\n' "row" "calls/s" "note"
	for row in "${ROWS[@]}"; do
		printf '%-22s %12s  %s\n' "$row" "${CPS[$row]:--}" "${NOTE[$row]:-}"
	done
	echo
	echo "jwtgate / direct:   $(ratio "jwtgate jwt" direct)"
	echo "jwtgate / haproxy:  $(ratio "jwtgate jwt" "haproxy jwt_verify")"
	echo "jwtgate / nginx:    $(ratio "jwtgate jwt" "nginx no-auth")  (nginx does no JWT work)"
	if [ -n "$GHZ" ]; then
		echo "ghz: jwtgate / direct:   $(ratio "ghz jwtgate jwt" "ghz direct")"
		echo "ghz: jwtgate / haproxy:  $(ratio "ghz jwtgate jwt" "ghz haproxy jwt_verify")"
		echo "ghz: jwtgate / nginx:    $(ratio "ghz jwtgate jwt" "ghz nginx no-auth")  (nginx does no JWT work)"
	fi
	return 0
}

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$(date -u '+%Y%m%d-%H%M%S')-grpc.txt"
report | tee "$OUT"
echo "run-grpc.sh: saved $OUT" >&2
