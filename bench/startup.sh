#!/usr/bin/env bash
# startup.sh — the fixed cost of `slipway run`: a 1-job, 1-step workflow end to end, side by
# side with the step itself (`bash --noprofile --norc -e -o pipefail step.sh`, what the step
# runs), in one hyperfine invocation. The workspace is a git repository (slipway reads the
# sha, ref and remote), like a real checkout. Goal (issue 2): < 50 ms above the step.
# Knobs (env): RUNS=30, SLIPWAY=path (default: cargo build --release -p slipway).
# Output: `name: value` lines; the last line is a one-line summary.
set -euo pipefail

RUNS=${RUNS:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v hyperfine >/dev/null || { echo "error: hyperfine is not installed (apt-get install hyperfine)" >&2; exit 1; }
command -v jq >/dev/null || { echo "error: jq is not installed (apt-get install jq)" >&2; exit 1; }
if [ -z "${SLIPWAY:-}" ]; then
  (cd "$ROOT" && cargo build --release -p slipway >&2)
  SLIPWAY=${CARGO_TARGET_DIR:-$ROOT/target}/release/slipway
fi

TMP=$(mktemp -d /tmp/bench-slipway-startup.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

WS=$TMP/ws
mkdir -p "$WS/.slipway/workflows"
cat > "$WS/.slipway/workflows/one.yml" <<'YML'
on: push
jobs:
  one:
    runs-on: ubuntu-latest
    steps:
      - run: echo hello
YML
printf 'echo hello\n' > "$TMP/step.sh"
git -C "$WS" init -q
git -C "$WS" remote add origin https://example.invalid/team/app.git
git -C "$WS" add -A
git -C "$WS" -c user.name=bench -c user.email=bench@example.invalid commit -q -m bench

(cd "$WS" && "$SLIPWAY" run > "$TMP/check.log" 2>&1) || { echo "error: slipway run failed" >&2; cat "$TMP/check.log" >&2; exit 1; }
grep -q '^\[one\] hello$' "$TMP/check.log" || { echo "error: the step did not run" >&2; cat "$TMP/check.log" >&2; exit 1; }

(cd "$WS" && hyperfine --style none -N --warmup 3 --runs "$RUNS" --export-json "$TMP/startup.json" \
    -n step "bash --noprofile --norc -e -o pipefail $TMP/step.sh" \
    -n slipway_run "$SLIPWAY run" \
    -n slipway_version "$SLIPWAY --version") >"$TMP/hyperfine.log" 2>&1 \
  || { echo "error: hyperfine failed" >&2; tail -20 "$TMP/hyperfine.log" >&2; exit 1; }
ms() { jq -r ".results[]|select(.command==\"$1\")|.median*1000" "$TMP/startup.json"; }
cpu() { jq -r ".results[]|select(.command==\"$1\")|(.user+.system)*1000" "$TMP/startup.json"; }
STEP=$(ms step); RUN=$(ms slipway_run); VER=$(ms slipway_version)
RUN_CPU=$(cpu slipway_run); STEP_CPU=$(cpu step)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
OVER=$(awk -v a="$RUN" -v b="$STEP" 'BEGIN{printf "%.1f", a-b}')
echo "slipway: $SLIPWAY ($("$SLIPWAY" --version))"
echo "runs: $RUNS (+3 warm-up), medians, no intermediate shell (hyperfine -N)"
echo "step_alone_ms: $(printf '%.1f' "$STEP")"
echo "slipway_run_ms: $(printf '%.1f' "$RUN")"
echo "slipway_version_ms: $(printf '%.1f' "$VER")"
echo "slipway_run_above_step_ms: $OVER"
echo "cpu_ms (user+system, mean): step=$(printf '%.1f' "$STEP_CPU") slipway_run=$(printf '%.1f' "$RUN_CPU")"
echo "load_average: $LOAD (wall times on a loaded machine include run-queue waits)"
echo "summary: startup: slipway run of a 1-job 1-step workflow ${RUN%.*} ms vs the step alone $(printf '%.1f' "$STEP") ms: +$OVER ms (goal < 50 ms; median of $RUNS)"
