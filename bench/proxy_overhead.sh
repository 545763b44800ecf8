#!/usr/bin/env bash
# Proxy mode's cost: OA template sends driven by wrk (bench/sim_template_send.lua, a valid
# TPL_ORDER body to a new openid per request), first straight to wxsim with the real token,
# then through wxgate's proxy listener with a placeholder — the same machine, the same run.
# Reports requests/s and latency of each and their ratio; checks that wxsim accepted every
# request of both runs and rejected none.
#   BENCH_SECONDS (default 10), BENCH_CONNECTIONS (64), BENCH_THREADS (2)
# Prints ONE JSON line on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${BENCH_SECONDS:-10}"; CONNS="${BENCH_CONNECTIONS:-64}"; THREADS="${BENCH_THREADS:-2}"
log() { echo "proxy_overhead: $*" >&2; }

log "building (release)"
cargo build --release -p wxgate -p wxsim >&2
command -v wrk >/dev/null || { apt-get install -y wrk >&2 || { apt-get update >&2; apt-get install -y wrk >&2; }; }
source bench/common.sh
start_sim
curl -fsS -o /dev/null -X PATCH -H 'content-type: application/json' -d '{"send_daily_limit": 1000000000}' "$SIM/_sim/apps/wxdemo_oa"
GW_PORT="$(free_port)"; PX_PORT="$(free_port)"; GW="http://127.0.0.1:$GW_PORT"; PX="http://127.0.0.1:$PX_PORT"
(cd "$WORK" && RUST_LOG=warn WXGATE_LISTEN="127.0.0.1:$GW_PORT" WXGATE_PROXY_LISTEN="127.0.0.1:$PX_PORT" \
  WXGATE_ADMIN_TOKEN="$ADMIN" WXGATE_DATABASE_URL="sqlite://$WORK/wxgate.db" WXGATE_MASTER_KEY_FILE="$WORK/wxgate.key" \
  WXGATE_WECHAT_API_BASE="$SIM" WXGATE_WECOM_API_BASE="$SIM" WXGATE_ROLES=api \
  WXGATE_APPS='[{id="shop",kind="official_account",appid="wxdemo_oa",secret="demo-oa-secret"}]' \
  exec "$OLDPWD/target/release/wxgate" serve >"$WORK/gw.log" 2>&1) & PIDS+=($!)
wait_up "$GW/healthz"
KEY="$(curl -fsS -X POST -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"bench","apps":["shop"]}' "$GW/v1/keys" | json '["key"]')"
PLACEHOLDER="$(curl -fsS "$PX/cgi-bin/token?grant_type=client_credential&appid=wxdemo_oa&secret=$KEY" | json '["access_token"]')"
REAL="$(curl -fsS -H "Authorization: Bearer $ADMIN" "$GW/v1/apps/shop/token" | json '["access_token"]')"

accepted() { curl -fsS "$SIM/_sim/stats/wxdemo_oa" | json '["sends_accepted"]'; }
rejected() { curl -fsS "$SIM/_sim/stats/wxdemo_oa" | python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["sends_rejected"].values()))'; }
# One wrk run against BASE with TOKEN: "requests rps p50_us p99_us accepted".
run() {
  local before after out
  before="$(accepted)"
  out="$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s bench/sim_template_send.lua \
    "$1/cgi-bin/message/template/send?access_token=$2" | grep BENCH_RESULT)"
  after="$(accepted)"
  python3 - "$out" "$before" "$after" <<'PY'
import sys
kv = dict(p.split("=") for p in sys.argv[1].split()[1:])
n, us = int(kv["requests"]), int(kv["duration_us"])
print(n, round(n / (us / 1e6)), kv["p50_us"], kv["p99_us"], int(sys.argv[3]) - int(sys.argv[2]))
PY
}
# One token use each way first: connections and caches warm.
curl -fsS -o /dev/null "$SIM/cgi-bin/get_api_domain_ip?access_token=$REAL"
log "wrk straight to wxsim (${SECS}s, $CONNS connections)"
read -r D_N D_RPS D_P50 D_P99 D_ACC <<<"$(run "$SIM" "$REAL")"
log "wrk through the proxy"
read -r P_N P_RPS P_P50 P_P99 P_ACC <<<"$(run "$PX" "$PLACEHOLDER")"
REJ="$(rejected)"
python3 - <<PY
import json
d = {"bench": "proxy_overhead", "seconds": $SECS, "connections": $CONNS,
     "direct": {"requests": $D_N, "requests_per_sec": $D_RPS, "p50_us": $D_P50, "p99_us": $D_P99, "accepted": $D_ACC},
     "proxy": {"requests": $P_N, "requests_per_sec": $P_RPS, "p50_us": $P_P50, "p99_us": $P_P99, "accepted": $P_ACC},
     "proxy_over_direct_rps": round($P_RPS / $D_RPS, 3), "wxsim_rejected": $REJ, "cpus": $(nproc)}
print(json.dumps(d))
ok = $REJ == 0 and $D_ACC >= $D_N and $P_ACC >= $P_N
raise SystemExit(0 if ok else 1)
PY
