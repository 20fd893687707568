#!/usr/bin/env bash
# bench/image-push.sh — pushing ~1 GiB in 4 layers to the CNCF distribution registry:
# `slipway image push` vs `skopeo copy`, side by side in one run, from the same OCI layout.
#
#   bench/image-push.sh [path/to/slipway]      (default: target/release/slipway)
#
# A private distribution registry (htpasswd auth, filesystem storage in a temp dir) is
# started on a free loopback port and stopped at exit. Every run pushes to a fresh
# repository, so nothing is skipped by HEAD or mounted. Wall time and peak RSS come from
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
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
REG=127.0.0.1:$PORT
htpasswd -Bbn bench bench-pw > "$TMP/htpasswd" 2>/dev/null
cat > "$TMP/registry.yml" <<YML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $TMP/registry-data } }
http: { addr: $REG }
auth: { htpasswd: { realm: bench, path: $TMP/htpasswd } }
YML
docker-registry serve "$TMP/registry.yml" >"$TMP/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://$REG/v2/" && break; sleep 0.1; done

export DOCKER_CONFIG=$TMP/docker-config
echo bench-pw | "$SLIPWAY" image login "$REG" -u bench --password-stdin >/dev/null 2>&1

# The image: FROM scratch + 4 COPY layers of LAYER_MIB random bytes each, as an OCI layout.
CTX=$TMP/ctx
mkdir -p "$CTX"
for i in 1 2 3 4; do head -c "${LAYER_MIB}M" /dev/urandom > "$CTX/layer$i"; done
printf 'FROM scratch\nCOPY layer1 /1\nCOPY layer2 /2\nCOPY layer3 /3\nCOPY layer4 /4\n' > "$CTX/Dockerfile"
"$SLIPWAY" image build -q --cache-dir "$TMP/store" --output "oci:$TMP/layout" -t "$REG/bench/src:v1" "$CTX" >/dev/null
TOTAL=$(du -sb "$TMP/layout/blobs" | cut -f1)
sync

declare -a S_T S_M K_T K_M
for n in $(seq "$RUNS"); do
  /usr/bin/time -f '%e %M' -o "$TMP/t" "$SLIPWAY" image push "oci:$TMP/layout:v1" "$REG/bench/slipway-$n:v1" >/dev/null 2>"$TMP/err" \
    || { cat "$TMP/err" >&2; exit 1; }
  read -r t m < "$TMP/t"; S_T+=("$t"); S_M+=("$m")
  /usr/bin/time -f '%e %M' -o "$TMP/t" skopeo copy -q --dest-tls-verify=false --dest-creds bench:bench-pw \
    "oci:$TMP/layout:v1" "docker://$REG/bench/skopeo-$n:v1" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
  read -r t m < "$TMP/t"; K_T+=("$t"); K_M+=("$m")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if(NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
st=$(median "${S_T[@]}"); sm=$(median "${S_M[@]}")
kt=$(median "${K_T[@]}"); km=$(median "${K_M[@]}")
mib=$(echo "$TOTAL/1048576" | bc -l)
echo "payload: $(printf '%.0f' "$mib") MiB in 4 uncompressed layers (OCI layout), registry: distribution $(docker-registry --version 2>/dev/null | awk '{print $3}') htpasswd, plain HTTP on loopback"
echo "runs: $RUNS (alternating), medians"
echo "slipway_push_s_all: ${S_T[*]}"
echo "skopeo_copy_s_all: ${K_T[*]}"
printf 'slipway_push_s_median: %s (%.0f MiB/s), peak RSS %.1f MiB\n' "$st" "$(echo "$mib/$st" | bc -l)" "$(echo "$sm/1024" | bc -l)"
printf 'skopeo_copy_s_median: %s (%.0f MiB/s), peak RSS %.1f MiB\n' "$kt" "$(echo "$mib/$kt" | bc -l)" "$(echo "$km/1024" | bc -l)"
printf 'summary: push %.0f MiB: slipway %.2fs vs skopeo %.2fs -> throughput ratio %.2fx; peak RSS slipway %.1f MiB, skopeo %.1f MiB\n' \
  "$mib" "$st" "$kt" "$(echo "$kt/$st" | bc -l)" "$(echo "$sm/1024" | bc -l)" "$(echo "$km/1024" | bc -l)"
