#!/usr/bin/env bash
# bench/server-cache.sh — actions/cache through the server: save and restore of a SIZE_MIB
# directory of incompressible data, by a real `slipway agent` against `slipway server`
# (blobs in files under --data, then in S3 — the moto server of SLIPWAY_TEST_S3 when set),
# side by side with `slipway run` (the runner's local cache directory) and the floor: `tar -cf`
# of the directory plus a copy of the archive (save), `tar -xf` of it (restore), same disk.
#
# Timing: the workflow prints $EPOCHREALTIME (a bash builtin) right before and right after the
# `actions/cache` step (restore); save is the post step, the last thing the job runs, timed
# from the last main step's mark to the end of the job (the job's `finished_at`, or the end
# of `slipway run`), so it includes reporting the result (~ms). ITER runs each; medians.
#
# Knobs (env): ITER=3, SIZE_MIB=256, SLIPWAY_BIN (default target/release/slipway, built if
# missing). Output: `name: value` lines, then `summary:`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLIPWAY=${SLIPWAY_BIN:-$ROOT/target/release/slipway}
export ITER=${ITER:-3} SIZE_MIB=${SIZE_MIB:-256}
if [ ! -x "$SLIPWAY" ]; then
  echo "# building $SLIPWAY (cargo build --release -p slipway)" >&2
  (cd "$ROOT" && cargo build --release -p slipway >&2)
fi
for c in git python3 tar; do
  command -v "$c" >/dev/null || { echo "error: $c is missing (apt-get install git python3 tar)" >&2; exit 1; }
done
export SLIPWAY
exec python3 - <<'PY'
import hashlib, hmac, json, os, signal, socket, statistics, subprocess, tempfile, time, urllib.request

SLIPWAY = os.environ["SLIPWAY"]
ITER = int(os.environ["ITER"])
SIZE = int(os.environ["SIZE_MIB"])
S3 = os.environ.get("SLIPWAY_TEST_S3")
tmp = tempfile.mkdtemp(prefix="bench-server-cache.")
procs = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def sh(*args, cwd=None):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()

def start(args, log, env=None):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                         env=dict(os.environ, SLIPWAY_LOG="warn", **(env or {})))
    procs.append(p)
    return p

def stop(p):
    p.send_signal(signal.SIGTERM); p.wait(timeout=30); procs.remove(p)

def wait_http(url, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read(); return
        except Exception:
            time.sleep(0.02)
    raise SystemExit(f"error: {url} did not answer")

def cleanup():
    for p in list(procs):
        try:
            p.send_signal(signal.SIGTERM); p.wait(timeout=10)
        except Exception:
            p.kill()
    subprocess.run(["rm", "-rf", tmp])

def workflow(key, mark):
    # The data is made once, outside the timed steps; a hit restores it.
    return (f'on: push\njobs:\n  c:\n    runs-on: x\n    steps:\n'
            f'      - run: echo "$EPOCHREALTIME" >> {mark}\n'
            f'      - id: c\n        uses: actions/cache@v4\n        with:\n          path: data\n          key: {key}\n'
            f'      - run: echo "$EPOCHREALTIME" >> {mark}\n'
            f'      - run: |\n          if [ "${{{{ steps.c.outputs.cache-hit }}}}" != true ]; then mkdir -p data && cp {tmp}/blob data/blob; fi\n'
            f'          echo "$EPOCHREALTIME" >> {mark}\n')

def marks(mark):
    return [float(x) for x in open(mark).read().split()]

try:
    with open(f"{tmp}/blob", "wb") as f:
        for _ in range(SIZE):
            f.write(os.urandom(1 << 20))

    # ------------------------------------------------------------ floor: tar + copy, untar
    floor_save, floor_restore = [], []
    for i in range(ITER):
        d = f"{tmp}/floor{i}"; os.makedirs(f"{d}/ws/data"); sh("cp", f"{tmp}/blob", f"{d}/ws/data/blob")
        t0 = time.time(); sh("tar", "-cf", f"{d}/a.tar", "-C", f"{d}/ws", "data"); sh("cp", f"{d}/a.tar", f"{d}/store.tar")
        floor_save.append(time.time() - t0)
        os.makedirs(f"{d}/out")
        t0 = time.time(); sh("tar", "-xf", f"{d}/store.tar", "-C", f"{d}/out"); floor_restore.append(time.time() - t0)
        sh("rm", "-rf", d)

    # ------------------------------------------------------------ slipway run (local cache)
    local_save, local_restore = [], []
    for i in range(ITER):
        d = f"{tmp}/local{i}"; os.makedirs(f"{d}/repo/.github/workflows")
        mark = f"{d}/mark"
        with open(f"{d}/repo/.github/workflows/c.yml", "w") as f:
            f.write(workflow(f"local-{i}", mark))
        env = dict(os.environ, XDG_CACHE_HOME=f"{d}/xdg")
        for phase in ("save", "restore"):
            open(mark, "w").close()
            subprocess.run([SLIPWAY, "run", "-W", f"{d}/repo/.github/workflows/c.yml"], check=True,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=f"{d}/repo")
            end = time.time()
            m = marks(mark)
            if phase == "save":
                local_save.append(end - m[2])
            else:
                local_restore.append(m[1] - m[0])
        sh("rm", "-rf", d)

    # ------------------------------------------------------------ through the server
    repos = f"{tmp}/repos"; os.makedirs(f"{repos}/app.git")
    sh("git", "init", "--bare", "--quiet", f"{repos}/app.git")
    sh("git", "symbolic-ref", "HEAD", "refs/heads/main", cwd=f"{repos}/app.git")
    gport = free_port()
    start(["git", "daemon", f"--base-path={repos}", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
           f"--port={gport}", "--reuseaddr"], f"{tmp}/git.log")
    clone_url = f"git://127.0.0.1:{gport}/app.git"
    work = f"{tmp}/work"; os.makedirs(f"{work}/.gitea/workflows")
    sh("git", "init", "--quiet", "-b", "main", cwd=work)
    env_git = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]

    def commit(text):
        with open(f"{work}/.gitea/workflows/c.yml", "w") as f:
            f.write(text)
        sh("git", "add", "-A", cwd=work); sh("git", *env_git, "commit", "--quiet", "--allow-empty", "-m", "c", cwd=work)
        for _ in range(50):
            try:
                sh("git", "push", "--quiet", "--force", clone_url, "main", cwd=work); break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        return sh("git", "rev-parse", "HEAD", cwd=work)

    def measure(name, extra_args, extra_env):
        url = f"http://127.0.0.1:{free_port()}"
        data = f"{tmp}/data-{name}"
        with open(f"{tmp}/slipway.toml", "w") as f:
            f.write(f'[server]\nagent_token = "agent-token"\n\n[[repository]]\nname = "team/app"\nclone_url = "{clone_url}"\n'
                    f'forge = "gitea"\nwebhook_secret = "hook-secret"\n')
        srv = start([SLIPWAY, "server", "--listen", url.removeprefix("http://"), "--data", data, "--no-agent",
                     "--config", f"{tmp}/slipway.toml", *extra_args], f"{tmp}/server-{name}.log", extra_env)
        wait_http(f"{url}/healthz")
        agent = start([SLIPWAY, "agent", "--server", url, "--token", "agent-token", "--work-dir", f"{tmp}/agent-{name}"],
                      f"{tmp}/agent-{name}.log")
        n = [0]

        def run_once(key, mark):
            open(mark, "w").close()
            sha = commit(workflow(key, mark))
            n[0] += 1
            body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "commits": [],
                               "repository": {"full_name": "team/app", "clone_url": clone_url}, "pusher": {"login": "b"}}).encode()
            sig = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
            req = urllib.request.Request(f"{url}/hooks/gitea", data=body, method="POST", headers={
                "Content-Type": "application/json", "X-Gitea-Event": "push", "X-Gitea-Delivery": f"{name}-{n[0]}",
                "X-Gitea-Signature": sig})
            run = json.loads(urllib.request.urlopen(req).read())["runs"][0]
            while True:
                r = json.loads(urllib.request.urlopen(f"{url}/api/v1/runs/{run}").read())
                if r["status"] == "done":
                    if r["conclusion"] != "success":
                        raise SystemExit(f"error: run {run} ended {r['conclusion']}: {r.get('reason')}")
                    jobs = json.loads(urllib.request.urlopen(f"{url}/api/v1/runs/{run}/jobs").read())
                    return marks(mark), jobs[0]["finished_at"] / 1000
                time.sleep(0.02)

        save, restore = [], []
        for i in range(ITER):
            m, end = run_once(f"{name}-{i}", f"{tmp}/mark")
            save.append(end - m[2])
            m, _ = run_once(f"{name}-{i}", f"{tmp}/mark")
            restore.append(m[1] - m[0])
        stop(agent); stop(srv)
        return save, restore

    files_save, files_restore = measure("files", [], {})
    results = [("server_files", files_save, files_restore)]
    if S3:
        bucket = f"bench-{os.getpid()}"
        urllib.request.urlopen(urllib.request.Request(f"{S3}/{bucket}", method="PUT")).read()
        s3_save, s3_restore = measure("s3", ["--blob-store", f"s3://{bucket}/ci?endpoint={S3}"],
                                      {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"})
        results.append(("server_s3_moto", s3_save, s3_restore))

    med = statistics.median
    print(f"size_mib: {SIZE}")
    print(f"iterations: {ITER}")
    rows = [("floor_tar_cp", floor_save, floor_restore), ("slipway_run_local", local_save, local_restore)] + results
    for name, s, r in rows:
        print(f"{name}_save_s: {med(s):.3f}")
        print(f"{name}_restore_s: {med(r):.3f}")
    fs, fr = med(floor_save), med(floor_restore)
    print("summary: " + "; ".join(
        f"{name} save {med(s):.2f} s ({med(s) / fs:.2f}x floor, {SIZE / med(s):.0f} MiB/s), "
        f"restore {med(r):.2f} s ({med(r) / fr:.2f}x floor, {SIZE / med(r):.0f} MiB/s)" for name, s, r in rows))
finally:
    cleanup()
PY
