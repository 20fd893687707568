#!/usr/bin/env bash
# bench/server-throughput.sh — how fast `slipway server` drains a queue of single-step jobs.
#
# RUNS signed push webhooks (distinct delivery ids, one commit) of a workflow with JOBS
# independent one-step jobs (`run: "true"`) are queued while no agent runs: RUNS × JOBS jobs
# (default 100 × 10 = 1,000). Then AGENTS `slipway agent` processes (host executor) start,
# and the clock runs until every run is done (read from /metrics: queue depth 0 and
# slipway_jobs_finished_total = all). Reported per database (SQLite in --data; PostgreSQL
# from SLIPWAY_TEST_POSTGRES, a fresh database): jobs/s, the server's CPU per job
# (utime+stime from /proc), and the whole machine's CPU per job (agents and steps included,
# from /proc/stat), and the agent protocol requests per job (each agent logs how many it sent
# when it stops; retries included, registration and idle long-polls too).
#
# The peer: act_runner runs one task per `capacity` slot and asks Gitea for the next one
# every `fetch_interval` (2 s) when idle — it is not built to drain a burst; there is no
# Gitea here to measure it. The figure to read is the ratio to the goal (≥ 200 jobs/s on
# PostgreSQL on this 2-core machine).
#
# Knobs (env): RUNS=100, JOBS=10, AGENTS=4, CAPACITY=1 (jobs per agent at once),
#   DATABASES="sqlite postgres", SLIPWAY_BIN (default target/release/slipway, built if missing),
#   SERVER_LOG=warn (the server's SLIPWAY_LOG; e.g. "warn,sqlx::query=debug" to count statements),
#   KEEP=1 keeps the temporary directory (server and agent logs) and prints its path.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY=${SLIPWAY_BIN:-$ROOT/target/release/slipway}
export RUNS=${RUNS:-100} JOBS=${JOBS:-10} AGENTS=${AGENTS:-4} CAPACITY=${CAPACITY:-1}
export DATABASES=${DATABASES:-sqlite postgres}
if [ ! -x "$SLIPWAY" ]; then
  echo "# building $SLIPWAY (cargo build --release -p slipway)" >&2
  (cd "$ROOT" && cargo build --release -p slipway >&2)
fi
if [[ " $DATABASES " == *" postgres "* ]]; then
  [ -n "${SLIPWAY_TEST_POSTGRES:-}" ] || [ ! -f /tmp/svc/env ] || source /tmp/svc/env
  [ -n "${SLIPWAY_TEST_POSTGRES:-}" ] || { echo "error: SLIPWAY_TEST_POSTGRES is not set (scripts/services starts PostgreSQL)" >&2; exit 1; }
  command -v psql >/dev/null || { echo "error: psql is missing (apt-get install postgresql-client)" >&2; exit 1; }
fi
export SLIPWAY
exec python3 - <<'PY'
import hashlib, hmac, json, os, re, signal, socket, subprocess, tempfile, time, urllib.request

SLIPWAY = os.environ["SLIPWAY"]
RUNS, JOBS, AGENTS = int(os.environ["RUNS"]), int(os.environ["JOBS"]), int(os.environ["AGENTS"])
CAPACITY = int(os.environ["CAPACITY"])
TOTAL = RUNS * JOBS
tmp = tempfile.mkdtemp(prefix="bench-server-throughput.")
procs = []
TICK = os.sysconf("SC_CLK_TCK")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def sh(*args, cwd=None):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()

def start(args, log, level="warn"):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                         env=dict(os.environ, SLIPWAY_LOG=level, NO_COLOR="1"))
    procs.append(p)
    return p

def stop(p):
    try:
        p.send_signal(signal.SIGTERM); p.wait(timeout=30)
    except Exception:
        p.kill(); p.wait()
    if p in procs:
        procs.remove(p)

def cpu_s(pid, children=False):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    own = int(f[11]) + int(f[12])
    return (own + (int(f[13]) + int(f[14]) if children else 0)) / TICK

def machine_busy_s():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return (sum(f[:8]) - idle) / TICK

def metrics(url):
    text = urllib.request.urlopen(f"{url}/metrics").read().decode()
    depth = int(re.search(r"^slipway_queue_depth (\d+)", text, re.M).group(1))
    done = sum(int(n) for n in re.findall(r'^slipway_jobs_finished_total\{result="[a-z]+"\} (\d+)', text, re.M))
    failed = sum(int(n) for n in re.findall(r'^slipway_jobs_finished_total\{result="(?:failure|cancelled)"\} (\d+)', text, re.M))
    return depth, done, failed

def wait_http(url, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read(); return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"error: {url} did not answer")

def fresh_postgres():
    base = os.environ["SLIPWAY_TEST_POSTGRES"]
    name = f"slipway_bench_{os.getpid()}_{int(time.time())}"
    sh("psql", base, "-v", "ON_ERROR_STOP=1", "-q", "-c", f"CREATE DATABASE {name}")
    created_dbs.append(name)
    return base.rsplit("/", 1)[0] + "/" + name

results = {}
created_dbs = []
try:
    repos = f"{tmp}/repos"; os.makedirs(repos)
    sh("git", "init", "--bare", "--quiet", f"{repos}/app.git")
    gport = free_port()
    start(["git", "daemon", f"--base-path={repos}", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
           f"--port={gport}", "--reuseaddr"], f"{tmp}/git.log")
    clone_url = f"git://127.0.0.1:{gport}/app.git"
    work = f"{tmp}/work"; os.makedirs(f"{work}/.gitea/workflows")
    wf = "on: push\njobs:\n" + "".join(f"  j{i}:\n    runs-on: x\n    steps:\n      - run: \"true\"\n" for i in range(JOBS))
    open(f"{work}/.gitea/workflows/ci.yml", "w").write(wf)
    sh("git", "init", "--quiet", "-b", "main", cwd=work)
    sh("git", "add", "-A", cwd=work)
    sh("git", "-c", "user.name=b", "-c", "user.email=b@e", "commit", "--quiet", "-m", "ci", cwd=work)
    sha = sh("git", "rev-parse", "HEAD", cwd=work)
    for _ in range(50):
        try:
            sh("git", "push", "--quiet", clone_url, "main", cwd=work); break
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    open(f"{tmp}/slipway.toml", "w").write(
        f'[server]\nagent_token = "agent-token"\nlease_ttl = "60s"\n\n[[repository]]\nname = "team/app"\n'
        f'clone_url = "{clone_url}"\nforge = "gitea"\nwebhook_secret = "hook-secret"\n')
    body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "commits": [],
                       "repository": {"full_name": "team/app", "clone_url": clone_url}, "pusher": {"login": "b"}}).encode()
    sig = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()

    for db in os.environ["DATABASES"].split():
        port = free_port(); url = f"http://127.0.0.1:{port}"
        args = [SLIPWAY, "server", "--listen", f"127.0.0.1:{port}", "--data", f"{tmp}/data-{db}", "--no-agent",
                "--config", f"{tmp}/slipway.toml"]
        if db == "postgres":
            args += ["--database", fresh_postgres()]
        server = start(args, f"{tmp}/server-{db}.log", level=os.environ.get("SERVER_LOG", "warn"))
        wait_http(f"{url}/healthz")
        for i in range(RUNS):
            req = urllib.request.Request(f"{url}/hooks/gitea", data=body, method="POST", headers={
                "Content-Type": "application/json", "X-Gitea-Event": "push", "X-Gitea-Delivery": f"{db}-{i}",
                "X-Gitea-Signature": sig})
            urllib.request.urlopen(req).read()
        depth, _, _ = metrics(url)
        if depth != TOTAL:
            raise SystemExit(f"error: {depth} jobs queued, expected {TOTAL}")
        cpu0, busy0, t0 = cpu_s(server.pid), machine_busy_s(), time.time()
        agents = []
        for a in range(AGENTS):
            cmd = [SLIPWAY, "agent", "--server", url, "--token", "agent-token", "--name", f"a{a}",
                   "--work-dir", f"{tmp}/agent-{db}-{a}"]
            if CAPACITY > 1:
                cmd += ["--capacity", str(CAPACITY)]
            agents.append(start(cmd, f"{tmp}/agent-{db}-{a}.log", level="warn,server::agent=info"))
        while True:
            depth, done, failed = metrics(url)
            if done >= TOTAL:
                break
            time.sleep(0.05)
        t1, cpu1, busy1 = time.time(), cpu_s(server.pid), machine_busy_s()
        if failed:
            raise SystemExit(f"error: {failed} jobs failed on {db} (see {tmp}/agent-{db}-*.log)")
        # The agents' CPU, with their finished children (the steps' bash processes, git).
        agents_s = sum(cpu_s(a.pid, children=True) for a in agents)
        for a in agents:
            stop(a)
        stop(server)
        requests = 0
        for a in range(AGENTS):
            text = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{tmp}/agent-{db}-{a}.log").read())
            m = re.search(r"Agent stopped\..*requests=(\d+)", text)
            requests += int(m.group(1)) if m else 0
        secs = t1 - t0
        results[db] = (TOTAL / secs, (cpu1 - cpu0) * 1000 / TOTAL, (busy1 - busy0) * 1000 / TOTAL, secs, agents_s * 1000 / TOTAL,
                       requests / TOTAL)
        jps, srv_ms, all_ms, secs, agent_ms, req_per_job = results[db]
        print(f"{db}_jobs: {TOTAL}")
        print(f"{db}_seconds: {secs:.2f}")
        print(f"{db}_jobs_per_s: {jps:.1f}")
        print(f"{db}_server_cpu_ms_per_job: {srv_ms:.2f}")
        print(f"{db}_agents_cpu_ms_per_job: {agent_ms:.2f}")
        print(f"{db}_machine_cpu_ms_per_job: {all_ms:.2f}")
        print(f"{db}_requests_per_job: {req_per_job:.2f}")
    print("summary: " + "; ".join(f"{db} {r[0]:.1f} jobs/s, server CPU {r[1]:.2f} ms/job, agents+steps CPU {r[4]:.2f} ms/job, machine CPU {r[2]:.2f} ms/job, {r[5]:.2f} requests/job"
                                  for db, r in results.items()) + f" ({AGENTS} agents x capacity {CAPACITY}; goal >= 200 jobs/s on postgres)")
finally:
    for p in list(procs):
        stop(p)
    for name in created_dbs:
        subprocess.run(["psql", os.environ["SLIPWAY_TEST_POSTGRES"], "-q", "-c", f"DROP DATABASE IF EXISTS {name}"],
                       capture_output=True)
    if os.environ.get("KEEP") == "1":
        print(f"kept: {tmp}")
    else:
        subprocess.run(["rm", "-rf", tmp])
PY
