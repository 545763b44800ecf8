#!/usr/bin/env bash
# Token API: warm GET /v1/apps/{id}/token throughput and latency with an API key, and the
# upstream fetch count of a cold stampede.
#
# Builds wxgate and wxsim (release), starts wxsim and `wxgate serve` on free loopback ports
# (embedded mode: SQLite in a temp dir), creates an API key, then:
#   1. cold stampede: registers a new app and sends BENCH_STAMPEDE concurrent first requests
#      (wrk, one request per connection at once) — wxsim counts the upstream token fetches;
#   2. warm: wrk for BENCH_SECONDS with BENCH_CONNECTIONS connections on the warm app.
# Prints ONE JSON line on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNECTIONS:-64}"
STAMPEDE="${BENCH_STAMPEDE:-300}"
log() { echo "token_throughput: $*" >&2; }

log "building (release)"
cargo build --release -p wxgate -p wxsim >&2
command -v wrk >/dev/null || { apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; }; }

source bench/common.sh
GW_PORT="$(free_port)"; GW="http://127.0.0.1:$GW_PORT"
start_sim
cat >"$WORK/wxgate.toml" <<TOML
listen = "127.0.0.1:$GW_PORT"
database_url = "sqlite://$WORK/wxgate.db"
master_key_file = "$WORK/wxgate.key"
wechat_api_base = "$SIM"
wecom_api_base = "$SIM"
[[apps]]
id = "shop"
kind = "official_account"
appid = "wxdemo_oa"
secret = "demo-oa-secret"
TOML
RUST_LOG=warn WXGATE_ADMIN_TOKEN="$ADMIN" target/release/wxgate --config "$WORK/wxgate.toml" serve >"$WORK/gw.log" 2>&1 & PIDS+=($!)
wait_up "$GW/healthz"

KEY="$(curl -fsS -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"bench","apps":"*"}' "$GW/v1/keys" | json '["key"]')"

# 1. Cold stampede on a freshly registered app.
curl -fsS -o /dev/null -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"id":"cold","kind":"mini_program","appid":"wxdemo_mp","secret":"demo-mp-secret"}' "$GW/v1/apps"
wrk -t2 -c"$STAMPEDE" -d1s -H "Authorization: Bearer $KEY" "$GW/v1/apps/cold/token" >"$WORK/stampede.txt" 2>&1 || true
COLD_FETCHES="$(curl -fsS "$SIM/_sim/stats/wxdemo_mp" | json '["token_fetches"]["stable_token"]')"
STAMPEDE_REQS="$(awk '/requests in/ {print $1}' "$WORK/stampede.txt")"

# 2. Warm throughput.
curl -fsS -o /dev/null -H "Authorization: Bearer $KEY" "$GW/v1/apps/shop/token"
log "load before the warm run: $(cut -d' ' -f1-3 /proc/loadavg)"
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -H "Authorization: Bearer $KEY" "$GW/v1/apps/shop/token" >"$WORK/warm.txt" 2>&1
cat "$WORK/warm.txt" >&2
WARM_FETCHES="$(curl -fsS "$SIM/_sim/stats/wxdemo_oa" | json '["token_fetches"]["stable_token"]')"
NON2XX="$(awk '/Non-2xx/ {print $NF}' "$WORK/warm.txt")"
RSS_KB="$(awk '/VmHWM/ {print $2}' "/proc/${PIDS[1]}/status")"

python3 - "$WORK/warm.txt" <<PY
import json, re, sys
text = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return round(v / 1000 if unit == "us" else v * 1000 if unit == "s" else v, 3)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(json.dumps({
    "bench": "token_throughput", "requests_per_sec": round(rps), "p50_ms": ms("50"),
    "p99_ms": ms("99"), "seconds": $SECS, "connections": $CONNS,
    "non_2xx": int("${NON2XX:-0}" or 0), "warm_upstream_fetches": $WARM_FETCHES,
    "stampede_connections": $STAMPEDE, "stampede_requests": int("${STAMPEDE_REQS:-0}" or 0),
    "stampede_upstream_fetches": $COLD_FETCHES, "gateway_peak_rss_mb": round($RSS_KB / 1024, 1),
    "cpus": $(nproc)}))
PY
