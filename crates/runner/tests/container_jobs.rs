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
