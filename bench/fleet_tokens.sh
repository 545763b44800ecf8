#!/usr/bin/env bash
# Fleet token throughput: 3 `wxgate serve` instances on one Redis against 1 embedded instance,
# measured in the same run, plus the upstream fetch count of a cold stampede on the fleet.
#
# Builds wxgate and wxsim (release), starts wxsim, a private redis-server, one embedded
# gateway and three fleet gateways (same apps, same Redis prefix) on free loopback ports.
#   1. cold stampede: BENCH_STAMPEDE connections split over the 3 instances ask for a cold
#      app's token at once (three wrk at the same time) — wxsim counts the upstream fetches;
#   2. warm, embedded: three wrk (1 thread, BENCH_CONNECTIONS/3 connections each) on the one
#      embedded instance for BENCH_SECONDS;
#   3. warm, fleet: the same three wrk, one per fleet instance.
# The ratio is fleet / embedded requests per second. All processes share this machine's cores,
# so the ratio shows what fleet mode costs on the hot path, not what more machines would add.
# Prints ONE JSON line on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNECTIONS:-66}"
STAMPEDE="${BENCH_STAMPEDE:-900}"
log() { echo "fleet_tokens: $*" >&2; }

log "building (release)"
cargo build --release -p wxgate -p wxsim >&2
command -v wrk >/dev/null || { apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; }; }
command -v redis-server >/dev/null || apt-get install -y redis-server >&2

source bench/common.sh
# A fleet shares one master key (every instance must open the same sealed secrets).
MASTER_KEY="$(target/release/wxgate gen-key | grep -Eo '[0-9a-f]{64}' | head -1)"

start_sim
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

APPS='[{id="shop",kind="official_account",appid="wxdemo_oa",secret="demo-oa-secret"},{id="cold",kind="mini_program",appid="wxdemo_mp",secret="demo-mp-secret"}]'
# start_gw NAME PORT [REDIS_URL]
start_gw() {
  mkdir -p "$WORK/$1"
  ( cd "$WORK/$1" && exec env RUST_LOG=warn WXGATE_LISTEN="127.0.0.1:$2" WXGATE_ADMIN_TOKEN="$ADMIN" \
      WXGATE_DATABASE_URL="sqlite://$WORK/$1/wxgate.db" WXGATE_MASTER_KEY="$MASTER_KEY" \
      WXGATE_WECHAT_API_BASE="$SIM" WXGATE_WECOM_API_BASE="$SIM" WXGATE_APPS="$APPS" \
      ${3:+WXGATE_REDIS_URL="$3"} "$OLDPWD/target/release/wxgate" serve >"$WORK/$1/gw.log" 2>&1 ) &
  PIDS+=($!)
  wait_up "http://127.0.0.1:$2/healthz" || { cat "$WORK/$1/gw.log" >&2; exit 1; }
}
EMB_PORT="$(free_port)"; start_gw embedded "$EMB_PORT"
FLEET=()
for i in 1 2 3; do p="$(free_port)"; start_gw "fleet$i" "$p" "redis://127.0.0.1:$REDIS_PORT"; FLEET+=("http://127.0.0.1:$p"); done

# three_wrk OUTPREFIX CONNS_EACH SECONDS URL1 URL2 URL3 → total requests/sec on stdout
three_wrk() {
  local out="$1" c="$2" d="$3"; shift 3
  local n=0 pids=()
  for url in "$@"; do n=$((n+1)); wrk -t1 -c"$c" -d"$d" --latency -H "Authorization: Bearer $ADMIN" "$url" >"$WORK/$out.$n.txt" 2>&1 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || true; done
  python3 - "$WORK/$out".*.txt <<'PY'
import re, sys
print(round(sum(float(re.search(r"Requests/sec:\s+([\d.]+)", open(f).read()).group(1)) for f in sys.argv[1:])))
PY
}

log "cold stampede: $STAMPEDE connections over 3 instances"
three_wrk stampede $((STAMPEDE / 3)) 1s "${FLEET[0]}/v1/apps/cold/token" "${FLEET[1]}/v1/apps/cold/token" "${FLEET[2]}/v1/apps/cold/token" >/dev/null
COLD_FETCHES="$(curl -fsS "$SIM/_sim/stats/wxdemo_mp" | json '["token_fetches"]["stable_token"]')"

EMB="http://127.0.0.1:$EMB_PORT/v1/apps/shop/token"
curl -fsS -o /dev/null -H "Authorization: Bearer $ADMIN" "$EMB"
for u in "${FLEET[@]}"; do curl -fsS -o /dev/null -H "Authorization: Bearer $ADMIN" "$u/v1/apps/shop/token"; done
WARM_BEFORE="$(curl -fsS "$SIM/_sim/stats/wxdemo_oa" | json '["token_fetches"]["stable_token"]')"
log "warm, embedded: 3 × $((CONNS / 3)) connections for ${SECS}s"
EMB_RPS="$(three_wrk embedded $((CONNS / 3)) "${SECS}s" "$EMB" "$EMB" "$EMB")"
log "warm, fleet: 3 × $((CONNS / 3)) connections for ${SECS}s"
FLEET_RPS="$(three_wrk fleet $((CONNS / 3)) "${SECS}s" "${FLEET[0]}/v1/apps/shop/token" "${FLEET[1]}/v1/apps/shop/token" "${FLEET[2]}/v1/apps/shop/token")"
WARM_AFTER="$(curl -fsS "$SIM/_sim/stats/wxdemo_oa" | json '["token_fetches"]["stable_token"]')"
NON2XX="$(cat "$WORK"/embedded.*.txt "$WORK"/fleet.*.txt | awk '/Non-2xx/ {s+=$NF} END {print s+0}')"
P99="$(python3 - "$WORK"/fleet.*.txt <<'PY'
import re, sys
def ms(t):
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
print(round(max(ms(open(f).read()) for f in sys.argv[1:]), 2))
PY
)"
python3 -c "import json; print(json.dumps({'bench': 'fleet_tokens', 'embedded_requests_per_sec': $EMB_RPS, 'fleet3_requests_per_sec': $FLEET_RPS, 'ratio_fleet3_to_embedded': round($FLEET_RPS / $EMB_RPS, 2), 'fleet3_worst_p99_ms': $P99, 'non_2xx': $NON2XX, 'warm_upstream_fetches': $WARM_AFTER - $WARM_BEFORE, 'stampede_connections': $STAMPEDE, 'stampede_upstream_fetches': $COLD_FETCHES, 'seconds': $SECS, 'cpus': $(nproc)}))"
