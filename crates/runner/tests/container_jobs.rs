//! The runner core driving containers through a real dockerd: a job mapped to
//! `docker://IMAGE`, and a `docker://` step of a host job.

mod common;

use common::{Fixture, run};
use runner::{JobResult, Platform};

#[tokio::test]
async fn a_job_mapped_to_an_image_runs_its_steps_in_the_container() {
    let docker = test_support::docker_host();
    let image = test_support::busybox_image();
    let f = Fixture::new();
    let mut o = f.options();
    o.docker_host = Some(docker);
    o.platforms = vec![("ubuntu-latest".into(), Platform::Docker { image })];
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    outputs:
      v: ${{ steps.s.outputs.v }}
    steps:
      - id: s
        run: |
          echo "in-container bash=${BASH_VERSION:-none}"
          echo "v=from-container" >> "$GITHUB_OUTPUT"
          echo "X=1" >> "$GITHUB_ENV"
          echo data > file.txt
      - run: echo "x=$X file=$(cat file.txt)"
"##,
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    assert!(
        logs.contains(&"in-container bash=none".to_owned()),
        "{logs:?}"
    );
    assert!(logs.contains(&"x=1 file=data".to_owned()), "{logs:?}");
    assert_eq!(
        out.outputs("j").get("v").and_then(|v| v.as_str()),
        Some("from-container")
    );
}

#[tokio::test]
async fn a_docker_step_on_the_host_executor_uses_the_engine() {
    let docker = test_support::docker_host();
    let image = test_support::busybox_image();
    let f = Fixture::new();
    let mut o = f.options();
    o.docker_host = Some(docker);
    let out = run(
        &format!(
            r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo from-host > shared.txt
      - uses: docker://{image}
        with:
          entrypoint: cat
          args: shared.txt
"##
        ),
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    assert!(
        out.logs("j").contains(&"from-host".to_owned()),
        "{:?}",
        out.logs("j")
    );
}

#[tokio::test]
async fn a_docker_action_with_inputs_runs_in_the_engine() {
    let docker = test_support::docker_host();
    let image = test_support::busybox_image();
    let f = Fixture::new();
    f.write(
        "actions/greet/action.yml",
        &format!(
            r##"
name: greet
inputs:
  who:
    default: nobody
runs:
  using: docker
  image: docker://{image}
  entrypoint: sh
  args:
    - -c
    - echo "hello ${{{{ inputs.who }}}} env=$INPUT_WHO" && echo "said=yes" >> "$GITHUB_OUTPUT"
"##
        ),
    );
    let mut o = f.options();
    o.docker_host = Some(docker);
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: ./actions/greet
        with:
          who: docker
"##,
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    assert!(
        out.logs("j")
            .contains(&"hello docker env=docker".to_owned()),
        "{:?}",
        out.logs("j")
    );
}

/// Containers and networks labelled with `run_id` (any state).
async fn labelled(docker_host: &str, run_id: &str) -> (Vec<String>, Vec<String>) {
    use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
    let path = docker_host.strip_prefix("unix://").unwrap_or(docker_host);
    let docker = bollard::Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
        .expect("test dockerd socket")
        .negotiate_version()
        .await
        .expect("test dockerd answers");
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={run_id}", runner::executor::docker::LABEL_RUN)],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .expect("containers")
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .expect("networks")
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    (containers, networks)
}

#[tokio::test]
async fn a_cancelled_run_leaves_no_container_or_network_of_its_run() {
    let docker_host = test_support::docker_host();
    let image = test_support::busybox_image();
    let f = Fixture::new();
    let mut o = f.options();
    o.docker_host = Some(docker_host.clone());
    o.platforms = vec![
        (
            "ubuntu-latest".into(),
            Platform::Docker {
                image: image.clone(),
            },
        ),
        ("self-hosted".into(), Platform::Host),
    ];
    // Every docker object of the run carries one id, which the caller can compute.
    let run_id = runner::executor::docker::run_id_for(&o.work_root);
    let yaml = format!(
        r##"
on: push
jobs:
  in-container:
    runs-on: ubuntu-latest
    steps:
      - run: echo started; sleep 120
      - if: always()
        run: echo cleanup step
  on-host:
    runs-on: self-hosted
    steps:
      - uses: docker://{image}
        with:
          entrypoint: sleep
          args: "120"
"##
    );
    let plan = common::plan(&yaml, &o);
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let tuning = runner::RunTuning {
        kill_grace: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let run = tokio::spawn(runner::run_tuned(vec![plan], o, tuning, tx, cancel.clone()));
    // Both jobs' first steps run: the job container's step printed, the step container exists.
    let mut started = false;
    while !started {
        match tokio::time::timeout(std::time::Duration::from_secs(120), rx.recv()).await {
            Ok(Some(runner::Event::Log { job, lines, .. })) if job == "in-container" => {
                started = lines.iter().any(|l| l == "started");
            }
            Ok(Some(_)) => {}
            other => panic!("the container job did not start: {other:?}"),
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (containers, networks) = labelled(&docker_host, &run_id).await;
        if containers.len() >= 2 && !networks.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run's objects are not labelled with its id: {containers:?} {networks:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    cancel.cancel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let summary = run.await.expect("run task").expect("run");
    drain.await.expect("drain");
    assert!(
        summary
            .jobs
            .iter()
            .all(|j| j.result == JobResult::Cancelled),
        "{:?}",
        summary.jobs
    );
    let (containers, networks) = labelled(&docker_host, &run_id).await;
    assert!(
        containers.is_empty() && networks.is_empty(),
        "left behind: {containers:?} {networks:?}"
    );
}
