#!/usr/bin/env bash
# log-throughput.sh — how fast slipway carries a noisy step's output, side by side with the
# floor, in one run. A step prints SIZE (1 GiB) of text lines (`head -c SIZE < <(yes LINE)`;
# not `yes | head`, which fails under the step shell's `-o pipefail` when `yes` gets SIGPIPE)
# while a secret is registered for masking (`--secret`, and `echo "$TOKEN"` first to prove
# masking is on); slipway's output (every line prefixed `[job] `, masked) goes to a file.
#   slipway  `slipway run -W log.yml --secret TOKEN=... > file`, hyperfine median -> MB/s of
#            step output; peak RSS from `/usr/bin/time -v` on one extra run
#   floor    ../shared/bench/log-throughput.sh (EXTRAS=0): the same generator `> file` and
#            `| cat > file`
# Goal (issue 2): >= 50% of the floor's MB/s (file), peak RSS < 64 MiB.
# Knobs (env): SIZE=1G, RUNS=3, SLIPWAY=path (default: cargo build --release -p slipway),
#   JSON=1 also measures `--json` output.
# Output: `name: value` lines; the last line is a one-line summary.
set -euo pipefail

SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
JSON=${JSON:-0}
LINE='2024-01-01T00:00:00Z step[build] compiling module foo::bar::baz (lib) ... ok'
SECRET='s3cr3t-bench-token-0123456789'
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
[ -x "$SHARED/log-throughput.sh" ] || { echo "error: $SHARED/log-throughput.sh not found (set SHARED=)" >&2; exit 1; }
for c in hyperfine jq; do command -v $c >/dev/null || { echo "error: $c is not installed (apt-get install $c)" >&2; exit 1; }; done
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is not installed (apt-get install time)" >&2; exit 1; }
if [ -z "${SLIPWAY:-}" ]; then
  (cd "$ROOT" && cargo build --release -p slipway >&2)
  SLIPWAY=${CARGO_TARGET_DIR:-$ROOT/target}/release/slipway
fi

TMP=$(mktemp -d /tmp/bench-slipway-log.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
BYTES=$(head -c "$SIZE" /dev/zero | wc -c)
OUT=$TMP/out.log
mkdir -p "$TMP/ws"
cat > "$TMP/ws/log.yml" <<YML
on: push
jobs:
  log:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo "token: \$TOKEN"
          head -c $SIZE < <(yes '$LINE')
        env:
          TOKEN: \${{ secrets.TOKEN }}
YML
RUN="$SLIPWAY run -W log.yml --secret TOKEN=$SECRET"

# sanity: every line arrives, prefixed, and the secret is masked
(cd "$TMP/ws" && $RUN > "$OUT")
grep -q "^\[log\] token: \*\*\*$" "$OUT" || { echo "error: the secret was not masked" >&2; head -5 "$OUT" >&2; exit 1; }
! grep -q "$SECRET" "$OUT" || { echo "error: the secret leaked" >&2; exit 1; }
want=$((BYTES / (${#LINE} + 1)))
got=$(grep -cxF "[log] $LINE" "$OUT" || true)
[ "$got" -ge "$want" ] || { echo "error: $got of $want lines arrived" >&2; exit 1; }
OUT_BYTES=$(stat -c %s "$OUT")
rm -f "$OUT"

cmds=(-n slipway "$RUN > $OUT")
[ "$JSON" = 1 ] && cmds+=(-n slipway_json "$RUN --json > $OUT")
(cd "$TMP/ws" && hyperfine --style none --shell bash --warmup 1 --runs "$RUNS" --export-json "$TMP/slipway.json" \
    --prepare "rm -f $OUT; sync" "${cmds[@]}") >"$TMP/hyperfine.log" 2>&1 \
  || { echo "error: hyperfine failed" >&2; tail -20 "$TMP/hyperfine.log" >&2; exit 1; }
med() { jq -r ".results[]|select(.command==\"$1\")|.median" "$TMP/slipway.json"; }
S_T=$(med slipway)
S_MBPS=$(awk -v b="$BYTES" -v t="$S_T" 'BEGIN{printf "%.0f", b/1e6/t}')
(cd "$TMP/ws" && /usr/bin/time -v $RUN > "$OUT") 2> "$TMP/time.txt"
RSS_KB=$(awk -F': ' '/Maximum resident set size/{print $2}' "$TMP/time.txt")
RSS_MIB=$(awk -v k="$RSS_KB" 'BEGIN{printf "%.1f", k/1024}')
rm -f "$OUT"
if [ "$JSON" = 1 ]; then
  J_T=$(med slipway_json)
  J_MBPS=$(awk -v b="$BYTES" -v t="$J_T" 'BEGIN{printf "%.0f", b/1e6/t}')
fi

EXTRAS=0 SIZE=$SIZE RUNS=$RUNS "$SHARED/log-throughput.sh" > "$TMP/floor.txt" 2>"$TMP/floor.err" \
  || { echo "error: $SHARED/log-throughput.sh failed" >&2; tail -20 "$TMP/floor.err" >&2; exit 1; }
F_FILE=$(awk -F': ' '$1=="file_MBps"{print $2}' "$TMP/floor.txt")
F_PIPE=$(awk -F': ' '$1=="pipe_cat_file_MBps"{print $2}' "$TMP/floor.txt")
PCT=$(awk -v a="$S_MBPS" -v b="$F_FILE" 'BEGIN{printf "%.0f", a*100/b}')

echo "slipway: $SLIPWAY ($("$SLIPWAY" --version))"
echo "bytes: $BYTES of step output ($SIZE of ${#LINE}+1-byte lines); slipway wrote $OUT_BYTES bytes (with [log] prefixes)"
echo "runs: $RUNS (+1 warm-up), medians; MB = 10^6 bytes of step output"
echo "slipway_s: $(printf '%.3f' "$S_T")"
echo "slipway_MBps: $S_MBPS"
[ "$JSON" = 1 ] && echo "slipway_json_MBps: $J_MBPS"
echo "slipway_peak_rss_MiB: $RSS_MIB"
echo "floor_file_MBps: $F_FILE"
echo "floor_pipe_cat_file_MBps: $F_PIPE"
echo "slipway_vs_floor_file: ${PCT}%"
echo "load_average: $(cut -d' ' -f1-3 /proc/loadavg) (figures on a loaded machine include run-queue waits; compare ratios)"
echo "summary: log-throughput $SIZE: slipway=${S_MBPS} MB/s (${PCT}% of floor file=${F_FILE} MB/s; pipe|cat=${F_PIPE} MB/s), peak RSS ${RSS_MIB} MiB (goal >= 50%, < 64 MiB; median of $RUNS)"
