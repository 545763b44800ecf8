#!/usr/bin/env bash
# Fleet push: one BENCH_RECIPIENTS-recipient OA template campaign (default 100,000) through one
# embedded instance (SQLite), then the same size through three `wxgate serve` instances on one
# PostgreSQL database and one Redis, in the same run, against wxsim answering every send after
# BENCH_LATENCY_MS (default 20 ms). The fleet campaign is posted to instance 1 only; all three
# deliver it. For each: accept time, delivery rate (202 to done), end-to-end rate (post to done),
# wxsim's deliveries and duplicate deliveries, each gateway's peak RSS and CPU seconds per 1,000
# messages (and PostgreSQL's and Redis' CPU for the fleet). The ratio is fleet / embedded
# delivery rate. All processes share this machine's cores.
#
# PostgreSQL is a private server (initdb defaults, so autovacuum is on as in production; the
# CI server on :5432 runs with autovacuum off, under which the outbox slows as dead rows pile
# up) unless BENCH_DATABASE_URL names a database to create the run's database on.
# Redis is a private redis-server.
# Prints ONE JSON line on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${BENCH_RECIPIENTS:-100000}"
LATENCY="${BENCH_LATENCY_MS:-20}"
log() { echo "push_fleet: $*" >&2; }

log "building (release)"
cargo build --release -p wxgate -p wxsim >&2
command -v redis-server >/dev/null || apt-get install -y redis-server >&2
source bench/common.sh
MASTER_KEY="$(target/release/wxgate gen-key | grep -Eo '[0-9a-f]{64}' | head -1)"

if [ -z "${BENCH_DATABASE_URL:-}" ]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  PG_PORT="$(free_port)"; PG_DIR="$WORK/pg"; mkdir -p "$PG_DIR"
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$WORK" "$PG_DIR"
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust >"$WORK/initdb.log" 2>&1
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >&2
  stop_pg() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; }
  ADMIN_DB="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
else
  stop_pg() { :; }
  ADMIN_DB="$BENCH_DATABASE_URL"
fi
DB_NAME="wxgate_bench_$RANDOM$RANDOM"
psql "$ADMIN_DB" -qc "CREATE DATABASE $DB_NAME" >&2
AUTOVACUUM="$(psql "$ADMIN_DB" -qtAc 'show autovacuum')"
drop_db() { psql "$ADMIN_DB" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >&2 || true; }
trap 'cleanup_all' EXIT
cleanup_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); drop_db; stop_pg; rm -rf "$WORK"; }
PG_URL="${ADMIN_DB%/*}/$DB_NAME"

start_sim
curl -fsS -o /dev/null -X PATCH -H 'content-type: application/json' -d '{"send_daily_limit": 1000000000}' "$SIM/_sim/apps/wxdemo_oa"
curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' -d "{\"latency_ms\": $LATENCY, \"scope\": \"send\"}" "$SIM/_sim/faults"
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 & PIDS+=($!)
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

APPS='[{id="shop",kind="official_account",appid="wxdemo_oa",secret="demo-oa-secret"}]'
GW_PIDS=()
# start_gw NAME PORT DATABASE_URL [REDIS_URL]: the gateway's pid is appended to GW_PIDS.
start_gw() {
  mkdir -p "$WORK/$1"
  ( cd "$WORK/$1" && exec env RUST_LOG=warn WXGATE_LISTEN="127.0.0.1:$2" WXGATE_ADMIN_TOKEN="$ADMIN" \
      WXGATE_DATABASE_URL="$3" WXGATE_MASTER_KEY="$MASTER_KEY" \
      WXGATE_WECHAT_API_BASE="$SIM" WXGATE_WECOM_API_BASE="$SIM" WXGATE_APPS="$APPS" \
      ${4:+WXGATE_REDIS_URL="$4"} "$OLDPWD/target/release/wxgate" serve >"$WORK/$1/gw.log" 2>&1 ) &
  PIDS+=($!); GW_PIDS+=($!)
  wait_up "http://127.0.0.1:$2/healthz" || { cat "$WORK/$1/gw.log" >&2; exit 1; }
}

# campaign FILE PREFIX: a template broadcast to N openids PREFIX0000000.. with one personal field.
campaign() {
  python3 - "$N" "$2" >"$1" <<'PY'
import json, sys
n, prefix = int(sys.argv[1]), sys.argv[2]
print(json.dumps({"app": "shop", "type": "template", "template_id": "TPL_ORDER",
  "data": {"thing1": "Autumn sale", "amount2": "¥9.90", "time3": "10:00", "character_string4": "X"},
  "recipients": [{"to": "%s%07d" % (prefix, i), "data": {"character_string4": "A%d" % i}} for i in range(n)]}))
PY
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pg_cpu() { ps -o cputimes= -C postgres 2>/dev/null | awk '{s+=$1} END {print s+0}'; }  # every server's, 1 s steps
sim_stats() { curl -fsS "$SIM/_sim/stats/wxdemo_oa"; }

# run NAME GATEWAY_URL FILE PID...: posts FILE to GATEWAY_URL, waits until done, prints one JSON
# object with the run's figures (CPU of the given gateway pids).
run() {
  local name="$1" gw="$2" file="$3"; shift 3
  local pids=("$@") before after cpu0=() cpu1=() t0 t1 t2 id status pg0 pg1 r0 r1
  before="$(sim_stats)"
  for p in "${pids[@]}"; do cpu0+=("$(cpu "$p")"); done
  pg0="$(pg_cpu)"; r0="$(cpu "$REDIS_PID")"
  log "$name: posting a campaign of $N recipients"
  t0="$(date +%s.%N)"
  id="$(curl -fsS -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' --data-binary @"$file" "$gw/v1/campaigns" | json '["id"]')"
  t1="$(date +%s.%N)"
  log "$name: accepted as $id in $(python3 -c "print(round($t1-$t0,2))") s; waiting for delivery"
  while :; do
    status="$(curl -fsS -H "Authorization: Bearer $ADMIN" "$gw/v1/campaigns/$id")"
    echo "$status" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["status"]=="done" else 1)' && break
    sleep 0.1
  done
  t2="$(date +%s.%N)"
  for p in "${pids[@]}"; do cpu1+=("$(cpu "$p")"); done
  pg1="$(pg_cpu)"; r1="$(cpu "$REDIS_PID")"
  after="$(sim_stats)"
  local rss=()
  for p in "${pids[@]}"; do rss+=("$(awk '/VmHWM/ {print $2}' "/proc/$p/status")"); done
  python3 - <<PY
import json
n, ticks = $N, $(getconf CLK_TCK)
status, before, after = json.loads('''$status'''), json.loads('''$before'''), json.loads('''$after''')
cpu = [(b - a) / ticks for a, b in zip([$(IFS=,; echo "${cpu0[*]}")], [$(IFS=,; echo "${cpu1[*]}")])]
print(json.dumps({
  "accept_seconds": round($t1 - $t0, 2), "deliver_seconds": round($t2 - $t1, 2),
  "messages_per_sec": round(n / ($t2 - $t1)), "end_to_end_messages_per_sec": round(n / ($t2 - $t0)),
  "sent": status["counts"]["sent"], "failed": status["counts"]["failed"], "unknown": status["counts"]["unknown"],
  "wxsim_deliveries": after["deliveries"] - before["deliveries"],
  "wxsim_duplicate_deliveries": after["duplicate_deliveries"] - before["duplicate_deliveries"],
  "peak_rss_mb": [round(k / 1024, 1) for k in [$(IFS=,; echo "${rss[*]}")]],
  "cpu_seconds_per_1000": [round(c * 1000 / n, 3) for c in cpu],
  "postgres_cpu_seconds_per_1000": round(($pg1 - $pg0) * 1000 / n, 3),
  "redis_cpu_seconds_per_1000": round(($r1 - $r0) / ticks * 1000 / n, 3)}))
PY
}

EMB_PORT="$(free_port)"; start_gw embedded "$EMB_PORT" "sqlite://$WORK/embedded/wxgate.db"
EMB_PID="${GW_PIDS[0]}"
FLEET=()
for i in 1 2 3; do
  p="$(free_port)"; start_gw "fleet$i" "$p" "$PG_URL" "redis://127.0.0.1:$REDIS_PORT"; FLEET+=("http://127.0.0.1:$p")
done
campaign "$WORK/embedded.json" oEmb
campaign "$WORK/fleet.json" oFlt
EMB_JSON="$(run embedded "http://127.0.0.1:$EMB_PORT" "$WORK/embedded.json" "$EMB_PID")"
FLEET_JSON="$(run fleet "${FLEET[0]}" "$WORK/fleet.json" "${GW_PIDS[1]}" "${GW_PIDS[2]}" "${GW_PIDS[3]}")"
python3 - <<PY
import json
emb, fleet = json.loads('''$EMB_JSON'''), json.loads('''$FLEET_JSON''')
del emb["postgres_cpu_seconds_per_1000"], emb["redis_cpu_seconds_per_1000"]
print(json.dumps({"bench": "push_fleet", "recipients": $N, "wechat_latency_ms": $LATENCY,
  "embedded": emb, "fleet3": fleet,
  "ratio_fleet3_to_embedded": round(fleet["messages_per_sec"] / emb["messages_per_sec"], 2),
  "postgres_autovacuum": "$AUTOVACUUM", "cpus": $(nproc)}))
PY
