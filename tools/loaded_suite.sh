#!/usr/bin/env bash
# Runs the whole test suite N times in a row (default 1) with one CPU hog per core, the way issue 23 asks a
# suite to be proven green "on any machine": a test that depends on speed fails here first.
#   tools/loaded_suite.sh [RUNS] [-- deno test args…]
# Prints one line per run (exit code, the suite's own summary line, wall time) and keeps each run's full
# output in $WEFT_LOADED_LOG_DIR (default: a temp dir, named at the end). The hogs are stopped on exit.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
runs="${1:-1}"
shift || true
[ "${1:-}" = -- ] && shift
deno="${DENO:-$PWD/.tools/bin/deno}"
logs="${WEFT_LOADED_LOG_DIR:-$(mktemp -d /tmp/weft-loaded-XXXXXX)}"
mkdir -p "$logs"

hogs=()
stop_hogs() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_hogs EXIT
for _ in $(seq "$(nproc)"); do
  (while :; do :; done) &
  hogs+=($!)
done
echo "loaded: ${#hogs[@]} CPU hogs (one per core), pids ${hogs[*]}" >&2

failed=0
for i in $(seq "$runs"); do
  start=$(date +%s)
  set +e
  "$deno" run -A tests/run_suite.ts "$@" >"$logs/run-$i.log" 2>&1
  code=$?
  set -e
  secs=$(($(date +%s) - start))
  summary=$(grep -a '^tests: ' "$logs/run-$i.log" | tail -1)
  echo "run $i: exit $code, ${summary:-no summary}, ${secs}s"
  [ "$code" = 0 ] || failed=$((failed + 1))
done
echo "$runs run(s), $failed failed; logs in $logs"
[ "$failed" = 0 ]
