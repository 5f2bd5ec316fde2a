#!/usr/bin/env bash
# CPU cost per request of skiff proxy, measured the way the benchmark suite does:
#
#   wrk ──► client proxy (outbound :15001) ──► server proxy (inbound :15006) ──► backend
#
# The backend is HAProxy answering 200 itself (cheap and steady). Both proxies run the
# release binary with the access log off. The script reports, per proxy, the CPU time
# (utime + stime from /proc/<pid>/stat) divided by the requests wrk completed.
#
# Usage: crates/proxy/benches/chain-load.sh [seconds] [connections]
# Needs: wrk, haproxy (Debian: apt-get install -y wrk haproxy), a release build
# (cargo build --release -p skiff).
# Environment: CONCURRENCY (workers per proxy, default 2), UPSTREAM_PROTOCOL (HTTP or
# HTTP2 between the proxies), RETRIES_POLICY=istio (Istio's default retries on the route),
# ACCESS_LOG=on (access log to /dev/null; default off).
set -euo pipefail

DURATION="${1:-10}"
CONNS="${2:-32}"
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
BIN="${SKIFF_BIN:-$ROOT/target/release/skiff}"
# Addresses from the script's pid, so parallel runs (and other users) do not collide.
NET="127.$((100 + $$ % 150)).$((($$ / 150) % 250))"
CLIENT_IP="$NET.1"
SERVER_IP="$NET.2"
BACKEND_PORT=18080
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
defaults
  mode http
  timeout client 30s
  timeout server 30s
  timeout connect 5s
frontend fe
  bind $SERVER_IP:$BACKEND_PORT
  http-request return status 200 content-type text/plain string "hello from the backend"
CFG
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
PIDS+=($!)

cat > "$WORK/server.json" <<CFG
{"node": {"id": "backend.bench", "name": "backend", "namespace": "bench", "kind": "sidecar",
          "address": "$SERVER_IP", "labels": {}, "serviceAccount": "default", "spiffeId": ""},
 "outbound": [], "gateway": [], "clusters": [],
 "inbound": [{"targetPort": $BACKEND_PORT, "protocol": "HTTP", "services": ["backend.bench.svc.cluster.local:80"]}]}
CFG
# RETRIES=istio puts Istio's default retry policy on the route, as skiff control does.
RETRIES=""
if [ "${RETRIES_POLICY:-}" = istio ]; then
  RETRIES=', "retries": {"attempts": 2, "retryOn": ["connect-failure", "refused-stream", "unavailable", "cancelled", "503"]}'
fi
cat > "$WORK/client.json" <<CFG
{"node": {"id": "client.bench", "name": "client", "namespace": "bench", "kind": "sidecar",
          "address": "$CLIENT_IP", "labels": {}, "serviceAccount": "default", "spiffeId": ""},
 "inbound": [], "gateway": [],
 "outbound": [{"port": 80, "protocol": "HTTP", "tcp": [], "virtualHosts": [
   {"name": "backend.bench.svc.cluster.local:80",
    "domains": ["backend", "backend:80", "backend.bench", "backend.bench.svc.cluster.local"],
    "routes": [{"name": "default", "matches": [], "action": {"forward": {"destinations": [
      {"cluster": "outbound|80||backend.bench.svc.cluster.local", "weight": 100}]$RETRIES}}}]}]}],
 "clusters": [{"name": "outbound|80||backend.bench.svc.cluster.local",
   "service": "backend.bench.svc.cluster.local", "port": 80, "protocol": "${UPSTREAM_PROTOCOL:-HTTP}",
   "lb": "LEAST_REQUEST", "connectTimeout": 1000,
   "endpoints": [{"address": "$SERVER_IP:$BACKEND_PORT", "proxyPort": 15006, "workload": "backend.bench", "weight": 1}]}]}
CFG

"$BIN" proxy --id backend.bench --address $SERVER_IP --config-file "$WORK/server.json" --access-log "${ACCESS_LOG:-off}" --concurrency "${CONCURRENCY:-2}" 2>"$WORK/server.log" >/dev/null &
SERVER=$!
PIDS+=($SERVER)
"$BIN" proxy --id client.bench --address $CLIENT_IP --config-file "$WORK/client.json" --access-log "${ACCESS_LOG:-off}" --concurrency "${CONCURRENCY:-2}" 2>"$WORK/client.log" >/dev/null &
CLIENT=$!
PIDS+=($CLIENT)
for _ in $(seq 50); do
  curl -sf "http://$CLIENT_IP:15000/ready" >/dev/null && curl -sf "http://$SERVER_IP:15000/ready" >/dev/null && break
  sleep 0.1
done
for _ in $(seq 50); do
  curl -sf "http://$SERVER_IP:$BACKEND_PORT/" >/dev/null && break
  sleep 0.1
done
curl -sf -H 'Host: backend' "http://$CLIENT_IP:15001/" >/dev/null || { echo "chain does not answer"; cat "$WORK"/*.log; exit 1; }
# Warm up connections and code paths.
wrk -t1 -c"$CONNS" -d1s -H 'Host: backend' "http://$CLIENT_IP:15001/" >/dev/null

# utime and stime, in clock ticks.
cpu() { awk '{print $14, $15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)
read -r cu0 cs0 < <(cpu $CLIENT); read -r su0 ss0 < <(cpu $SERVER)
${BEFORE_LOAD:-true}; wrk -t"$(( CONNS < 2 ? 1 : 2 ))" -c"$CONNS" -d"${DURATION}s" -H 'Host: backend' "http://$CLIENT_IP:15001/" > "$WORK/wrk.txt"
read -r cu1 cs1 < <(cpu $CLIENT); read -r su1 ss1 < <(cpu $SERVER)
cat "$WORK/wrk.txt"
REQS=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
awk -v r="$REQS" -v t="$TICKS" \
    -v cu=$((cu1 - cu0)) -v cs=$((cs1 - cs0)) -v su=$((su1 - su0)) -v ss=$((ss1 - ss0)) 'BEGIN {
  us = 1e6 / t / r
  printf "requests: %d\n", r
  printf "client proxy (outbound hop): %.1f us CPU/request (user %.1f, system %.1f)\n", (cu + cs) * us, cu * us, cs * us
  printf "server proxy (inbound hop):  %.1f us CPU/request (user %.1f, system %.1f)\n", (su + ss) * us, su * us, ss * us
  printf "per hop (mean): %.1f us\n", (cu + cs + su + ss) / 2 * us
}'
