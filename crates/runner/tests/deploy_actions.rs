//! slipway's built-in deploy actions driven from a workflow: `slipway/deploy-local` deploys an
//! artifact as a supervised service with an HTTP health check, a second deploy replaces it,
//! and a deploy whose health check never passes rolls back while the previous release keeps
//! serving. (The targets themselves are tested in depth in `crates/deploy`.)

mod common;

use common::Fixture;
use runner::JobResult;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /version.txt HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split("\r\n\r\n").nth(1).map(|b| b.trim().to_owned())
}

fn workflow(version: &str, port: u16, root: &str, health_path: &str) -> String {
    format!(
        r#"
on: push
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - run: mkdir -p site && echo "{version}" > site/version.txt
      - id: d
        uses: slipway/deploy-local@v1
        with:
          artifact: site
          root: {root}
          command: exec timeout 120 python3 -m http.server {port} --bind 127.0.0.1
          health-url: http://127.0.0.1:{port}/{health_path}
          health-timeout: 10s
      - run: test -n "${{{{ steps.d.outputs.release }}}}" && echo "deployed ${{{{ steps.d.outputs.release }}}}"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_local_from_a_workflow_replaces_and_rolls_back() {
    test_support::require_command("python3", "python3");
    let fx = Fixture::new();
    let root = fx.repo().join("srv");
    let root = root.to_str().expect("utf8").to_owned();
    let port = free_port();

    let first = common::run(&workflow("v1", port, &root, "version.txt"), fx.options()).await;
    assert_eq!(first.summary.jobs[0].result, JobResult::Success, "{}", first.dump());
    assert_eq!(get(port).as_deref(), Some("v1"));

    let second = common::run(&workflow("v2", port, &root, "version.txt"), fx.options()).await;
    assert_eq!(second.summary.jobs[0].result, JobResult::Success, "{}", second.dump());
    assert_eq!(get(port).as_deref(), Some("v2"));

    // A release whose health check never passes: the step fails and v2 keeps serving.
    let broken = common::run(&workflow("v3", port, &root, "missing.txt"), fx.options()).await;
    assert_eq!(broken.summary.jobs[0].result, JobResult::Failure, "{}", broken.dump());
    assert!(
        broken.annotations().iter().any(|(level, message)| level == "error" && message.contains("keeps serving")),
        "{}",
        broken.dump()
    );
    // The previous release is restarted by the rollback; give it the same health budget.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut answer = get(port);
    while answer.as_deref() != Some("v2") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        answer = get(port);
    }
    assert_eq!(answer.as_deref(), Some("v2"), "the previous release serves again");

    // The service stops by itself (`timeout 120` in its command): nothing outlives the test.
}
