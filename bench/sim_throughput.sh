#!/usr/bin/env bash
# Throughput of the wxsim simulator on OA template sends, validation on.
#
# Builds wxsim (release), starts it on a free loopback port with the default (demo) config,
# raises wxdemo_oa's daily send cap, fetches a token, and drives
# POST /cgi-bin/message/template/send with wrk (bench/sim_template_send.lua: a valid TPL_ORDER
# body to a different openid per request). Afterwards it checks /_sim/stats/wxdemo_oa: every
# request wrk counted must have been accepted and none rejected, or the script exits 1.
#
# Prints ONE JSON line on stdout; everything else goes to stderr.
#   BENCH_SECONDS      run length in seconds (default 10)
#   BENCH_CONNECTIONS  concurrent connections (default 64)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_IDLE_WAIT    wait up to this many seconds for the CPUs to be idle first (default 60)
#
# wrk and wxsim share the machine's CPUs, so another build running at the same time lowers the
# figure; the JSON line reports how busy the CPUs were just before the run (cpu_busy_before_pct).
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_RUN="${BENCH_SECONDS:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
IDLE_WAIT="${BENCH_IDLE_WAIT:-60}"
APP=wxdemo_oa

log() { echo "sim_throughput: $*" >&2; }

# Percentage of all CPUs busy over the next second, from /proc/stat.
cpu_busy_pct() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

log "building wxsim (release)"
cargo build --release -p wxsim >&2

if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  if ! apt-get install -y wrk >&2; then
    apt-get update >&2
    apt-get install -y wrk >&2
  fi
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:${PORT}"
WORK="$(mktemp -d)"

SIM_PID=""
cleanup() {
  if [[ -n "$SIM_PID" ]]; then
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

target/release/wxsim --listen "127.0.0.1:${PORT}" >"$WORK/wxsim.log" 2>&1 &
SIM_PID=$!

for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "$BASE/_sim/stats"; then break; fi
  if ! kill -0 "$SIM_PID" 2>/dev/null; then
    cat "$WORK/wxsim.log" >&2
    log "wxsim exited before it listened"
    exit 1
  fi
  sleep 0.1
done
curl -fsS -o /dev/null "$BASE/_sim/stats"

# The OA default is 100,000 sends a day; a 10 s run sends more than that.
curl -fsS -o /dev/null -X PATCH "$BASE/_sim/apps/$APP" \
  -H 'content-type: application/json' -d '{"send_daily_limit": 1000000000}'

TOKEN="$(curl -fsS "$BASE/cgi-bin/token?grant_type=client_credential&appid=${APP}&secret=demo-oa-secret" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

# One request by hand first, so a broken body fails loudly rather than as a fast 47003 storm.
PROBE="$(curl -fsS -X POST "$BASE/cgi-bin/message/template/send?access_token=${TOKEN}" \
  -H 'content-type: application/json' \
  -d '{"touser":"oBenchProbe","template_id":"TPL_ORDER","data":{"thing1":{"value":"Order shipped"},"amount2":{"value":"¥9.90"},"time3":{"value":"15:01"},"character_string4":{"value":"SN0"}}}')"
if [[ "$PROBE" != *'"errcode":0'* ]]; then
  log "probe send failed: $PROBE"
  exit 1
fi

BUSY="$(cpu_busy_pct)"
WAITED=1
while (( BUSY >= 10 && WAITED < IDLE_WAIT )); do
  (( WAITED == 1 )) && log "CPUs ${BUSY}% busy (another build?); waiting up to ${IDLE_WAIT}s for them to be idle"
  BUSY="$(cpu_busy_pct)"
  WAITED=$((WAITED + 1))
done
(( BUSY >= 10 )) && log "warning: CPUs still ${BUSY}% busy; the figure will be low"
log "CPUs ${BUSY}% busy before the run; load average $(cut -d' ' -f1-3 /proc/loadavg)"

CPU0="$(awk '{print $14 + $15}' "/proc/$SIM_PID/stat")"
log "wrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS_RUN}s against $BASE"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency \
  -s bench/sim_template_send.lua \
  "$BASE/cgi-bin/message/template/send?access_token=${TOKEN}" >"$WORK/wrk.out"
CPU1="$(awk '{print $14 + $15}' "/proc/$SIM_PID/stat")"
cat "$WORK/wrk.out" >&2

# Requests still in flight when wrk stopped finish on the server; let them land.
sleep 0.5
curl -fsS "$BASE/_sim/stats/$APP" >"$WORK/stats.json"
PEAK_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$SIM_PID/status")"

python3 - "$WORK/wrk.out" "$WORK/stats.json" "$PEAK_KB" "$SECONDS_RUN" "$CONNECTIONS" \
  "$(nproc)" "$BUSY" "$((CPU1 - CPU0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys

wrk_out, stats_file, peak_kb, seconds, conns, cpus, busy, ticks, hz = sys.argv[1:]
conns = int(conns)
line = next(l for l in open(wrk_out) if l.startswith("BENCH_RESULT "))
r = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
stats = json.load(open(stats_file))

probe = 1  # the hand-made send before the run
accepted = stats["sends_accepted"] - probe
rejected = sum(stats["sends_rejected"].values())
requests = r["requests"]
out = {
    "bench": "sim_template_send",
    "requests_per_sec": round(requests / (r["duration_us"] / 1e6)),
    "p50_ms": round(r["p50_us"] / 1000, 3),
    "p99_ms": round(r["p99_us"] / 1000, 3),
    "seconds": int(seconds),
    "connections": conns,
    "requests": requests,
    "accepted": accepted,
    "rejected": rejected,
    "wxsim_peak_rss_mb": round(int(peak_kb) / 1024, 1),
    "cpus": int(cpus),
    "cpu_busy_before_pct": int(busy),
    # CPU time wxsim spent per request (user + system); the rest of the 2 CPUs went to wrk.
    "wxsim_cpu_us_per_req": round(1e6 * int(ticks) / int(hz) / max(requests, 1), 1),
}
print(json.dumps(out))

problems = []
if rejected:
    problems.append(f"wxsim rejected sends: {stats['sends_rejected']}")
# wrk counts replies it read; requests in flight at the stop were accepted but not counted.
if not (requests <= accepted <= requests + conns):
    problems.append(f"accepted {accepted} is not within [{requests}, {requests + conns}]")
errs = {k: v for k, v in r.items() if k.startswith("err_") and v}
# Closing in-flight connections at the stop is not an error; anything else is.
if any(k != "err_read" for k in errs) or errs.get("err_read", 0) > conns:
    problems.append(f"wrk errors: {errs}")
for p in problems:
    print("sim_throughput: FAIL: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
