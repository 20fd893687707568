//! `actions/cache` through `slipway server` with real `slipway agent` processes: an entry saved
//! by a job on one agent is restored by a later run's job on another; restore-keys match by
//! prefix; a pull request reads its base branch's caches but never another pull request's;
//! two jobs saving one key at once leave one intact entry; the API lists, downloads and
//! deletes (admins only) a repository's caches. And the server on S3 (`--blob-store s3://...`,
//! the real moto server): an artifact's and a cache entry's contents land in the bucket, come
//! back through the API, and nothing of them is written under `--data`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use test_support::git::GitDaemon;

const BOB: &str = "bob-viewer-token";

fn write_config(dir: &Path, clone_url: &str) -> std::path::PathBuf {
    let path = dir.join("slipway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nexternal_url = \"http://ci.test\"\nagent_token = \"{AGENT_TOKEN}\"\nlease_ttl = \"30s\"\ncache_size_limit = \"1GiB\"\n\n\
             [[user]]\nname = \"alice\"\ntoken = \"{ALICE}\"\nrole = \"admin\"\n\n\
             [[user]]\nname = \"bob\"\ntoken = \"{BOB}\"\nrole = \"viewer\"\n\n\
             [[repository]]\nname = \"team/app\"\nclone_url = \"{clone_url}\"\nforge = \"gitea\"\nwebhook_secret = \"{SECRET}\"\n"
        ),
    )
    .expect("writing the config");
    path
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    let resp = reqwest::Client::new().get(url).bearer_auth(ALICE).send().await.expect("get");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.expect("json")
}

async fn log_text(url: &str, run: i64) -> String {
    let resp = reqwest::Client::new().get(format!("{url}/api/v1/runs/{run}/logs")).bearer_auth(ALICE).send().await;
    match resp {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => String::new(),
    }
}

/// Waits (polling the API) until run `run` is done; returns its log, asserting success.
async fn succeeded(url: &str, run: i64) -> String {
    for _ in 0..1200 {
        let r: protocol::Run = get_json(&format!("{url}/api/v1/runs/{run}")).await;
        if r.status == "done" {
            let log = log_text(url, run).await;
            assert_eq!(r.conclusion, Some(protocol::Conclusion::Success), "run {run}:\n{log}");
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} did not finish: {}", log_text(url, run).await);
}

/// A Gitea-signed `pull_request` (opened) webhook for PR `number` of `team/app` from `sha`
/// into `main`; returns the run's id.
async fn pr_webhook(url: &str, clone_url: &str, number: i64, branch: &str, sha: &str) -> i64 {
    let body = json!({
        "action": "opened", "number": number,
        "pull_request": {"number": number, "head": {"sha": sha, "ref": branch}, "base": {"ref": "main"}},
        "repository": {"full_name": "team/app", "name": "app", "owner": {"login": "team"}, "clone_url": clone_url, "default_branch": "main"},
        "sender": {"login": "alice"}
    })
    .to_string();
    let resp = reqwest::Client::new()
        .post(format!("{url}/hooks/gitea"))
        .header("X-Gitea-Event", "pull_request")
        .header("X-Gitea-Delivery", format!("pr-{number}-{sha}"))
        .header("X-Gitea-Signature", server::hooks::sign(SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(resp.status(), 202);
    resp.json::<protocol::Created>().await.expect("json").runs[0]
}

/// One job on `label` with a cache step per `(key, restore-keys)`, each of a different path
/// (`d0`, `d1`...), printing what it restored and building what it did not.
fn workflow(label: &str, caches: &[(&str, &str)]) -> String {
    let mut steps = String::new();
    for (i, (key, restore)) in caches.iter().enumerate() {
        steps.push_str(&format!(
            "      - id: c{i}\n        uses: actions/cache@v4\n        with:\n          path: d{i}\n          key: {key}\n          restore-keys: {restore}\n\
             \x20     - run: |\n          echo \"c{i} hit=${{{{ steps.c{i}.outputs.cache-hit }}}} matched=${{{{ steps.c{i}.outputs.cache-matched-key }}}}\"\n\
             \x20         if [ -f d{i}/v.txt ]; then echo \"c{i} restored $(cat d{i}/v.txt)\"; else mkdir -p d{i} && echo \"{key}-on-{label}\" > d{i}/v.txt; fi\n"
        ));
    }
    format!("name: ci\non: [push, pull_request]\njobs:\n  build:\n    runs-on: {label}\n    steps:\n{steps}")
}

async fn caches(url: &str, query: &str) -> Vec<Value> {
    get_json(&format!("{url}/api/v1/repositories/team/app/caches{query}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_are_shared_between_agents_with_github_scopes() {
    let dir = test_support::tempdir();
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    let config = write_config(dir.path(), &clone_url);
    let (mut server, url) = start_server_on(dir.path(), &config, None, "127.0.0.1:0");
    let mut a = start_agent(dir.path(), &url, "a", &["--labels", "agent-a"]);
    let mut b = start_agent(dir.path(), &url, "b", &["--labels", "agent-b"]);

    // 1. main on agent a: a miss; the post step saves deps-v1.
    tree.write(".gitea/workflows/ci.yml", &workflow("agent-a", &[("deps-v1", "deps-")]));
    let sha = tree.commit("one");
    tree.push("main");
    let log = succeeded(&url, push_webhook_to(&url, "team/app", &clone_url, ZERO, &sha, "d1").await).await;
    assert!(log.contains("c0 hit=false matched=") && log.contains("Cache saved with key: deps-v1"), "{log}");

    // 2. main again, on agent b: deps-v1 restored exactly (cache-hit), deps-v2 by the
    // restore-keys prefix (no hit), then saved.
    tree.write(".gitea/workflows/ci.yml", &workflow("agent-b", &[("deps-v1", "deps-"), ("deps-v2", "deps-")]));
    let sha = tree.commit("two");
    tree.push("main");
    let log = succeeded(&url, push_webhook_to(&url, "team/app", &clone_url, ZERO, &sha, "d2").await).await;
    assert!(log.contains("c0 hit=true matched=deps-v1") && log.contains("c0 restored deps-v1-on-agent-a"), "{log}");
    // Another path is another version: d1's key deps-v2 found nothing of d0's.
    assert!(log.contains("c1 hit=false matched=") && log.contains("Cache saved with key: deps-v2"), "{log}");
    let main = caches(&url, "?ref=refs/heads/main").await;
    let keys: Vec<&str> = main.iter().filter_map(|c| c["key"].as_str()).collect();
    assert_eq!(keys.len(), 2, "{main:?}");
    assert!(keys.contains(&"deps-v1") && keys.contains(&"deps-v2"), "{main:?}");

    // 3. restore-keys across versions: same path d0, new key, prefix match of deps-.
    tree.write(".gitea/workflows/ci.yml", &workflow("agent-a", &[("deps-v3", "deps-v")]));
    let sha = tree.commit("three");
    tree.push("main");
    let log = succeeded(&url, push_webhook_to(&url, "team/app", &clone_url, ZERO, &sha, "d3").await).await;
    assert!(log.contains("c0 hit=false matched=deps-v1") && log.contains("c0 restored deps-v1-on-agent-a"), "{log}");

    // 4. PR 5 reads its base (main), and saves pr-5 in its own scope.
    tree.write(".gitea/workflows/ci.yml", &workflow("agent-b", &[("deps-v1", "deps-"), ("pr-data", "pr-")]));
    let sha = tree.commit("pr five");
    tree.push("feature-5");
    let log = succeeded(&url, pr_webhook(&url, &clone_url, 5, "feature-5", &sha).await).await;
    assert!(log.contains("c0 hit=true matched=deps-v1"), "a PR restores its base's caches: {log}");
    assert!(log.contains("c1 hit=false matched=") && log.contains("Cache saved with key: pr-data"), "{log}");
    let pr5 = caches(&url, "?key=pr-data").await;
    assert_eq!(pr5.len(), 1, "{pr5:?}");
    assert_eq!(pr5[0]["ref"], "refs/pull/5/head");

    // 5. PR 6 never sees PR 5's entry (nor does main).
    tree.write(".gitea/workflows/ci.yml", &workflow("agent-a", &[("deps-v1", "deps-"), ("pr-data", "pr-")]));
    let sha = tree.commit("pr six");
    tree.push("feature-6");
    let log = succeeded(&url, pr_webhook(&url, &clone_url, 6, "feature-6", &sha).await).await;
    assert!(log.contains("c0 hit=true matched=deps-v1"), "{log}");
    assert!(log.contains("c1 hit=false matched=") && !log.contains("c1 restored"), "PR isolation: {log}");
    let pr6 = caches(&url, "?key=pr-data").await;
    assert_eq!(pr6.len(), 2, "each PR has its own: {pr6:?}");

    // 6. Two jobs save one key at once: one entry, intact.
    let racer = |name: &str, label: &str| {
        format!(
            "  {name}:\n    runs-on: {label}\n    steps:\n      - uses: actions/cache@v4\n        with:\n          path: race\n          key: race-1\n\
             \x20     - run: |\n          mkdir -p race && for i in $(seq 1 20000); do echo {name}-$i; done > race/data.txt\n          sleep 2\n"
        )
    };
    tree.write(
        ".gitea/workflows/ci.yml",
        &format!("name: ci\non: [push, pull_request]\njobs:\n{}{}", racer("left", "agent-a"), racer("right", "agent-b")),
    );
    let sha = tree.commit("race");
    tree.push("main");
    let log = succeeded(&url, push_webhook_to(&url, "team/app", &clone_url, ZERO, &sha, "d4").await).await;
    assert_eq!(log.matches("Cache saved with key: race-1").count(), 1, "{log}");
    assert_eq!(log.matches("Unable to reserve cache with key race-1").count(), 1, "{log}");
    let race = caches(&url, "?key=race-1").await;
    assert_eq!(race.len(), 1, "{race:?}");
    tree.write(
        ".gitea/workflows/ci.yml",
        "name: ci\non: push\njobs:\n  check:\n    runs-on: agent-b\n    steps:\n      - id: c\n        uses: actions/cache@v4\n        with:\n          path: race\n          key: race-1\n\
         \x20     - run: echo \"race hit=${{ steps.c.outputs.cache-hit }} $(head -1 race/data.txt) $(tail -1 race/data.txt) $(wc -l < race/data.txt)\"\n",
    );
    let sha = tree.commit("race check");
    tree.push("main");
    let log = succeeded(&url, push_webhook_to(&url, "team/app", &clone_url, ZERO, &sha, "d5").await).await;
    assert!(
        log.contains("race hit=true left-1 left-20000 20000") || log.contains("race hit=true right-1 right-20000 20000"),
        "one writer's whole archive: {log}"
    );

    // 7. The API: download an archive; deleting needs an admin.
    let v1 = &caches(&url, "?key=deps-v1").await[0];
    assert_eq!(v1["archive_url"], format!("http://ci.test/api/v1/repositories/team/app/caches/{}/archive", v1["id"]));
    let archive = reqwest::Client::new()
        .get(format!("{url}/api/v1/repositories/team/app/caches/{}/archive", v1["id"]))
        .bearer_auth(BOB)
        .send()
        .await
        .expect("get");
    assert_eq!(archive.status(), 200);
    let tar_path = dir.path().join("v1.tar");
    std::fs::write(&tar_path, archive.bytes().await.expect("bytes")).expect("write");
    let listed = Command::new("tar").arg("-tf").arg(&tar_path).output().expect("tar");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("w/d0/v.txt"), "{}", String::from_utf8_lossy(&listed.stdout));
    let http = reqwest::Client::new();
    let del = format!("{url}/api/v1/repositories/team/app/caches?key=deps-v1");
    assert_eq!(http.delete(&del).bearer_auth(BOB).send().await.expect("delete").status(), 403);
    let no_key = http.delete(format!("{url}/api/v1/repositories/team/app/caches")).bearer_auth(ALICE).send().await.expect("delete");
    assert_eq!(no_key.status(), 400);
    let resp = http.delete(&del).bearer_auth(ALICE).send().await.expect("delete");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.expect("json")["deleted"], 1);
    assert!(caches(&url, "?key=deps-v1").await.is_empty());
    let missing = http.get(format!("{url}/api/v1/repositories/team/nope/caches")).bearer_auth(ALICE).send().await.expect("get");
    assert_eq!(missing.status(), 404);

    assert!(a.terminate().success());
    assert!(b.terminate().success());
    assert!(server.terminate().success());
}

/// `slipway server --blob-store s3://BUCKET/PREFIX?endpoint=...` (keys from the environment).
fn start_s3_server(dir: &Path, config: &Path, blob_store: &str) -> (Proc, String) {
    let mut child = slipway()
        .args(["server", "--listen", "127.0.0.1:0", "--no-agent", "--blob-store", blob_store])
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting slipway server");
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut seen = Vec::new();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("slipway server listening on ") {
                    break rest.split_whitespace().next().expect("url").to_owned();
                }
                seen.push(line);
            }
            _ => panic!("slipway server exited: {}", seen.join("\n")),
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (Proc(child), url)
}

/// The keys of the objects in `bucket` (ListObjectsV2, one page is enough here).
async fn bucket_keys(endpoint: &str, bucket: &str) -> Vec<String> {
    let xml = reqwest::Client::new()
        .get(format!("{endpoint}/{bucket}?list-type=2&max-keys=1000"))
        .send()
        .await
        .expect("listing the bucket")
        .text()
        .await
        .expect("body");
    xml.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned())).collect()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_artifacts_and_caches_land_in_the_bucket_and_not_under_data() {
    let endpoint = test_support::s3_endpoint();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let bucket = format!("slipway-{}-{nanos}", std::process::id());
    let r = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.expect("creating the bucket");
    assert!(r.status().is_success(), "creating bucket {bucket}: {}", r.status());
    let dir = test_support::tempdir();
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        "name: ci\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n\
         \x20     - id: c\n        uses: actions/cache@v4\n        with:\n          path: deps\n          key: s3-deps-1\n\
         \x20     - run: |\n          echo \"hit=${{ steps.c.outputs.cache-hit }}\"\n          mkdir -p deps out && echo cached-on-s3 > deps/v.txt && echo artifact-on-s3 > out/a.txt\n\
         \x20     - uses: actions/upload-artifact@v4\n        with:\n          name: dist\n          path: out\n",
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let config = write_config(dir.path(), &clone_url);
    let blob_store = format!("s3://{bucket}/ci?endpoint={endpoint}&region=us-east-1");
    let (mut server, url) = start_s3_server(dir.path(), &config, &blob_store);
    let mut agent = start_agent(dir.path(), &url, "a", &[]);

    let run = push_webhook_to(&url, "team/app", &clone_url, ZERO, &sha, "s1").await;
    let log = succeeded(&url, run).await;
    assert!(log.contains("hit=false") && log.contains("Cache saved with key: s3-deps-1"), "{log}");

    // Both contents are objects of the bucket, under the prefix.
    let keys = bucket_keys(&endpoint, &bucket).await;
    let entry = &caches(&url, "").await[0];
    let archive = reqwest::Client::new()
        .get(format!("{url}/api/v1/repositories/team/app/caches/{}/archive", entry["id"]))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let cache_hex = hex_sha256(&archive);
    assert!(keys.contains(&format!("ci/blobs/sha256/{}/{cache_hex}", &cache_hex[..2])), "cache archive {cache_hex} in {keys:?}");
    let artifact = reqwest::Client::new()
        .get(format!("{url}/api/v1/runs/{run}/artifacts/dist"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let a_hex = hex_sha256(b"artifact-on-s3\n");
    assert!(keys.contains(&format!("ci/blobs/sha256/{}/{a_hex}", &a_hex[..2])), "artifact file {a_hex} in {keys:?}");
    assert!(artifact.windows(15).any(|w| w == b"artifact-on-s3\n"), "the artifact's tar holds the file");
    let tar_path = dir.path().join("cache.tar");
    std::fs::write(&tar_path, &archive).expect("write");
    let out = Command::new("tar").arg("-xOf").arg(&tar_path).arg("w/deps/v.txt").output().expect("tar");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "cached-on-s3\n");

    // Nothing of them under --data: no blob directory, an empty spool.
    let data = dir.path().join("data");
    assert!(!data.join("blobs").exists(), "{:?}", files_under(&data.join("blobs")));
    assert_eq!(files_under(&data.join("blobs-spool")), Vec::<String>::new());

    // A second run, on a new agent, restores from the bucket.
    assert!(agent.terminate().success());
    let mut agent2 = start_agent(dir.path(), &url, "a2", &[]);
    tree.write(
        ".gitea/workflows/ci.yml",
        "name: ci\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n\
         \x20     - id: c\n        uses: actions/cache@v4\n        with:\n          path: deps\n          key: s3-deps-1\n\
         \x20     - run: echo \"hit=${{ steps.c.outputs.cache-hit }} $(cat deps/v.txt)\"\n",
    );
    let sha = tree.commit("again");
    tree.push("main");
    let log = succeeded(&url, push_webhook_to(&url, "team/app", &clone_url, ZERO, &sha, "s2").await).await;
    assert!(log.contains("hit=true cached-on-s3"), "{log}");

    assert!(agent2.terminate().success());
    assert!(server.terminate().success());
}

fn hex_sha256(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("piped").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_owned()
}
