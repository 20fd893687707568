#!/usr/bin/env bash
# bench/gitops.sh — the GitOps agent: push-to-applied latency and a no-op reconcile.
#
#  1. push → applied and healthy, with the webhook: an app on the `local` target (one busybox
#     httpd service, HTTP health check). Each iteration commits new content, and the clock
#     starts right before `git push` to a real `git daemon`; then the push webhook is POSTed
#     to the agent, and the clock stops when the agent reports the new revision Synced and
#     Healthy and the service answers with the new content. ITER iterations; p50/p90.
#     The floor printed beside it: `git push` of a commit plus a `git fetch` of it into a
#     bare mirror — what any pull agent pays before it can apply anything.
#  2. a no-op reconcile of an app with N services (default 500, local target: N supervised
#     `sleep` processes): `POST /api/apps/big/sync` when nothing changed (fetch, render the
#     N-service app file, observe N services, diff), median of REPS; then the agent's RSS.
#     Floor: the `git fetch` of an unchanged branch alone.
#
# The peer: Argo CD polls every 3 minutes by default (`timeout.reconciliation: 180s`), so
# without a webhook its push-to-sync wait is uniform in 0–180 s (p50 ≈ 90 s). Argo CD needs a
# Kubernetes cluster and cannot run on this machine, so that is the analytic figure from its
# default configuration, not a measurement.
#
# Knobs (env): ITER=20, N=500, REPS=20, SLIPWAY_BIN (default target/release/slipway, built
# if missing). Output: `name: value` lines, then `summary:`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY=${SLIPWAY_BIN:-$ROOT/target/release/slipway}
export ITER=${ITER:-20} N=${N:-500} REPS=${REPS:-20}
if [ ! -x "$SLIPWAY" ]; then
  echo "# building $SLIPWAY (cargo build --release -p slipway)" >&2
  (cd "$ROOT" && cargo build --release -p slipway >&2)
fi
for c in git python3 busybox; do
  command -v "$c" >/dev/null || { echo "error: $c is missing (apt-get install git python3 busybox-static)" >&2; exit 1; }
done
export SLIPWAY
exec python3 -u - <<'PY'
import json, os, signal, socket, statistics, subprocess, tempfile, time, urllib.request

SLIPWAY = os.environ["SLIPWAY"]
ITER, N, REPS = int(os.environ["ITER"]), int(os.environ["N"]), int(os.environ["REPS"])
BUSYBOX = subprocess.run(["sh", "-c", "command -v busybox"], capture_output=True, text=True).stdout.strip()
tmp = tempfile.mkdtemp(prefix="bench-gitops.")
procs = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def sh(*args, cwd=None):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()

def git(*args, cwd):
    return sh("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args, cwd=cwd)

def http(method, url, timeout=30):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()

def status(api, app):
    return json.loads(http("GET", f"{api}/api/apps/{app}"))

def wait(pred, what, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.005)
    raise SystemExit(f"error: timed out waiting for {what}")

def good(s, rev):
    return s.get("revision") == rev and s["sync"] == "Synced" and s["health"] == "Healthy"

def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

def kill_services(data):
    local = os.path.join(data, "local")
    for app in os.listdir(local) if os.path.isdir(local) else []:
        for svc in os.listdir(os.path.join(local, app)):
            try:
                pid = int(open(os.path.join(local, app, svc, "service.pid")).read().split()[0])
                os.killpg(pid, signal.SIGKILL)
            except Exception:
                pass

def cleanup():
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM); p.wait(timeout=10)
        except Exception:
            p.kill()
    kill_services(f"{tmp}/agent")
    subprocess.run(["rm", "-rf", tmp])

try:
    gport = free_port()
    os.makedirs(f"{tmp}/repos/deploy.git")
    sh("git", "init", "-q", "--bare", cwd=f"{tmp}/repos/deploy.git")
    sh("git", "symbolic-ref", "HEAD", "refs/heads/main", cwd=f"{tmp}/repos/deploy.git")
    procs.append(subprocess.Popen(["git", "daemon", f"--base-path={tmp}/repos", "--export-all", "--enable=receive-pack",
                                   "--reuseaddr", "--listen=127.0.0.1", f"--port={gport}", f"{tmp}/repos"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    url = f"git://127.0.0.1:{gport}/deploy.git"
    time.sleep(0.3)
    wt = f"{tmp}/wt"
    os.makedirs(f"{wt}/web/site"); os.makedirs(f"{wt}/big")
    sh("git", "init", "-q", "-b", "main", cwd=wt)
    sh("git", "remote", "add", "origin", url, cwd=wt)
    port = free_port()
    open(f"{wt}/web/app.yaml", "w").write(
        f"services:\n  web:\n    files: site\n    command: exec {BUSYBOX} httpd -f -p 127.0.0.1:{port} -h .\n"
        f"    health: {{url: \"http://127.0.0.1:{port}/index.html\", timeout: 10s}}\n")
    open(f"{wt}/web/site/index.html", "w").write("v0")
    big = "services:\n" + "".join(f"  s{i:04d}:\n    command: exec sleep 3600\n" for i in range(N))
    open(f"{wt}/big/app.yaml", "w").write(big)
    git("add", "-A", cwd=wt); git("commit", "-qm", "v0", cwd=wt); git("push", "-q", "origin", "main", cwd=wt)
    head = git("rev-parse", "HEAD", cwd=wt)

    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    cfg = f"{tmp}/apps.toml"
    open(cfg, "w").write(
        f'[agent]\nname = "bench"\ndata = "{tmp}/agent"\nlisten = "127.0.0.1:{api_port}"\n'
        f'[[app]]\nname = "web"\nrepo = "{url}"\npath = "web"\ntarget = "local"\ninterval = "1h"\n'
        f'[[app]]\nname = "big"\nrepo = "{url}"\npath = "big"\ntarget = "local"\ninterval = "1h"\n')
    agent = subprocess.Popen([SLIPWAY, "gitops", "run", "--config", cfg], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/agent.log", "w"),
                             env=dict(os.environ, SLIPWAY_LOG="warn"))
    procs.append(agent)
    t0 = time.time()
    wait(lambda: good(status(api, "web"), head), "the first sync of web")
    try:
        wait(lambda: good(status(api, "big"), head), f"the first sync of {N} services", timeout=1200)
    except SystemExit:
        print(json.dumps({k: v for k, v in status(api, "big").items() if k != "resources"}, indent=1)[:3000]); raise
    print(f"first_sync_{N}_services_s: {time.time() - t0:.1f}")

    # ------------------------------------------------------------ 1. push -> applied
    lat, floor = [], []
    mirror = f"{tmp}/mirror.git"
    sh("git", "init", "-q", "--bare", mirror)
    for i in range(1, ITER + 1):
        open(f"{wt}/web/site/index.html", "w").write(f"v{i}")
        git("commit", "-qam", f"v{i}", cwd=wt)
        rev = git("rev-parse", "HEAD", cwd=wt)
        t = time.perf_counter()
        git("push", "-q", "origin", "main", cwd=wt)
        http("POST", f"{api}/hooks/sync?app=web")
        def applied():
            if not good(status(api, "web"), rev):
                return False
            return http("GET", f"http://127.0.0.1:{port}/index.html", timeout=2).decode().strip() == f"v{i}"
        wait(applied, f"v{i} applied", timeout=60)
        lat.append(time.perf_counter() - t)
        # the floor: push a commit, fetch it into a bare mirror
        git("commit", "-q", "--allow-empty", "-m", f"floor {i}", cwd=wt)
        t = time.perf_counter()
        git("push", "-q", "origin", "main", cwd=wt)
        sh("git", "fetch", "-q", "--no-tags", url, "+refs/heads/main:refs/heads/main", cwd=mirror)
        floor.append(time.perf_counter() - t)
        # let the agent follow the floor commit (same content) before the next iteration
        http("POST", f"{api}/api/apps/web/sync")
    print(f"push_to_healthy_p50_ms: {statistics.median(lat) * 1000:.0f}")
    print(f"push_to_healthy_p90_ms: {pct(lat, 90) * 1000:.0f}")
    print(f"floor_push_fetch_p50_ms: {statistics.median(floor) * 1000:.0f}")
    print("argocd_default_poll_p50_ms: 90000 (analytic: 3 min poll, no webhook)")

    # ------------------------------------------------------------ 2. no-op reconcile
    http("POST", f"{api}/api/apps/big/sync")  # catch up with the web iterations' commits
    before = len(status(api, "big")["history"])
    noop = []
    for _ in range(REPS):
        t = time.perf_counter()
        s = json.loads(http("POST", f"{api}/api/apps/big/sync"))
        noop.append(time.perf_counter() - t)
        assert s["sync"] == "Synced" and s["health"] == "Healthy", s["message"]
    assert len(status(api, "big")["history"]) == before, "a no-op reconcile applied something"
    fetch = []
    for _ in range(REPS):
        t = time.perf_counter()
        sh("git", "fetch", "-q", "--no-tags", url, "+refs/heads/main:refs/heads/main", cwd=mirror)
        fetch.append(time.perf_counter() - t)
    rss = hwm = 0
    for line in open(f"/proc/{agent.pid}/status"):
        if line.startswith("VmRSS:"): rss = int(line.split()[1])
        if line.startswith("VmHWM:"): hwm = int(line.split()[1])
    print(f"noop_reconcile_{N}_services_p50_ms: {statistics.median(noop) * 1000:.1f}")
    print(f"noop_reconcile_{N}_services_p90_ms: {pct(noop, 90) * 1000:.1f}")
    print(f"floor_git_fetch_unchanged_p50_ms: {statistics.median(fetch) * 1000:.1f}")
    print(f"agent_rss_mib: {rss / 1024:.1f}")
    print(f"agent_peak_rss_mib: {hwm / 1024:.1f}")
    print(f"summary: push->healthy p50 {statistics.median(lat) * 1000:.0f} ms (floor {statistics.median(floor) * 1000:.0f} ms; "
          f"Argo CD default poll ~90 s); no-op reconcile of {N} services {statistics.median(noop) * 1000:.0f} ms "
          f"(git fetch alone {statistics.median(fetch) * 1000:.0f} ms); agent RSS {rss / 1024:.1f} MiB")
finally:
    cleanup()
PY
