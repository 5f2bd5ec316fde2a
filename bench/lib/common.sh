# Shared helpers of bench/run: messages, the processes the run starts, /proc readings.
# shellcheck shell=bash

# Fixed loopback addresses: the client-side proxy, and the server side (backend + its
# proxy). Chosen away from 127.0.0.1 so a run does not collide with other local servers.
CLIENT_ADDR=127.0.77.1
SERVER_ADDR=127.0.77.2
BACKEND_PORT=8080
ENTRY_PORT=15001     # client-side proxy: where the load generator sends requests
PEER_PORT=15006      # server-side proxy: where the client-side proxy sends them
HOST_HEADER=backend.bench

STARTED_PIDS=()

say() { printf '== %s\n' "$*" >&2; }
note() { printf '!! %s\n' "$*" >&2; }
die() { printf 'bench/run: %s\n' "$*" >&2; exit 1; }

# start_bg LOG CMD...: starts CMD in the background with its output in LOG; sets BG_PID.
start_bg() {
    local log="$1"; shift
    "$@" >"$log" 2>&1 &
    BG_PID=$!
    STARTED_PIDS+=("$BG_PID")
}

# stop_pid PID: SIGTERM, then SIGKILL after 3 s. Only for processes this run started.
stop_pid() {
    local pid="$1"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ ${KEEP:-0} == 1 || $status != 0 ]]; then
        say "kept the work directory: $WORK"
    elif [[ -n "${WORK:-}" && -d "$WORK" ]]; then
        rm -rf "$WORK"
    fi
}

# probe ADDR PORT PATH [HOST]: one GET; prints "STATUS BODY_BYTES", fails when no answer.
probe() {
    python3 - "$@" <<'PY'
import http.client, sys
addr, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host = sys.argv[4] if len(sys.argv) > 4 else None
try:
    c = http.client.HTTPConnection(addr, port, timeout=2)
    c.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        c.putheader("Host", host)
    c.endheaders()
    r = c.getresponse()
    print(r.status, len(r.read()))
except OSError as e:
    print(f"no answer: {e}", file=sys.stderr)
    sys.exit(1)
PY
}

# wait_ready WHAT PID ADDR PORT PATH [HOST]: polls for a 200 for up to 20 s; fails with
# the process log when the process dies or never answers.
wait_ready() {
    local what="$1" pid="$2"; shift 2
    local out
    for _ in $(seq 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            die "$what exited while starting; its log: $(tail -n 20 "$WORK/$what.log" 2>/dev/null)"
        fi
        if out="$(probe "$@" 2>/dev/null)" && [[ $out == 200\ * ]]; then
            return 0
        fi
        sleep 0.1
    done
    die "$what did not answer 200 on $1:$2$3 within 20 s; its log: $(tail -n 20 "$WORK/$what.log" 2>/dev/null)"
}

# cpu_ticks PID: user + system CPU time of the whole process (all threads), in clock ticks.
cpu_ticks() {
    local stat
    stat="$(<"/proc/$1/stat")"
    stat="${stat##*) }"     # drop "pid (comm) ": comm may contain spaces
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${12} + ${13} ))
}

# hwm_kb PID: peak resident set size (VmHWM) in KiB.
hwm_kb() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# first_line CMD...: the first line a command prints (stdout or stderr), or "n/a".
first_line() {
    local out
    out="$("$@" 2>&1 | head -n 1)" || true
    echo "${out:-n/a}"
}

write_meta() {
    {
        printf 'date\t%s\n' "$(date -u +'%Y-%m-%d %H:%M UTC')"
        printf 'mode\t%s\n' "$([[ $SMOKE == 1 ]] && echo smoke || echo full)"
        printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
        printf 'cores\t%s\n' "$(nproc)"
        printf 'kernel\t%s\n' "$(uname -r)"
        printf 'load_before\t%s\n' "$LOAD_BEFORE"
        printf 'duration\t%s\n' "$DURATION"
        printf 'warmup\t%s\n' "$WARMUP"
        printf 'threads\t%s\n' "$THREADS"
        printf 'clk_tck\t%s\n' "$(getconf CLK_TCK)"
        printf 'skiff\t%s (%s build, commit %s)\n' "$(first_line "$SKIFF_BIN" --version)" \
            "$SKIFF_PROFILE" "$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        printf 'skiff_proxy\t%s\n' "$([[ -n $SKIFF_PROXY_OK ]] && echo yes || echo no)"
        printf 'nginx\t%s\n' "$(first_line nginx -v)"
        printf 'haproxy\t%s\n' "$(first_line haproxy -v)"
        printf 'envoy\t%s\n' "$("$ENVOY_BIN" --version 2>&1 | sed -n 's/^.*version: //p' | head -n 1)"
        printf 'wrk\t%s\n' "$(first_line wrk -v)"
        printf 'oha\t%s\n' "$([[ -n ${OHA_BIN:-} ]] && first_line "$OHA_BIN" --version || echo 'not used')"
    } >"$1"
}
