#!/usr/bin/env bash
# bench/image-build.sh — slipway's daemonless image build, side by side with BuildKit,
# the classic docker builder, buildah and podman, in one run.
#
#   bench/image-build.sh [path/to/slipway]      (default: target/release/slipway)
#
# 1. No-cache build of a 100 MiB COPY-only image: the shared baseline script
#    (../shared/bench/image-build.sh) times every tool the same way (hyperfine, median of
#    RUNS after a warm-up, one fresh random byte appended to the binary before each run);
#    slipway joins through its SLIPWAY_BUILD_CMD hook (`--no-cache`, its own store).
# 2. Unchanged rebuild with the layer cache: slipway vs `buildah build --layers` (both
#    daemonless; hyperfine medians).
# 3. Reproducibility: two clean slipway builds (separate stores, separate context copies)
#    must print the same digest.
# Knobs: RUNS (default 5), APP_MIB (default 100), CACHED_RUNS (default 20).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
SLIPWAY=${1:-$root/target/release/slipway}
SLIPWAY=$(cd "$(dirname "$SLIPWAY")" && pwd)/$(basename "$SLIPWAY")
SHARED=${SHARED_BENCH:-$root/../shared/bench/image-build.sh}
[ -x "$SLIPWAY" ] || { echo "error: $SLIPWAY not found; run: cargo build --release -p slipway" >&2; exit 1; }
[ -f "$SHARED" ] || { echo "error: the shared baseline script $SHARED is missing" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "error: hyperfine is not installed (apt-get install hyperfine)" >&2; exit 1; }
command -v buildah >/dev/null || { echo "error: buildah is not installed (apt-get install buildah)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/slipway-bench-build.XXXXXX)
TAG=slipway-bench-$$
cleanup() { buildah rmi -f "localhost/$TAG:cached" >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT
RUNS=${RUNS:-5}
APP_MIB=${APP_MIB:-100}
CACHED_RUNS=${CACHED_RUNS:-20}

echo "# 1. no-cache build, ${APP_MIB} MiB COPY-only, side by side (shared script)"
SLIPWAY_BUILD_CMD="$SLIPWAY image build -q --no-cache --cache-dir $TMP/store -t {tag} -f {dockerfile} {context}" \
  RUNS=$RUNS APP_MIB=$APP_MIB bash "$SHARED" | tee "$TMP/shared.out"

echo
echo "# 2. unchanged rebuild with cache"
CTX=$TMP/ctx
mkdir -p "$CTX"
head -c "${APP_MIB}M" /dev/urandom > "$CTX/app"
chmod +x "$CTX/app"
printf 'FROM scratch\nCOPY app /app\nENTRYPOINT ["/app"]\n' > "$CTX/Dockerfile"
S_CMD="$SLIPWAY image build -q --cache-dir $TMP/cached-store -t localhost/$TAG:cached $CTX"
B_CMD="buildah build -q --layers -t localhost/$TAG:cached -f $CTX/Dockerfile $CTX"
hyperfine --style none --warmup 2 --runs "$CACHED_RUNS" --export-json "$TMP/cached.json" \
  -n slipway_cached "$S_CMD" -n buildah_layers_cached "$B_CMD" >/dev/null
s_med=$(jq -r '.results[0].median' "$TMP/cached.json")
b_med=$(jq -r '.results[1].median' "$TMP/cached.json")
printf 'slipway_cached_rebuild_ms_median: %.1f\n' "$(echo "$s_med*1000" | bc -l)"
printf 'buildah_layers_cached_rebuild_ms_median: %.1f\n' "$(echo "$b_med*1000" | bc -l)"

echo
echo "# 3. reproducibility: two clean builds, separate stores and context directories"
cp -a "$CTX" "$TMP/ctx-copy"
d1=$("$SLIPWAY" image build -q --no-cache --cache-dir "$TMP/r1" "$CTX")
d2=$("$SLIPWAY" image build -q --no-cache --cache-dir "$TMP/r2" "$TMP/ctx-copy")
echo "slipway_repro_digest_identical: $([ "$d1" = "$d2" ] && echo yes || echo no) ($d1 vs $d2)"

echo
sl=$(awk -F': ' '/^slipway_build_s_median/{print $2}' "$TMP/shared.out")
bk=$(awk -F': ' '/^docker_buildkit_build_s_median/{print $2}' "$TMP/shared.out")
ba=$(awk -F': ' '/^buildah_build_s_median/{print $2}' "$TMP/shared.out")
peers=$(awk -F': ' '/_build_s_median/ && !/^slipway/{print $2}' "$TMP/shared.out")
fastest=$(printf '%s\n' $peers | sort -g | head -1)
printf 'summary: no-cache %s MiB: slipway=%ss buildkit=%ss buildah=%ss -> %.1fx faster than the fastest peer (%ss); cached rebuild: slipway=%.1fms buildah=%.1fms; repro=%s\n' \
  "$APP_MIB" "$sl" "$bk" "$ba" "$(echo "$fastest/$sl" | bc -l)" "$fastest" "$(echo "$s_med*1000" | bc -l)" "$(echo "$b_med*1000" | bc -l)" "$([ "$d1" = "$d2" ] && echo identical || echo DIFFERENT)"
