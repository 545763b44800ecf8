#!/usr/bin/env bash
# Message push: a BENCH_RECIPIENTS-recipient OA template campaign (default 100,000) through the
# durable outbox (SQLite) against wxsim answering every send after BENCH_LATENCY_MS (default
# 20 ms). Measures the accept time of POST /v1/campaigns (validation + one committed
# transaction), the delivery rate from the first to the last send, the gateway's peak RSS and
# its CPU seconds per 1,000 messages, and checks wxsim's counts (every recipient delivered once,
# no duplicate deliveries).
# Prints ONE JSON line on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${BENCH_RECIPIENTS:-100000}"
LATENCY="${BENCH_LATENCY_MS:-20}"
log() { echo "push_campaign: $*" >&2; }

log "building (release)"
cargo build --release -p wxgate -p wxsim >&2
source bench/common.sh
GW_PORT="$(free_port)"; GW="http://127.0.0.1:$GW_PORT"
start_sim
curl -fsS -o /dev/null -X PATCH -H 'content-type: application/json' -d '{"send_daily_limit": 1000000000}' "$SIM/_sim/apps/wxdemo_oa"
curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' -d "{\"latency_ms\": $LATENCY, \"scope\": \"send\"}" "$SIM/_sim/faults"

(cd "$WORK" && RUST_LOG=warn WXGATE_LISTEN="127.0.0.1:$GW_PORT" WXGATE_ADMIN_TOKEN="$ADMIN" \
  WXGATE_DATABASE_URL="sqlite://$WORK/wxgate.db" WXGATE_MASTER_KEY_FILE="$WORK/wxgate.key" \
  WXGATE_WECHAT_API_BASE="$SIM" WXGATE_WECOM_API_BASE="$SIM" \
  WXGATE_APPS='[{id="shop",kind="official_account",appid="wxdemo_oa",secret="demo-oa-secret"}]' \
  exec "$OLDPWD/target/release/wxgate" serve >"$WORK/gw.log" 2>&1) & PIDS+=($!)
wait_up "$GW/healthz"
GW_PID="$(pgrep -f "target/release/wxgate serve" | while read -r p; do grep -q "$WORK" /proc/$p/environ 2>/dev/null && echo "$p"; done | head -1)"

python3 - "$N" >"$WORK/campaign.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"app": "shop", "type": "template", "template_id": "TPL_ORDER",
  "data": {"thing1": "Autumn sale", "amount2": "¥9.90", "time3": "10:00", "character_string4": "X"},
  "recipients": [{"to": "oBench%07d" % i, "data": {"character_string4": "A%d" % i}} for i in range(n)]}))
PY
SIM_PID="${PIDS[0]}"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS="$(getconf CLK_TCK)"
CPU0="$(cpu "$GW_PID")"; SCPU0="$(cpu "$SIM_PID")"
log "posting a campaign of $N recipients"
T0="$(date +%s.%N)"
ID="$(curl -fsS -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' --data-binary @"$WORK/campaign.json" "$GW/v1/campaigns" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
T1="$(date +%s.%N)"
log "accepted as $ID in $(python3 -c "print(round($T1-$T0,2))") s; waiting for delivery"
while :; do
  STATUS="$(curl -fsS -H "Authorization: Bearer $ADMIN" "$GW/v1/campaigns/$ID")"
  echo "$STATUS" | python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit(0 if v["status"]=="done" else 1)' && break
  sleep 0.1
done
T2="$(date +%s.%N)"
CPU1="$(cpu "$GW_PID")"; SCPU1="$(cpu "$SIM_PID")"
RSS_KB="$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")"
STATS="$(curl -fsS "$SIM/_sim/stats/wxdemo_oa")"
python3 - <<PY
import json
status = json.loads('''$STATUS''')
stats = json.loads('''$STATS''')
n = $N
deliver_s = $T2 - $T1
cpu_s = ($CPU1 - $CPU0) / $TICKS
print(json.dumps({
  "bench": "push_campaign", "recipients": n, "wechat_latency_ms": $LATENCY,
  "accept_seconds": round($T1 - $T0, 2), "deliver_seconds": round(deliver_s, 2),
  "messages_per_sec": round(n / deliver_s), "end_to_end_messages_per_sec": round(n / ($T2 - $T0)),
  "sent": status["counts"]["sent"], "failed": status["counts"]["failed"], "unknown": status["counts"]["unknown"],
  "wxsim_deliveries": stats["deliveries"], "wxsim_duplicate_deliveries": stats["duplicate_deliveries"],
  "gateway_peak_rss_mb": round($RSS_KB / 1024, 1), "gateway_cpu_seconds_per_1000": round(cpu_s * 1000 / n, 3),
  "wxsim_cpu_seconds_per_1000": round(($SCPU1 - $SCPU0) / $TICKS * 1000 / n, 3),
  "cpus": $(nproc)}))
PY
