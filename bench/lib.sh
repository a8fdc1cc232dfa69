# bench/lib.sh: process and port helpers shared by run.sh and run-grpc.sh (sourced, not run).
# The sourcing script sets SCRIPT (its name, for messages), PY (a python3), WORK (its temporary
# folder) and PIDS=() first.

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

# Stops every server the script started and removes its folder (BENCH_KEEP=1 keeps it).
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
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
