# Sourced by the bench scripts (after `log` is defined): free loopback ports, a temp dir, the
# processes to stop on exit, and small helpers. Not a benchmark itself.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK="$(mktemp -d)"; ADMIN="bench-admin-$RANDOM$RANDOM"
# Every process started; each is killed and waited for on exit, then WORK is removed.
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
# Wait up to 10 s for URL to answer; under `set -e` a failure ends the script.
wait_up() { for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; log "$1 did not come up"; return 1; }
# Read a field of the JSON on stdin, e.g. `json '["id"]'`.
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
# Start the release wxsim on a free port: sets SIM_PORT and SIM (its base URL).
start_sim() {
  SIM_PORT="$(free_port)"; SIM="http://127.0.0.1:$SIM_PORT"
  target/release/wxsim --listen "127.0.0.1:$SIM_PORT" >"$WORK/sim.log" 2>&1 & PIDS+=($!)
  wait_up "$SIM/_sim/stats"
}
