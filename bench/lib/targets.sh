# The things under test: the backend, the chained proxy pairs, and one measured case.
# shellcheck shell=bash

# fill TEMPLATE OUT KEY=VALUE...: replaces every @KEY@ in TEMPLATE.
fill() {
    local template="$1" out="$2"; shift 2
    local text pair
    text="$(<"$template")"
    for pair in "$@"; do
        text="${text//@${pair%%=*}@/${pair#*=}}"
    done
    printf '%s\n' "$text" >"$out"
}

start_backend() {
    local body_1k
    body_1k="$(printf 'x%.0s' $(seq 1023))\\n"
    mkdir -p "$WORK/nginx-tmp"
    fill "$BENCH_DIR/conf/nginx.conf" "$WORK/nginx.conf" \
        "WORK=$WORK" "BACKEND=$SERVER_ADDR:$BACKEND_PORT" "BODY_1K=$body_1k"
    start_bg "$WORK/nginx.log" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
    BACKEND_PID=$BG_PID
    wait_ready nginx "$BACKEND_PID" "$SERVER_ADDR" "$BACKEND_PORT" /small
}

stop_backend() {
    stop_pid "$BACKEND_PID"
}

# start_pair TARGET: starts the two proxies of TARGET (none for direct). Sets ENTRY (where
# load goes) and PROXIES ("role:pid" words).
start_pair() {
    local target="$1"
    PROXIES=()
    ENTRY="$CLIENT_ADDR:$ENTRY_PORT"
    case "$target" in
        direct)
            ENTRY="$SERVER_ADDR:$BACKEND_PORT"
            ;;
        skiff|skiff-mtls|skiff-nometrics|skiff-mtls-nometrics)
            # skiff-mtls: the same pair with mesh mTLS between the proxies (the server
            # side's port STRICT, the client side's endpoint `mtls: true`), each with
            # its identity from the files bench/lib/certs.sh made. `-nometrics`: the
            # same pair with Istio's standard metrics off.
            local role id conf addr name tls=() metrics=on
            local base=${target%-nometrics}
            [[ $target == *-nometrics ]] && metrics=off
            local mflag=()
            [[ -n "$SKIFF_PROXY_METRICS_OK" ]] && mflag=(--metrics "$metrics")
            local suffix=$([[ $base == skiff-mtls ]] && echo -mtls)
            for role in server client; do
                if [[ $role == server ]]; then
                    id=backend.bench; conf=skiff-server$suffix.json; addr=$SERVER_ADDR; name=backend
                else
                    id=bench-client.bench; conf=skiff-client$suffix.json; addr=$CLIENT_ADDR; name=bench-client
                fi
                tls=()
                if [[ $base == skiff-mtls ]]; then
                    tls=(--cert-file "$CERTS/$name-cert.pem" --key-file "$CERTS/$name-key.pem"
                        --ca-root "$CERTS/root-cert.pem")
                fi
                start_bg "$WORK/$target-$role.log" "$SKIFF_BIN" proxy --id "$id" \
                    --config-file "$BENCH_DIR/conf/$conf" --address "$addr" \
                    --concurrency "$THREADS" --access-log off "${tls[@]}" "${mflag[@]}"
                PROXIES+=("$role:$BG_PID")
                wait_ready "$target-$role" "$BG_PID" "$addr" 15000 /ready
            done
            ;;
        haproxy)
            fill "$BENCH_DIR/conf/haproxy.cfg" "$WORK/haproxy-server.cfg" "THREADS=$THREADS" \
                "LISTEN=$SERVER_ADDR:$PEER_PORT" "NEXT=$SERVER_ADDR:$BACKEND_PORT"
            fill "$BENCH_DIR/conf/haproxy.cfg" "$WORK/haproxy-client.cfg" "THREADS=$THREADS" \
                "LISTEN=$CLIENT_ADDR:$ENTRY_PORT" "NEXT=$SERVER_ADDR:$PEER_PORT"
            start_bg "$WORK/haproxy-server.log" haproxy -db -f "$WORK/haproxy-server.cfg"
            PROXIES+=("server:$BG_PID")
            wait_ready haproxy-server "$BG_PID" "$SERVER_ADDR" "$PEER_PORT" /small "$HOST_HEADER"
            start_bg "$WORK/haproxy-client.log" haproxy -db -f "$WORK/haproxy-client.cfg"
            PROXIES+=("client:$BG_PID")
            ;;
        haproxy-tls)
            # Both sides check the other's certificate against the bench root: TLS 1.3
            # with a client certificate, as the mesh pairs do.
            fill "$BENCH_DIR/conf/haproxy-tls-server.cfg" "$WORK/haproxy-tls-server.cfg" \
                "THREADS=$THREADS" "CERTS=$CERTS" \
                "LISTEN=$SERVER_ADDR:$PEER_PORT" "NEXT=$SERVER_ADDR:$BACKEND_PORT"
            fill "$BENCH_DIR/conf/haproxy-tls-client.cfg" "$WORK/haproxy-tls-client.cfg" \
                "THREADS=$THREADS" "CERTS=$CERTS" \
                "LISTEN=$CLIENT_ADDR:$ENTRY_PORT" "NEXT=$SERVER_ADDR:$PEER_PORT"
            # The server side speaks only TLS: wait_chain proves the pair answers.
            start_bg "$WORK/haproxy-tls-server.log" haproxy -db -f "$WORK/haproxy-tls-server.cfg"
            PROXIES+=("server:$BG_PID")
            start_bg "$WORK/haproxy-tls-client.log" haproxy -db -f "$WORK/haproxy-tls-client.cfg"
            PROXIES+=("client:$BG_PID")
            ;;
        envoy-mtls)
            fill "$BENCH_DIR/conf/envoy-mtls-server.yaml" "$WORK/envoy-mtls-server.yaml" \
                "LISTEN_ADDR=$SERVER_ADDR" "LISTEN_PORT=$PEER_PORT" \
                "NEXT_ADDR=$SERVER_ADDR" "NEXT_PORT=$BACKEND_PORT" \
                "CERTS=$CERTS" "PEER_ID=$(bench_spiffe_id bench-client)"
            fill "$BENCH_DIR/conf/envoy-mtls-client.yaml" "$WORK/envoy-mtls-client.yaml" \
                "LISTEN_ADDR=$CLIENT_ADDR" "LISTEN_PORT=$ENTRY_PORT" \
                "NEXT_ADDR=$SERVER_ADDR" "NEXT_PORT=$PEER_PORT" \
                "CERTS=$CERTS" "PEER_ID=$(bench_spiffe_id backend)"
            local role addr
            for role in server client; do
                addr=$([[ $role == server ]] && echo "$SERVER_ADDR" || echo "$CLIENT_ADDR")
                start_bg "$WORK/envoy-mtls-$role.log" "$ENVOY_BIN" -c "$WORK/envoy-mtls-$role.yaml" \
                    --concurrency "$THREADS" --disable-hot-restart -l warning
                PROXIES+=("$role:$BG_PID")
                wait_ready "envoy-mtls-$role" "$BG_PID" "$addr" 15000 /ready
            done
            ;;
        envoy)
            fill "$BENCH_DIR/conf/envoy.yaml" "$WORK/envoy-server.yaml" \
                "LISTEN_ADDR=$SERVER_ADDR" "LISTEN_PORT=$PEER_PORT" \
                "NEXT_ADDR=$SERVER_ADDR" "NEXT_PORT=$BACKEND_PORT"
            fill "$BENCH_DIR/conf/envoy.yaml" "$WORK/envoy-client.yaml" \
                "LISTEN_ADDR=$CLIENT_ADDR" "LISTEN_PORT=$ENTRY_PORT" \
                "NEXT_ADDR=$SERVER_ADDR" "NEXT_PORT=$PEER_PORT"
            local role addr
            for role in server client; do
                addr=$([[ $role == server ]] && echo "$SERVER_ADDR" || echo "$CLIENT_ADDR")
                start_bg "$WORK/envoy-$role.log" "$ENVOY_BIN" -c "$WORK/envoy-$role.yaml" \
                    --concurrency "$THREADS" --disable-hot-restart -l warning
                PROXIES+=("$role:$BG_PID")
                wait_ready "envoy-$role" "$BG_PID" "$addr" 15000 /ready
            done
            ;;
    esac
}

stop_pair() {
    local p
    for p in "${PROXIES[@]}"; do
        stop_pid "${p#*:}"
    done
    PROXIES=()
}

# proxy_logs TARGET: the end of each running proxy's log, for error messages.
proxy_logs() {
    local p
    for p in "${PROXIES[@]}"; do
        printf '\n--- %s %s proxy:\n%s' "$1" "${p%%:*}" "$(tail -n 15 "$WORK/$1-${p%%:*}.log" 2>/dev/null)"
    done
}

# wait_chain TARGET HOST PORT PATH EXPECTED: polls the whole chain for up to 20 s until
# a GET answers EXPECTED ("status body-bytes"); fails early when a proxy exits.
wait_chain() {
    local target="$1" host="$2" port="$3" path="$4" expected="$5" p answer=""
    for _ in $(seq 200); do
        for p in "${PROXIES[@]}"; do
            kill -0 "${p#*:}" 2>/dev/null \
                || die "$target ${p%%:*} proxy exited while starting$(proxy_logs "$target")"
        done
        kill -0 "$BACKEND_PID" 2>/dev/null || die "nginx exited: $(tail -n 15 "$WORK/nginx-error.log")"
        answer="$(probe "$host" "$port" "$path" "$HOST_HEADER" 2>&1)" || true
        [[ $answer == "$expected" ]] && return 0
        sleep 0.1
    done
    die "$target: GET $path through the chain answers '$answer', expected '$expected'$(proxy_logs "$target")"
}

# load TOOL CONNS RATE SECONDS PATH OUT: one run of the load generator.
load() {
    local tool="$1" conns="$2" rate="$3" seconds="$4" path="$5" out="$6"
    local url="http://$ENTRY$path"
    if [[ $tool == wrk ]]; then
        wrk -t1 -c"$conns" -d"${seconds}s" --latency -H "Host: $HOST_HEADER" "$url" >"$out" 2>&1
    else
        "$OHA_BIN" -z "${seconds}s" -w -c "$conns" -q "$rate" --latency-correction \
            --no-tui --output-format json --worker-threads 1 --host "$HOST_HEADER" \
            "$url" >"$out" 2>"$out.err"
    fi
}

# run_case TARGET CASE PATH TOOL CONNS RATE: fresh proxies, a check that the chain
# answers, warm-up, then the measured run with CPU readings around it.
run_case() {
    local target="$1" case_name="$2" path="$3" tool="$4" conns="$5" rate="$6"
    local expect_bytes=47 p pid
    [[ $path == /1k ]] && expect_bytes=1024
    say "$target / $case_name"
    start_pair "$target"
    local entry_host=${ENTRY%:*} entry_port=${ENTRY#*:}
    wait_chain "$target" "$entry_host" "$entry_port" "$path" "200 $expect_bytes"

    load "$tool" "$conns" "$rate" "$WARMUP" "$path" "$WORK/$target-$case_name.warmup" \
        || die "warm-up of $target / $case_name failed: $(tail -n 5 "$WORK/$target-$case_name.warmup")"

    local before=() t0 t1
    for p in "${PROXIES[@]}"; do before+=("$(cpu_ticks "${p#*:}")"); done
    t0=$(date +%s.%N)
    local raw="$WORK/$target-$case_name.out"
    load "$tool" "$conns" "$rate" "$DURATION" "$path" "$raw" \
        || die "load on $target / $case_name failed: $(tail -n 5 "$raw" "$raw.err" 2>/dev/null)"
    t1=$(date +%s.%N)
    local measured=() i=0
    for p in "${PROXIES[@]}"; do
        pid="${p#*:}"
        kill -0 "$pid" 2>/dev/null || die "$target ${p%%:*} proxy died during $case_name"
        measured+=("${p%%:*}:$(( $(cpu_ticks "$pid") - before[i] )):$(hwm_kb "$pid")")
        i=$((i + 1))
    done
    stop_pair
    local IFS=,
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$case_name" "$tool" "$conns" \
        "$rate" "$expect_bytes" "$raw" "$(awk "BEGIN { print $t1 - $t0 }")" \
        "${measured[*]}" >>"$RESULTS"
}
