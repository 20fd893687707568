//! `slipway server` with several real `slipway agent` processes: artifacts uploaded by a job on
//! one agent are downloaded by a job of the same run on another (and through the API as a tar
//! archive); and `kill -9` of the server in the middle of 20 running jobs loses nothing —
//! after the restart every job ends, every log line received before the kill is there, and
//! jobs that finished while the server was down are reported once it is back.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

use test_support::git::GitDaemon;

fn write_config(dir: &Path, clone_url: &str, lease_ttl: &str) -> std::path::PathBuf {
    let path = dir.join("slipway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nexternal_url = \"http://ci.test\"\nagent_token = \"{AGENT_TOKEN}\"\nlease_ttl = \"{lease_ttl}\"\n\n\
             [[user]]\nname = \"alice\"\ntoken = \"{ALICE}\"\nrole = \"admin\"\n\n\
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

/// Waits (polling the API) until run `run` is done.
async fn finished(url: &str, run: i64) -> protocol::Run {
    for _ in 0..1200 {
        let r: protocol::Run = get_json(&format!("{url}/api/v1/runs/{run}")).await;
        if r.status == "done" {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} did not finish: {}", log_text(url, run).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_uploaded_on_one_agent_are_downloaded_on_another() {
    let dir = test_support::tempdir();
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    tree.write(
        ".gitea/workflows/ci.yml",
        r#"name: ci
on: push
jobs:
  build:
    runs-on: producer
    steps:
      - run: |
          mkdir -p out/sub
          echo "built by $(basename "$PWD")" > out/app.txt
          echo nested > out/sub/data.txt
          chmod 755 out/app.txt
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: out/
  test:
    needs: build
    runs-on: consumer
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: dist
          path: got
      - run: |
          echo "consumer read: $(cat got/app.txt) / $(cat got/sub/data.txt)"
          test -x got/app.txt && echo mode-kept
"#,
    );
    let sha = tree.commit("ci");
    tree.push("main");
    let config = write_config(dir.path(), &clone_url, "30s");
    let (mut server, url) = start_server_on(dir.path(), &config, None, "127.0.0.1:0");
    let mut producer = start_agent(dir.path(), &url, "producer", &["--labels", "producer"]);
    let mut consumer = start_agent(dir.path(), &url, "consumer", &["--labels", "consumer"]);

    let run = push_webhook(&url, &clone_url, &sha, "d1").await;
    let done = finished(&url, run).await;
    let log = log_text(&url, run).await;
    assert_eq!(done.conclusion, Some(protocol::Conclusion::Success), "{log}");
    assert!(log.contains("consumer read: built by") && log.contains("/ nested") && log.contains("mode-kept"), "{log}");
    // Each job ran on its own agent (the labels say which), so the file went through the server.
    assert!(std::fs::read_to_string(dir.path().join("producer.log")).is_ok());

    let artifacts: Vec<protocol::Artifact> = get_json(&format!("{url}/api/v1/runs/{run}/artifacts")).await;
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!((artifacts[0].name.as_str(), artifacts[0].files), ("dist", 2));
    assert_eq!(artifacts[0].url, format!("http://ci.test/api/v1/runs/{run}/artifacts/dist"));
    // Downloaded through the API as a tar archive, unpacked by tar(1).
    let resp = reqwest::Client::new().get(format!("{url}/api/v1/runs/{run}/artifacts/dist")).bearer_auth(ALICE).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    let archive = dir.path().join("dist.tar");
    std::fs::write(&archive, resp.bytes().await.expect("bytes")).expect("write");
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let tar = Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&unpacked).output().expect("tar");
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    assert!(std::fs::read_to_string(unpacked.join("app.txt")).expect("app.txt").starts_with("built by"));
    assert_eq!(std::fs::read_to_string(unpacked.join("sub/data.txt")).expect("data.txt"), "nested\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(unpacked.join("app.txt")).expect("meta").permissions().mode() & 0o777, 0o755);
    let missing = reqwest::Client::new().get(format!("{url}/api/v1/runs/{run}/artifacts/nope")).bearer_auth(ALICE).send().await.expect("get");
    assert_eq!(missing.status(), 404);
    // The contents are content-addressed blobs under --data.
    assert!(dir.path().join("data/blobs/blobs/sha256").is_dir());

    assert!(producer.terminate().success());
    assert!(consumer.terminate().success());
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_sigkill_during_20_running_jobs_loses_nothing() {
    let dir = test_support::tempdir();
    let go = dir.path().join("go");
    let early = dir.path().join("early");
    let git = GitDaemon::start();
    let clone_url = git.create_repo("app");
    let tree = git.work_tree("app");
    // 20 jobs: the first ten finish while the server is down (their results and last lines
    // wait in the agents), the other ten after it is back.
    let mut wf = String::from("name: many\non: push\njobs:\n");
    for i in 0..20 {
        let gate = if i < 10 { &early } else { &go };
        wf.push_str(&format!(
            "  j{i}:\n    runs-on: x\n    steps:\n      - run: |\n          echo before-kill-{i}\n          while [ ! -e {gate} ]; do sleep 0.05; done\n          echo after-restart-{i}\n",
            gate = gate.display()
        ));
    }
    tree.write(".gitea/workflows/many.yml", &wf);
    let sha = tree.commit("many");
    tree.push("main");
    let config = write_config(dir.path(), &clone_url, "30s");
    let (mut server, url) = start_server_on(dir.path(), &config, None, "127.0.0.1:0");
    let mut agents: Vec<Proc> =
        (0..2).map(|i| start_agent(dir.path(), &url, &format!("a{i}"), &["--capacity", "10"])).collect();
    let run = push_webhook(&url, &clone_url, &sha, "d1").await;

    // Every job is running and has sent its first line.
    let mut log = String::new();
    for _ in 0..600 {
        log = log_text(&url, run).await;
        if (0..20).all(|i| log.contains(&format!("before-kill-{i}\n"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!((0..20).all(|i| log.contains(&format!("before-kill-{i}\n"))), "not all 20 jobs started: {log}");
    let jobs: Vec<protocol::Job> = get_json(&format!("{url}/api/v1/runs/{run}/jobs")).await;
    assert_eq!(jobs.iter().filter(|j| j.status == "running").count(), 20, "{jobs:?}");

    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("reaped");
    // While it is down, ten jobs finish.
    std::fs::write(&early, "").expect("releasing the first ten");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listen = url.trim_start_matches("http://").to_owned();
    let (mut server, _) = start_server_on(dir.path(), &config, None, &listen);
    std::fs::write(&go, "").expect("releasing the rest");

    let done = finished(&url, run).await;
    let log = log_text(&url, run).await;
    assert_eq!(done.conclusion, Some(protocol::Conclusion::Success), "{:?}: {log}", done.reason);
    for i in 0..20 {
        assert!(log.contains(&format!("before-kill-{i}\n")), "line received before the kill is kept: {log}");
        assert!(log.contains(&format!("after-restart-{i}\n")), "job {i} finished: {log}");
    }
    let jobs: Vec<protocol::Job> = get_json(&format!("{url}/api/v1/runs/{run}/jobs")).await;
    for j in &jobs {
        assert_eq!((j.status.as_str(), j.result, j.attempt), ("done", Some(protocol::Conclusion::Success), 1), "{j:?}");
    }
    for a in &mut agents {
        assert!(a.terminate().success());
    }
    assert!(server.terminate().success());
}
