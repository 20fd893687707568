//! Log throughput: a step printing N MiB of lines (with a secret to mask) through the runner,
//! events consumed and counted. `cargo run --release -p runner --example logbench -- 1024`
//! With `steps N`: one job of N trivial `run:` steps (per-step overhead).

use std::time::Instant;

use indexmap::IndexMap;
use runner::{Event, Platform, RunOptions};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps_mode = args.get(1).is_some_and(|a| a == "steps");
    let n: u64 = args
        .get(if steps_mode { 2 } else { 1 })
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let mib = n;
    let yaml = if steps_mode {
        let mut y = "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n".to_owned();
        for i in 0..n {
            y.push_str(&format!("      - run: echo step {i}\n"));
        }
        y
    } else {
        format!(
            "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - run: yes 'a log line of typical length with some words in it and the s3cr3t-value inside' | head -c {}\n",
            mib * 1024 * 1024
        )
    };
    let wf = workflow::parse(&yaml, "bench.yml").expect("parse");
    let plan = workflow::compile(
        &wf,
        &workflow::CompileOptions {
            event: "push",
            loader: &|_: &str| None,
        },
    )
    .expect("compile");
    let mut secrets = IndexMap::new();
    secrets.insert("S".to_owned(), "s3cr3t-value".to_owned());
    let options = RunOptions {
        repo_root: dir.path().to_path_buf(),
        work_root: dir.path().join("work"),
        event_name: "push".into(),
        event: serde_json::json!({}),
        github: serde_json::Map::new(),
        secrets,
        vars: IndexMap::new(),
        env: IndexMap::new(),
        inputs: IndexMap::new(),
        matrix_filter: IndexMap::new(),
        platforms: Vec::new(),
        default_platform: Platform::Host,
        artifact_dir: None,
        cache_dir: dir.path().join("cache"),
        cache: None,
        actions_url: "https://github.com".into(),
        sandbox: false,
        docker_host: None,
        needs: IndexMap::new(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let consumer = tokio::spawn(async move {
        let (mut lines, mut bytes) = (0u64, 0u64);
        while let Some(e) = rx.recv().await {
            if let Event::Log { lines: l, .. } = e {
                lines += l.len() as u64;
                bytes += l.as_text().len() as u64;
            }
        }
        (lines, bytes)
    });
    let start = Instant::now();
    let summary = runner::run(vec![plan], options, tx, Default::default())
        .await
        .expect("run");
    let (lines, bytes) = consumer.await.expect("consumer");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "success={} lines={lines} bytes={bytes} secs={secs:.2} MB/s={:.0}",
        summary.success,
        bytes as f64 / secs / 1e6
    );
}
