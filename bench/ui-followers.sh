#!/usr/bin/env bash
# bench/ui-followers.sh — the server's memory while 50 browsers follow a live job log.
#
# A `slipway server` (SQLite, embedded agent) runs a workflow_dispatch job that prints
# LINES_PER_S lines a second for as long as the benchmark lasts. The server's RSS
# (/proc/PID/status VmRSS) is sampled every second through three phases, twice:
#   1. browsers: BEFORE s with nobody following, FOLLOW s with N headless Chromium pages (one
#      browser, a context each) on the run page following the log (the log SSE plus the
#      page's own change SSE and refetches), AFTER s once they are closed;
#   2. the floor: the same with N plain SSE followers (curl -N on /ui/jobs/ID/log?follow=1).
# Reported per phase: start (median RSS of the BEFORE phase), peak (max while the followers
# connect and follow), end (median of the last 10 s of AFTER), and the slope while all
# follow (least squares over the FOLLOW phase after its first 15 s, MiB/min). Flat = the
# slope is ~0 and end ~ start. The browsers' pages open one after another; FOLLOW starts
# when the last one is open.
#
# Knobs (env): N=50, BEFORE=15, FOLLOW=90, AFTER=30, LINES_PER_S=20, SLIPWAY_BIN (default
# target/release/slipway, built if missing), CHROMIUM=/usr/bin/chromium. Needs node and
# `npm ci --prefix ui-tests` (playwright-core), curl, git.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY=${SLIPWAY_BIN:-$ROOT/target/release/slipway}
export N=${N:-50} BEFORE=${BEFORE:-15} FOLLOW=${FOLLOW:-90} AFTER=${AFTER:-30} LINES_PER_S=${LINES_PER_S:-20}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$SLIPWAY" ]; then
  echo "# building $SLIPWAY (cargo build --release -p slipway)" >&2
  (cd "$ROOT" && cargo build --release -p slipway >&2)
fi
for c in node curl git "$CHROMIUM"; do command -v "$c" >/dev/null || { echo "error: $c is missing" >&2; exit 1; }; done
[ -f "$ROOT/ui-tests/node_modules/playwright-core/package.json" ] || { echo "error: playwright-core is missing: npm ci --prefix ui-tests" >&2; exit 1; }
export SLIPWAY ROOT
exec python3 - <<'PY'
import json, os, signal, socket, statistics, subprocess, tempfile, threading, time, urllib.request

SLIPWAY, ROOT = os.environ["SLIPWAY"], os.environ["ROOT"]
N, BEFORE, FOLLOW, AFTER = (int(os.environ[k]) for k in ("N", "BEFORE", "FOLLOW", "AFTER"))
LPS = int(os.environ["LINES_PER_S"])
tmp = tempfile.mkdtemp(prefix="bench-ui-followers.")
procs = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def sh(*args, cwd=None):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()

def start(args, log, **kw):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", subprocess.DEVNULL),
                         stderr=open(log, "w"), **kw)
    procs.append(p)
    return p

def stop(p):
    try:
        p.send_signal(signal.SIGTERM); p.wait(timeout=30)
    except Exception:
        p.kill(); p.wait()
    if p in procs:
        procs.remove(p)

def get(url):
    return json.loads(urllib.request.urlopen(url, timeout=10).read())

def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

samples = []  # (t, phase, MiB)
phase = ["idle"]

def sampler(pid, stop_event):
    t0 = time.time()
    while not stop_event.is_set():
        samples.append((time.time() - t0, phase[0], rss_mib(pid)))
        stop_event.wait(1.0)

def slope(points):
    # least squares, MiB per minute
    if len(points) < 3:
        return float("nan")
    xs = [p[0] for p in points]; ys = [p[2] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60 if den else float("nan")

def report(kind):
    before = [s for s in samples if s[1] == f"{kind}-before"]
    during = [s for s in samples if s[1] in (f"{kind}-opening", f"{kind}-follow")]
    following = [s for s in samples if s[1] == f"{kind}-follow"]
    after = [s for s in samples if s[1] == f"{kind}-after"]
    steady = [s for s in following if s[0] - following[0][0] >= 15]
    start_, peak = statistics.median(s[2] for s in before), max(s[2] for s in during)
    end = statistics.median(s[2] for s in after[-10:])
    sl = slope(steady)
    print(f"{kind}_rss_start_mib: {start_:.1f}")
    print(f"{kind}_rss_peak_mib: {peak:.1f}")
    print(f"{kind}_rss_end_mib: {end:.1f}")
    print(f"{kind}_rss_slope_following_mib_per_min: {sl:.2f}")
    return start_, peak, end, sl

try:
    repos = f"{tmp}/repos"; os.makedirs(repos)
    sh("git", "init", "--bare", "--quiet", "-b", "main", f"{repos}/app.git")
    gport = free_port()
    start(["git", "daemon", f"--base-path={repos}", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
           f"--port={gport}", "--reuseaddr"], f"{tmp}/git.log")
    clone_url = f"git://127.0.0.1:{gport}/app.git"
    work = f"{tmp}/work"; os.makedirs(f"{work}/.slipway/workflows")
    total = (2 * (BEFORE + FOLLOW + AFTER) + 120) * LPS
    wf = ("on: workflow_dispatch\njobs:\n  follow:\n    runs-on: x\n    steps:\n      - name: Print steadily\n"
          f"        run: |\n          i=0\n          while [ $i -lt {total} ]; do i=$((i+1)); "
          f"echo \"line $i lorem ipsum dolor sit amet, consectetur adipiscing elit\"; sleep {1 / LPS:.3f}; done\n")
    open(f"{work}/.slipway/workflows/follow.yml", "w").write(wf)
    sh("git", "init", "--quiet", "-b", "main", cwd=work)
    sh("git", "add", "-A", cwd=work)
    sh("git", "-c", "user.name=b", "-c", "user.email=b@e", "commit", "--quiet", "-m", "follow", cwd=work)
    for _ in range(50):
        try:
            sh("git", "push", "--quiet", clone_url, "main", cwd=work); break
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    open(f"{tmp}/slipway.toml", "w").write(
        f'[[repository]]\nname = "team/app"\nclone_url = "{clone_url}"\nforge = "gitea"\n')
    port = free_port(); url = f"http://127.0.0.1:{port}"
    server = start([SLIPWAY, "server", "--listen", f"127.0.0.1:{port}", "--data", f"{tmp}/data",
                    "--config", f"{tmp}/slipway.toml"], f"{tmp}/server.log", env=dict(os.environ, SLIPWAY_LOG="warn"))
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read(); break
        except Exception:
            time.sleep(0.05)
    req = urllib.request.Request(f"{url}/api/v1/dispatch", method="POST", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"repository": "team/app", "workflow": "follow.yml", "ref": "main"}).encode())
    run = json.loads(urllib.request.urlopen(req).read())["runs"][0]
    job = None
    for _ in range(600):
        jobs = r = get(f"{url}/api/v1/runs/{run}/jobs")
        if jobs and jobs[0].get("status") == "running":
            job = jobs[0]["id"]; break
        time.sleep(0.1)
    if job is None:
        raise SystemExit(f"error: the job did not start: {r}")
    page = f"{url}/runs/{run}?job={job}"
    print(f"# server pid {server.pid}, run {run}, job {job}, {N} followers, {LPS} lines/s; {page}")
    done = threading.Event()
    threading.Thread(target=sampler, args=(server.pid, done), daemon=True).start()

    # 1. browsers
    phase[0] = "browsers-before"; time.sleep(BEFORE)
    # The pages open one after another ("opening"), then all follow for FOLLOW s.
    phase[0] = "browsers-opening"
    node = subprocess.Popen(["node", f"{ROOT}/ui-tests/followers.mjs"], cwd=f"{ROOT}/ui-tests", stdout=subprocess.PIPE,
                            stderr=open(f"{tmp}/node.log", "w"), text=True,
                            env=dict(os.environ, URL=page, N=str(N), SECONDS=str(FOLLOW)))
    followers, opened_ms = None, None
    for line in node.stdout:
        if line.startswith("OPEN "):
            opened_ms = int(line.split()[1]); phase[0] = "browsers-follow"
        elif line.startswith("FOLLOWERS "):
            followers = json.loads(line[10:])
    if node.wait() != 0 or followers is None:
        raise SystemExit(f"error: the browsers failed: {open(f'{tmp}/node.log').read()}")
    print(f"# browsers: {followers}; all {N} pages open after {opened_ms} ms")
    if followers["min_lines_gained"] <= 0:
        raise SystemExit("error: a page did not follow the log")
    phase[0] = "browsers-after"; time.sleep(AFTER)

    # 2. plain SSE followers (the floor)
    phase[0] = "sse-before"; time.sleep(BEFORE)
    phase[0] = "sse-follow"
    curls = [start(["curl", "-sN", f"{url}/ui/jobs/{job}/log?follow=1"], f"{tmp}/curl-{i}.log",
                   stdout=open(f"{tmp}/curl-{i}.out", "w")) for i in range(N)]
    time.sleep(FOLLOW)
    sizes = [os.path.getsize(f"{tmp}/curl-{i}.out") for i in range(N)]
    for c in curls:
        stop(c)
    print(f"# sse: {N} followers received {min(sizes)}..{max(sizes)} bytes each")
    if min(sizes) == 0:
        raise SystemExit("error: an SSE follower received nothing")
    phase[0] = "sse-after"; time.sleep(AFTER)
    done.set()

    b = report("browsers")
    s = report("sse")
    open(f"{ROOT}/target/ui-followers-rss.tsv", "w").write("".join(f"{t:.1f}\t{p}\t{m:.1f}\n" for t, p, m in samples))
    print(f"summary: server RSS with {N} Chromium pages following: start {b[0]:.1f} MiB, peak {b[1]:.1f}, end {b[2]:.1f}, "
          f"slope {b[3]:+.2f} MiB/min; with {N} curl SSE followers (floor): start {s[0]:.1f}, peak {s[1]:.1f}, end {s[2]:.1f}, "
          f"slope {s[3]:+.2f} MiB/min; peak over start {b[1] - b[0]:.1f} MiB vs {s[1] - s[0]:.1f} MiB "
          f"(samples in target/ui-followers-rss.tsv)")
finally:
    for p in list(procs):
        stop(p)
    subprocess.run(["rm", "-rf", tmp])
PY
