#!/usr/bin/env bash
# step-overhead.sh — slipway's per-step overhead side by side with its floor and a peer, in
# one run (hyperfine medians; per-step = total / N, marginal = (total(N) - total(1)) / (N-1)):
#   slipway  `slipway run -W steps.yml`: one job of N (200) `run: 'true'` steps, host executor
#   floor    ../shared/bench/step-overhead.sh (EXTRAS=0): bash writing and running N script
#            files with `bash --noprofile --norc -e -o pipefail FILE` (what a `run:` step is)
#   peer     ../shared/bench/wrkflw-steps.sh: wrkflw (Rust local Actions runner),
#            `--runtime emulation`, the same N-step workflow
# Goal (issue 2): slipway per-step <= 1.15x the floor, and not slower than wrkflw.
# Knobs (env): N=200, RUNS=5, SLIPWAY=path (default: cargo build --release -p slipway),
#   WRKFLW=path (default: PATH, ~/.cargo/bin, else `cargo install wrkflw --locked` into
#   WRKFLW_ROOT=/tmp/slipway-bench-wrkflw), DOCKER_N=5 (the floor script's docker anchor).
# Output: `name: value` lines; the last line is a one-line summary.
set -euo pipefail

N=${N:-200}
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
[ -x "$SHARED/step-overhead.sh" ] || { echo "error: $SHARED/step-overhead.sh not found (set SHARED=)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "error: hyperfine is not installed (apt-get install hyperfine)" >&2; exit 1; }
command -v jq >/dev/null || { echo "error: jq is not installed (apt-get install jq)" >&2; exit 1; }

if [ -z "${SLIPWAY:-}" ]; then
  (cd "$ROOT" && cargo build --release -p slipway >&2)
  SLIPWAY=${CARGO_TARGET_DIR:-$ROOT/target}/release/slipway
fi
if [ -z "${WRKFLW:-}" ]; then
  WRKFLW=$(command -v wrkflw || true)
  [ -n "$WRKFLW" ] || { [ -x "$HOME/.cargo/bin/wrkflw" ] && WRKFLW=$HOME/.cargo/bin/wrkflw; } || true
  if [ -z "$WRKFLW" ]; then
    WRKFLW_ROOT=${WRKFLW_ROOT:-/tmp/slipway-bench-wrkflw}
    if [ ! -x "$WRKFLW_ROOT/bin/wrkflw" ]; then
      echo "# installing wrkflw into $WRKFLW_ROOT (cargo install wrkflw --locked)" >&2
      CARGO_HOME=$WRKFLW_ROOT/cargo-home CARGO_TARGET_DIR=$WRKFLW_ROOT/target \
        cargo install wrkflw --locked --root "$WRKFLW_ROOT" >&2
    fi
    WRKFLW=$WRKFLW_ROOT/bin/wrkflw
  fi
fi
export WRKFLW

TMP=$(mktemp -d /tmp/bench-slipway-steps.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

mkwf() { # mkwf <steps> <file>
  { printf 'name: steps%s\non: [push]\njobs:\n  steps:\n    runs-on: ubuntu-latest\n    steps:\n' "$1"
    for _ in $(seq "$1"); do printf "      - run: 'true'\n"; done; } > "$2"
}
mkdir -p "$TMP/ws"
mkwf "$N" "$TMP/ws/steps$N.yml"
mkwf 1 "$TMP/ws/steps1.yml"

# sanity: all N steps really run and succeed
(cd "$TMP/ws" && "$SLIPWAY" run -W "steps$N.yml" --json) > "$TMP/check.jsonl"
ok=$(jq -s '[.[] | select(.type=="step_finished" and .outcome=="success")] | length' "$TMP/check.jsonl")
[ "$ok" = "$N" ] || { echo "error: slipway ran $ok of $N steps successfully" >&2; exit 1; }

# The same-window comparison: slipway, the floor's method (b) and wrkflw in one hyperfine
# invocation, so that load changes on a shared machine hit all three alike; CPU time
# (user+system) per step is reported too, as it is far less sensitive to load than wall time.
cat > "$TMP/floor.sh" <<S
d=$TMP/steps; mkdir -p "\$d"
for i in \$(seq $N); do
  printf '%s\n' true > "\$d/step_\$i.sh"
  bash --noprofile --norc -e -o pipefail "\$d/step_\$i.sh"
done
rm -rf "\$d"
S
mkdir -p "$TMP/home"
(cd "$TMP/ws" && HOME=$TMP/home hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$TMP/slipway.json" \
    -n "n$N" "$SLIPWAY run -W steps$N.yml" -n n1 "$SLIPWAY run -W steps1.yml" \
    -n floor "bash $TMP/floor.sh" -n wrkflw "$WRKFLW run --runtime emulation steps$N.yml") >"$TMP/hyperfine.log" 2>&1 \
  || { echo "error: hyperfine slipway failed" >&2; tail -20 "$TMP/hyperfine.log" >&2; exit 1; }
per() { jq -r ".results[]|select(.command==\"$1\")|.median*1000/$N" "$TMP/slipway.json" | xargs printf '%.3f'; }
cpu() { jq -r ".results[]|select(.command==\"$1\")|(.user+.system)*1000/$N" "$TMP/slipway.json" | xargs printf '%.3f'; }
I_S=$(per "n$N"); I_F=$(per floor); I_W=$(per wrkflw)
C_S=$(cpu "n$N"); C_F=$(cpu floor); C_W=$(cpu wrkflw)
S_N=$(jq -r ".results[]|select(.command==\"n$N\")|.median" "$TMP/slipway.json")
S_1=$(jq -r '.results[]|select(.command=="n1")|.median' "$TMP/slipway.json")
S_PER=$(awk -v t="$S_N" -v n="$N" 'BEGIN{printf "%.3f", t*1000/n}')
S_MARG=$(awk -v t="$S_N" -v o="$S_1" -v n="$N" 'BEGIN{printf "%.3f", (t-o)*1000/(n-1)}')

# floor and peer: the shared scripts, run now, on this machine
EXTRAS=0 N=$N RUNS=$RUNS DOCKER_N=${DOCKER_N:-5} "$SHARED/step-overhead.sh" > "$TMP/floor.txt" 2>"$TMP/floor.err" \
  || { echo "error: $SHARED/step-overhead.sh failed" >&2; tail -20 "$TMP/floor.err" >&2; exit 1; }
FLOOR=$(awk -F': ' '$1=="b_script_file_bash_e_ms_per_step"{print $2}' "$TMP/floor.txt")
MODES=emulation N=$N RUNS=$RUNS "$SHARED/wrkflw-steps.sh" > "$TMP/wrkflw.txt" 2>"$TMP/wrkflw.err" \
  || { echo "error: $SHARED/wrkflw-steps.sh failed" >&2; tail -20 "$TMP/wrkflw.err" >&2; exit 1; }
W_PER=$(awk -F': ' '$1=="emulation_per_step_ms"{print $2}' "$TMP/wrkflw.txt")
W_MARG=$(awk -F': ' '$1=="emulation_marginal_per_step_ms"{print $2}' "$TMP/wrkflw.txt")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "slipway: $SLIPWAY ($("$SLIPWAY" --version))"
echo "wrkflw: $WRKFLW ($("$WRKFLW" --version))"
echo "steps: $N x run: 'true' in one job; runs: $RUNS (+1 warm-up), medians"
echo "slipway_total_s: $(printf '%.3f' "$S_N")"
echo "slipway_one_step_workflow_s: $(printf '%.3f' "$S_1")"
echo "slipway_per_step_ms: $S_PER"
echo "slipway_marginal_per_step_ms: $S_MARG"
echo "floor_script_file_bash_e_ms_per_step: $FLOOR"
echo "wrkflw_emulation_per_step_ms: $W_PER"
echo "wrkflw_emulation_marginal_per_step_ms: $W_MARG"
echo "slipway_per_step_vs_floor: $(ratio "$S_PER" "$FLOOR")x"
echo "slipway_marginal_vs_floor: $(ratio "$S_MARG" "$FLOOR")x"
echo "wrkflw_per_step_vs_floor: $(ratio "$W_PER" "$FLOOR")x"
echo "slipway_vs_wrkflw_per_step: $(ratio "$S_PER" "$W_PER")x"
echo "same_window_ms_per_step (one hyperfine invocation): slipway=$I_S floor=$I_F wrkflw=$I_W; slipway/floor=$(ratio "$I_S" "$I_F")x slipway/wrkflw=$(ratio "$I_S" "$I_W")x"
echo "same_window_cpu_ms_per_step (user+system): slipway=$C_S floor=$C_F wrkflw=$C_W; slipway/floor=$(ratio "$C_S" "$C_F")x slipway/wrkflw=$(ratio "$C_S" "$C_W")x"
echo "load_average: $(cut -d' ' -f1-3 /proc/loadavg) (figures on a loaded machine include run-queue waits; compare ratios)"
echo "summary: step-overhead N=$N ms/step: slipway=$S_PER (marginal $S_MARG) floor=$FLOOR wrkflw=$W_PER (marginal $W_MARG); slipway/floor=$(ratio "$S_PER" "$FLOOR")x slipway/wrkflw=$(ratio "$S_PER" "$W_PER")x; same window: slipway/floor=$(ratio "$I_S" "$I_F")x slipway/wrkflw=$(ratio "$I_S" "$I_W")x, cpu slipway/floor=$(ratio "$C_S" "$C_F")x (goal <=1.15x floor, <=1x wrkflw; median of $RUNS)"
