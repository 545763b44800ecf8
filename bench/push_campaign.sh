#!/usr/bin/env bash
# Message push: a BENCH_RECIPIENTS-recipient OA template campaign (default 100,000), uploaded as
# a CSV (streamed), through the durable outbox (SQLite) against wxsim answering every send after
# BENCH_LATENCY_MS (default 20 ms). Measures the upload time of POST /v1/campaigns (read,
# checked and committed as it streams), token p99 and a single message's 202-to-sent time
# during the upload, the delivery rate from the first to the last send, the gateway's peak RSS and
# its CPU seconds per 1,000 messages, and checks wxsim's counts (every recipient delivered once,
# no duplicate deliveries).
# BENCH_SINGLES=0: the probe reads tokens only (no single messages).
# BENCH_PROFILE=<file>: also records the gateway with `perf record` (user space, call graphs from
# DWARF) from the upload's start to the campaign's end, into <file> (`perf report -i <file>`).
# BENCH_PROFILE_UPLOAD=<file>: the same, from the upload's start to its 202 only.
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
  exec "${BENCH_WXGATE:-$OLDPWD/target/release/wxgate}" serve >"$WORK/gw.log" 2>&1) & PIDS+=($!)
wait_up "$GW/healthz"
GW_PID="$(pgrep -f "wxgate.* serve" | while read -r p; do grep -q "$WORK" /proc/$p/environ 2>/dev/null && echo "$p"; done | head -1)"

python3 - "$N" >"$WORK/campaign.csv" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
out.write("to,thing1,amount2,time3,character_string4\n")
for i in range(n):
    out.write("oBench%07d,Autumn sale,¥9.90,10:00,A%d\n" % (i, i))
PY
# While the campaign uploads: a token read every 20 ms and a single message every 200 ms
# (POST -> sent, polled every 5 ms), to show that nothing else stalls meanwhile.
cat >"$WORK/probe.py" <<'PY'
import json, os, sys, time, threading, urllib.request
gw, admin, stop = sys.argv[1], sys.argv[2], sys.argv[3]
def call(method, path, body=None):
    req = urllib.request.Request(gw + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + admin, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)
tok, single = [], []
def tokens():
    while not os.path.exists(stop):
        t = time.monotonic(); call("GET", "/v1/apps/shop/token"); tok.append(time.monotonic() - t); time.sleep(0.02)
def singles():
    i = 0
    while not os.path.exists(stop):
        i += 1
        t = time.monotonic()
        m = call("POST", "/v1/messages", {"app": "shop", "type": "template", "template_id": "TPL_ORDER", "to": "oProbe%05d" % i,
            "data": {"thing1": "probe", "amount2": "¥1.00", "time3": "10:00", "character_string4": "P"}})
        while call("GET", "/v1/messages/" + m["id"])["state"] in ("pending", "sending"):
            time.sleep(0.005)
        single.append(time.monotonic() - t); time.sleep(0.2)
ts = [threading.Thread(target=tokens)] + ([threading.Thread(target=singles)] if os.environ.get("BENCH_SINGLES", "1") != "0" else [])
[t.start() for t in ts]; [t.join() for t in ts]
def pct(v, p): v = sorted(v); return round(v[min(len(v) - 1, int(len(v) * p))] * 1000, 1) if v else None
print(json.dumps({"token_reads": len(tok), "token_p99_ms": pct(tok, 0.99), "token_max_ms": pct(tok, 1.0),
    "singles": len(single), "single_to_sent_p50_ms": pct(single, 0.5), "single_to_sent_max_ms": pct(single, 1.0)}))
PY
SIM_PID="${PIDS[0]}"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS="$(getconf CLK_TCK)"
CPU0="$(cpu "$GW_PID")"; SCPU0="$(cpu "$SIM_PID")"
log "uploading a CSV campaign of $N recipients ($(du -h "$WORK/campaign.csv" | cut -f1))"
python3 "$WORK/probe.py" "$GW" "$ADMIN" "$WORK/probe.stop" >"$WORK/probe.json" & PROBE=$!
sleep 0.5
if [ -n "${BENCH_PROFILE:-}${BENCH_PROFILE_UPLOAD:-}" ]; then
  perf record -q -F 299 -e cpu-clock --call-graph dwarf,8192 -o "${BENCH_PROFILE:-$BENCH_PROFILE_UPLOAD}" -p "$GW_PID" 2>"$WORK/perf.log" & PERF=$!
  sleep 0.5
fi
T0="$(date +%s.%N)"
ID="$(curl -fsS -X POST -T "$WORK/campaign.csv" -H "Authorization: Bearer $ADMIN" -H 'content-type: text/csv' \
  "$GW/v1/campaigns?app=shop&type=template&template_id=TPL_ORDER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
T1="$(date +%s.%N)"
CPU_UP="$(cpu "$GW_PID")"
if [ -n "${BENCH_PROFILE_UPLOAD:-}" ]; then kill -INT "$PERF"; wait "$PERF" || true; fi
touch "$WORK/probe.stop"; wait "$PROBE"
RSS_UPLOAD_KB="$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")"
log "accepted as $ID in $(python3 -c "print(round($T1-$T0,2))") s; waiting for delivery"
while :; do
  STATUS="$(curl -fsS -H "Authorization: Bearer $ADMIN" "$GW/v1/campaigns/$ID")"
  echo "$STATUS" | python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit(0 if v["status"]=="done" else 1)' && break
  sleep 0.1
done
T2="$(date +%s.%N)"
if [ -n "${BENCH_PROFILE:-}" ]; then kill -INT "$PERF"; wait "$PERF" || true; fi
CPU1="$(cpu "$GW_PID")"; SCPU1="$(cpu "$SIM_PID")"
RSS_KB="$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")"
STATS="$(curl -fsS "$SIM/_sim/stats/wxdemo_oa")"
python3 - <<PY
import json
status = json.loads('''$STATUS''')
stats = json.loads('''$STATS''')
probe = json.load(open("$WORK/probe.json"))
n = $N
deliver_s = $T2 - $T1
cpu_s = ($CPU1 - $CPU0) / $TICKS
print(json.dumps({
  "bench": "push_campaign", "recipients": n, "wechat_latency_ms": $LATENCY,
  "upload_seconds": round($T1 - $T0, 2), "during_upload": probe,
  "gateway_peak_rss_mb_after_upload": round($RSS_UPLOAD_KB / 1024, 1), "deliver_seconds": round(deliver_s, 2),
  "messages_per_sec": round(n / deliver_s), "end_to_end_messages_per_sec": round(n / ($T2 - $T0)),
  "sent": status["counts"]["sent"], "failed": status["counts"]["failed"], "unknown": status["counts"]["unknown"],
  "wxsim_deliveries": stats["deliveries"], "wxsim_duplicate_deliveries": stats["duplicate_deliveries"],
  "gateway_peak_rss_mb": round($RSS_KB / 1024, 1), "gateway_cpu_seconds_per_1000": round(cpu_s * 1000 / n, 3),
  "upload_cpu_seconds_per_1000": round(($CPU_UP - $CPU0) / $TICKS * 1000 / n, 3),
  "delivery_cpu_seconds_per_1000": round(($CPU1 - $CPU_UP) / $TICKS * 1000 / n, 3),
  "wxsim_cpu_seconds_per_1000": round(($SCPU1 - $SCPU0) / $TICKS * 1000 / n, 3),
  "cpus": $(nproc)}))
PY
