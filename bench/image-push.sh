#!/usr/bin/env bash
# bench/image-push.sh — pushing ~1 GiB in 4 layers to the CNCF distribution registry:
# `slipway image push` vs `skopeo copy`, side by side in one run, from the same OCI layout.
#
#   bench/image-push.sh [path/to/slipway]      (default: target/release/slipway)
#
# Each push goes to a fresh private distribution registry (htpasswd auth, empty filesystem
# storage, a free loopback port), so nothing is skipped by HEAD or mounted. The layers are
# deterministic gzip, so both tools push the same bytes. Wall time and peak RSS come from
# /usr/bin/time; medians of RUNS runs (alternating tools). Knobs: RUNS (default 5),
# LAYER_MIB (default 256, 4 layers).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
SLIPWAY=${1:-$root/target/release/slipway}
SLIPWAY=$(cd "$(dirname "$SLIPWAY")" && pwd)/$(basename "$SLIPWAY")
RUNS=${RUNS:-5}
LAYER_MIB=${LAYER_MIB:-256}
for c in skopeo docker-registry htpasswd jq bc python3; do
  command -v "$c" >/dev/null || { echo "error: $c is not installed (scripts/services install)" >&2; exit 1; }
done
[ -x "$SLIPWAY" ] || { echo "error: $SLIPWAY not found; run: cargo build --release -p slipway" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/slipway-bench-push.XXXXXX)
REG_PID=""
stop_registry() { if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; REG_PID=""; fi; }
cleanup() { stop_registry; rm -rf "$TMP"; }
trap cleanup EXIT
htpasswd -Bbn bench bench-pw > "$TMP/htpasswd" 2>/dev/null

# A fresh registry (new port, empty storage) for every push: no tool can skip or mount a
# blob from an earlier run (skopeo keeps a blob-info cache of where it pushed blobs before
# and would mount from there).
start_registry() { # -> REG, REG_PID
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  REG=127.0.0.1:$port
  rm -rf "$TMP/registry-data"
  cat > "$TMP/registry.yml" <<YML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $TMP/registry-data } }
http: { addr: $REG }
auth: { htpasswd: { realm: bench, path: $TMP/htpasswd } }
YML
  docker-registry serve "$TMP/registry.yml" >>"$TMP/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://$REG/v2/" && return 0; sleep 0.1; done
  echo "error: the registry did not start" >&2; tail -5 "$TMP/registry.log" >&2; exit 1
}

# The image: FROM scratch + 4 COPY layers of LAYER_MIB random bytes each, gzip-compressed
# (deterministic gzip), as an OCI layout. Compressed layers make both tools push exactly the
# same bytes: skopeo gzips uncompressed layers on the way to a registry, slipway does not.
export DOCKER_CONFIG=$TMP/docker-config
CTX=$TMP/ctx
mkdir -p "$CTX"
for i in 1 2 3 4; do head -c "${LAYER_MIB}M" /dev/urandom > "$CTX/layer$i"; done
printf 'FROM scratch\nCOPY layer1 /1\nCOPY layer2 /2\nCOPY layer3 /3\nCOPY layer4 /4\n' > "$CTX/Dockerfile"
"$SLIPWAY" image build -q --compression gzip --cache-dir "$TMP/store" --output "oci:$TMP/layout" -t "bench.invalid/bench/src:v1" "$CTX" >/dev/null
rm -rf "$TMP/store" "$CTX"
TOTAL=$(du -sb "$TMP/layout/blobs" | cut -f1)
sync

declare -a S_T S_M K_T K_M
for n in $(seq "$RUNS"); do
  start_registry
  echo bench-pw | "$SLIPWAY" image login "$REG" -u bench --password-stdin >/dev/null 2>&1
  /usr/bin/time -f '%e %M' -o "$TMP/t" "$SLIPWAY" image push "oci:$TMP/layout:v1" "$REG/bench/slipway:v1" >/dev/null 2>"$TMP/err" \
    || { cat "$TMP/err" >&2; exit 1; }
  read -r t m < "$TMP/t"; S_T+=("$t"); S_M+=("$m")
  stop_registry
  start_registry
  /usr/bin/time -f '%e %M' -o "$TMP/t" skopeo copy -q --dest-tls-verify=false --dest-creds bench:bench-pw \
    "oci:$TMP/layout:v1" "docker://$REG/bench/skopeo:v1" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
  read -r t m < "$TMP/t"; K_T+=("$t"); K_M+=("$m")
  stop_registry
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if(NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
st=$(median "${S_T[@]}"); sm=$(median "${S_M[@]}")
kt=$(median "${K_T[@]}"); km=$(median "${K_M[@]}")
mib=$(echo "$TOTAL/1048576" | bc -l)
echo "payload: $(printf '%.0f' "$mib") MiB in 4 gzip layers of random data (OCI layout), registry: distribution $(docker-registry --version 2>/dev/null | awk '{print $3}') htpasswd, plain HTTP on loopback"
echo "runs: $RUNS (alternating), medians"
echo "slipway_push_s_all: ${S_T[*]}"
echo "skopeo_copy_s_all: ${K_T[*]}"
printf 'slipway_push_s_median: %s (%.0f MiB/s), peak RSS %.1f MiB\n' "$st" "$(echo "$mib/$st" | bc -l)" "$(echo "$sm/1024" | bc -l)"
printf 'skopeo_copy_s_median: %s (%.0f MiB/s), peak RSS %.1f MiB\n' "$kt" "$(echo "$mib/$kt" | bc -l)" "$(echo "$km/1024" | bc -l)"
printf 'summary: push %.0f MiB: slipway %.2fs vs skopeo %.2fs -> throughput ratio %.2fx; peak RSS slipway %.1f MiB, skopeo %.1f MiB\n' \
  "$mib" "$st" "$kt" "$(echo "$kt/$st" | bc -l)" "$(echo "$sm/1024" | bc -l)" "$(echo "$km/1024" | bc -l)"
