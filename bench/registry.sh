#!/usr/bin/env bash
# bench/registry.sh — slipway's registry against the CNCF distribution registry, side by side
# in one run, same client (skopeo), same disk.
#
#  1. push/pull of ~1 GiB (4 uncompressed layers), registry peak RSS and CPU: the shared
#     ../shared/bench/registry-throughput.sh with RUNS=1, once for distribution (its default)
#     and once for slipway (REGISTRY_START_CMD hook), alternating for ROUNDS rounds so that
#     both see the same machine load; medians over the rounds, and the median of the
#     per-round ratios (each round's two runs are seconds apart);
#  2. 1,000 manifest HEADs from 16 concurrent keep-alive clients: p50/p99 latency.
#
# Knobs (env): ROUNDS=5, HEAD_CLIENTS=16, HEAD_TOTAL=1000, SLIPWAY_BIN (default
#   target/release/slipway, built if missing), SHARED_BENCH (default ../shared/bench next
#   to the checkout), plus the shared script's knobs (LAYERS, LAYER_MIB, HEAD_RUNS, ...).
# Output: every run's `name: value` lines, then a side-by-side table.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
SLIPWAY=${SLIPWAY_BIN:-$ROOT/target/release/slipway}
ROUNDS=${ROUNDS:-5}
export HEAD_RUNS=${HEAD_RUNS:-1}
HEAD_CLIENTS=${HEAD_CLIENTS:-16}
HEAD_TOTAL=${HEAD_TOTAL:-1000}

[ -x "$SHARED/registry-throughput.sh" ] || { echo "error: $SHARED/registry-throughput.sh not found (set SHARED_BENCH)" >&2; exit 1; }
if [ ! -x "$SLIPWAY" ]; then
  echo "# building $SLIPWAY (cargo build --release -p slipway)" >&2
  (cd "$ROOT" && cargo build --release -p slipway >&2)
fi
for c in skopeo curl docker-registry jq ss; do
  command -v "$c" >/dev/null || { echo "error: $c is missing (apt-get install skopeo curl docker-registry jq iproute2)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/bench-slipway-registry.XXXXXX)
REG_PID=""
cleanup() {
  [ -n "$REG_PID" ] && { kill -TERM "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }
  rm -rf "$TMP"
}
trap cleanup EXIT

val() { awk -F': ' -v k="$2" '$1==k{print $2}' "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "nan"; exit} if(NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }

# ------------------------------------------------------------ 1. throughput, RSS
# RUNS=1 per call: every call builds a fresh 1 GiB image, starts a fresh registry on empty
# storage, pushes, pulls and checks the pulled digest.
export RUNS=1
for round in $(seq 1 "$ROUNDS"); do
  echo "# round $round/$ROUNDS: distribution" >&2
  env -u REGISTRY_START_CMD "$SHARED/registry-throughput.sh" | tee "$TMP/distribution-$round.txt"
  echo "# round $round/$ROUNDS: slipway" >&2
  REGISTRY_START_CMD="$SLIPWAY registry --listen 127.0.0.1:{port} --storage {dir}" \
    "$SHARED/registry-throughput.sh" | tee "$TMP/slipway-$round.txt"
done
declare -A push pull hwm cpu seq
for name in distribution slipway; do
  p=(); l=(); h=(); c=(); s=()
  for round in $(seq 1 "$ROUNDS"); do
    f=$TMP/$name-$round.txt
    p+=("$(val "$f" push_MBps_median)"); l+=("$(val "$f" pull_MBps_median)")
    h+=("$(val "$f" registry_vmhwm_kb_max)"); c+=("$(val "$f" registry_cpu_s_per_push_pull_median)")
    s+=("$(val "$f" head_one_curl_keepalive_ms_per_req)")
  done
  push[$name]=$(median "${p[@]}"); pull[$name]=$(median "${l[@]}")
  hwm[$name]=$(( $(maxof "${h[@]}") / 1024 )); cpu[$name]=$(median "${c[@]}"); seq[$name]=$(median "${s[@]}")
  echo "${name}_push_MBps_all: ${p[*]}"
  echo "${name}_pull_MBps_all: ${l[*]}"
done
push_pair=(); pull_pair=()
for round in $(seq 1 "$ROUNDS"); do
  push_pair+=("$(ratio "$(val "$TMP/slipway-$round.txt" push_MBps_median)" "$(val "$TMP/distribution-$round.txt" push_MBps_median)")")
  pull_pair+=("$(ratio "$(val "$TMP/slipway-$round.txt" pull_MBps_median)" "$(val "$TMP/distribution-$round.txt" pull_MBps_median)")")
done
echo "push_ratio_per_round: ${push_pair[*]}"
echo "pull_ratio_per_round: ${pull_pair[*]}"

# ------------------------------------------------------------ 2. concurrent HEADs
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# A small image to HEAD.
IMG=$TMP/img; mkdir -p "$IMG/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' > "$IMG/oci-layout"
head -c 1M /dev/urandom > "$TMP/layer"; ld=$(sha256sum "$TMP/layer" | cut -d' ' -f1); mv "$TMP/layer" "$IMG/blobs/sha256/$ld"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$ld" > "$TMP/c"
cd_=$(sha256sum "$TMP/c" | cut -d' ' -f1); cs=$(stat -c %s "$TMP/c"); mv "$TMP/c" "$IMG/blobs/sha256/$cd_"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":1048576}]}' "$cd_" "$cs" "$ld" > "$TMP/m"
md=$(sha256sum "$TMP/m" | cut -d' ' -f1); ms=$(stat -c %s "$TMP/m"); mv "$TMP/m" "$IMG/blobs/sha256/$md"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"small"}}]}' "$md" "$ms" > "$IMG/index.json"

head_bench() { # head_bench <name> <start command with {port} {dir} {config}>
  local name=$1 template=$2 port dir cmd
  port=$(free_port); dir=$TMP/heads-$name; mkdir -p "$dir"
  cat > "$TMP/config-$name.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir
http:
  addr: 127.0.0.1:$port
YML
  cmd=${template//\{port\}/$port}; cmd=${cmd//\{dir\}/$dir}; cmd=${cmd//\{config\}/$TMP/config-$name.yml}
  bash -c "exec $cmd" >"$TMP/$name-heads.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.05; done
  skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$IMG:small" "docker://127.0.0.1:$port/bench/small:latest" >/dev/null
  local url="http://127.0.0.1:$port/v2/bench/small/manifests/latest" per=$(( HEAD_TOTAL / HEAD_CLIENTS )) extra=$(( HEAD_TOTAL % HEAD_CLIENTS )) i n
  : > "$TMP/$name.latencies"
  for i in $(seq 1 "$HEAD_CLIENTS"); do
    n=$per; [ "$i" -le "$extra" ] && n=$((n + 1))
    { echo 'header = "Accept: application/vnd.oci.image.manifest.v1+json"'
      for _ in $(seq "$n"); do echo "url = \"$url\""; echo 'output = "/dev/null"'; echo 'write-out = "%{time_total}\n"'; done; } > "$TMP/$name-client$i.cfg"
  done
  # warm-up, then the measured run: 16 keep-alive clients at once
  curl -s -I -K "$TMP/$name-client1.cfg" >/dev/null
  local pids=()
  for i in $(seq 1 "$HEAD_CLIENTS"); do curl -s -I -f -K "$TMP/$name-client$i.cfg" > "$TMP/$name.client$i.out" & pids+=($!); done
  wait "${pids[@]}" || { echo "error: a HEAD client failed against $name" >&2; exit 1; }
  cat "$TMP/$name".client*.out >> "$TMP/$name.latencies"
  kill -TERM "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; REG_PID=""
  local count p50 p99
  count=$(wc -l < "$TMP/$name.latencies")
  [ "$count" -eq "$HEAD_TOTAL" ] || { echo "error: $name answered $count of $HEAD_TOTAL HEADs" >&2; exit 1; }
  p50=$(sort -g "$TMP/$name.latencies" | awk -v n="$count" 'NR==int(n*0.50+0.5){printf "%.3f", $1*1000}')
  p99=$(sort -g "$TMP/$name.latencies" | awk -v n="$count" 'NR==int(n*0.99+0.5){printf "%.3f", $1*1000}')
  echo "${name}_head_${HEAD_TOTAL}x${HEAD_CLIENTS}_p50_ms: $p50"
  echo "${name}_head_${HEAD_TOTAL}x${HEAD_CLIENTS}_p99_ms: $p99"
}
echo "# concurrent HEADs: $HEAD_TOTAL from $HEAD_CLIENTS clients" >&2
head_bench distribution 'docker-registry serve {config}' | tee "$TMP/heads.txt"
head_bench slipway "$SLIPWAY registry --listen 127.0.0.1:{port} --storage {dir}" | tee -a "$TMP/heads.txt"

# ------------------------------------------------------------ side by side
H=$TMP/heads.txt
dp99=$(val "$H" "distribution_head_${HEAD_TOTAL}x${HEAD_CLIENTS}_p99_ms"); sp99=$(val "$H" "slipway_head_${HEAD_TOTAL}x${HEAD_CLIENTS}_p99_ms")
echo
printf '%-46s %14s %14s %10s\n' metric distribution slipway ratio
printf '%-46s %14s %14s %10s\n' "push 1 GiB (MB/s, median of $ROUNDS)" "${push[distribution]}" "${push[slipway]}" "$(ratio "${push[slipway]}" "${push[distribution]}")x"
printf '%-46s %14s %14s %10s\n' "  median of per-round push ratios" "" "" "$(median "${push_pair[@]}")x"
printf '%-46s %14s %14s %10s\n' "pull 1 GiB (MB/s, median of $ROUNDS)" "${pull[distribution]}" "${pull[slipway]}" "$(ratio "${pull[slipway]}" "${pull[distribution]}")x"
printf '%-46s %14s %14s %10s\n' "  median of per-round pull ratios" "" "" "$(median "${pull_pair[@]}")x"
printf '%-46s %14s %14s %10s\n' "registry peak RSS (MiB, max)" "${hwm[distribution]}" "${hwm[slipway]}" "$(ratio "${hwm[slipway]}" "${hwm[distribution]}")x"
printf '%-46s %14s %14s %10s\n' "registry CPU s per push+pull (median)" "${cpu[distribution]}" "${cpu[slipway]}" "$(ratio "${cpu[slipway]}" "${cpu[distribution]}")x"
printf '%-46s %14s %14s %10s\n' "HEAD p99, $HEAD_TOTAL from $HEAD_CLIENTS clients (ms)" "$dp99" "$sp99" "$(ratio "$sp99" "$dp99")x"
printf '%-46s %14s %14s %10s\n' "HEAD sequential keep-alive (ms/req, median)" "${seq[distribution]}" "${seq[slipway]}" "$(ratio "${seq[slipway]}" "${seq[distribution]}")x"
