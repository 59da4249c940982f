# Shared by the hack/build-*.sh scripts: numbered, timed progress lines, and a heartbeat
# while a long command runs (go build prints nothing for minutes, so a cold build would
# otherwise look stuck). The caller sets TOTAL (number of steps) before the first `begin`.
START=$(date +%s)
step=0
say() { printf '[%2d/%d %4ds] %s\n' "$step" "$TOTAL" "$(( $(date +%s) - START ))" "$*"; }
begin() { step=$((step + 1)); say "$*"; }

with_heartbeat() {
  local label=$1; shift
  "$@" &
  local pid=$! t0 now
  t0=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null || break
    now=$(date +%s)
    say "  … $label still building ($(( now - t0 ))s so far)"
  done
  wait "$pid"
}
