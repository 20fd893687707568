//! Docker actions whose `runs.image` is a Dockerfile, built in the real dockerd that
//! `scripts/services` starts (offline: the Dockerfiles start `FROM` the local busybox image).

mod common;

use common::{Fixture, run};
use runner::executor::docker::build::{context_tar, image_tag};
use runner::{JobResult, Platform, StepOutcome};

/// Writes `my-action` (a Dockerfile action whose entrypoint echoes its input and sets an
/// output) into the fixture's repository and returns its directory.
fn my_action(f: &Fixture, marker: &str) -> std::path::PathBuf {
    let image = test_support::busybox_image();
    f.write(
        "my-action/action.yml",
        r##"
name: my action
inputs:
  who:
    required: true
outputs:
  greeting:
    description: what it said
runs:
  using: docker
  image: Dockerfile
  args:
    - ${{ inputs.who }}
"##,
    );
    f.write(
        "my-action/Dockerfile",
        &format!("FROM {image}\nCOPY entrypoint.sh /entrypoint.sh\nENTRYPOINT [\"sh\", \"/entrypoint.sh\"]\n"),
    );
    let script = f.write(
        "my-action/entrypoint.sh",
        &format!(
            "echo \"built action ({marker}) greets $1 env=$INPUT_WHO\"\necho \"greeting=hello $1\" >> \"$GITHUB_OUTPUT\"\n"
        ),
    );
    script.parent().expect("action dir").to_path_buf()
}

const WORKFLOW: &str = r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    outputs:
      g: ${{ steps.a.outputs.greeting }}
      g2: ${{ steps.b.outputs.greeting }}
    steps:
      - id: a
        uses: ./my-action
        with:
          who: docker
      - id: b
        uses: ./my-action
        with:
          who: again
"##;

async fn engine() -> bollard::Docker {
    let host = test_support::docker_host();
    let path = host.strip_prefix("unix://").unwrap_or(&host).to_owned();
    bollard::Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION)
        .expect("test dockerd socket")
        .negotiate_version()
        .await
        .expect("test dockerd answers")
}

fn assert_ran(out: &common::Outcome, marker: &str) {
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    for who in ["docker", "again"] {
        let line = format!("built action ({marker}) greets {who} env={who}");
        assert!(logs.contains(&line), "{line} not in {logs:?}");
    }
    let outputs = out.outputs("j");
    assert_eq!(
        outputs.get("g").and_then(|v| v.as_str()),
        Some("hello docker"),
        "{}",
        out.dump()
    );
    assert_eq!(
        outputs.get("g2").and_then(|v| v.as_str()),
        Some("hello again"),
        "{}",
        out.dump()
    );
}

#[tokio::test]
async fn a_dockerfile_action_is_built_once_and_run_on_the_docker_executor() {
    let docker = test_support::docker_host();
    let image = test_support::busybox_image();
    let f = Fixture::new();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = my_action(&f, &marker);
    let tag = image_tag(&dir, "Dockerfile", &context_tar(&dir).expect("context"));
    let mut o = f.options();
    o.docker_host = Some(docker);
    o.platforms = vec![("ubuntu-latest".into(), Platform::Docker { image })];
    let out = run(WORKFLOW, o).await;
    assert_ran(&out, &marker);
    // Built under the content tag, which the second step reused.
    let engine = engine().await;
    let built = engine
        .inspect_image(&tag)
        .await
        .expect("the action image is tagged");
    assert!(tag.starts_with("slipway-action/my-action:"), "{tag}");
    // The same content gives the same tag: running again reuses the image (same id).
    let mut o = f.options();
    o.docker_host = Some(test_support::docker_host());
    o.platforms = vec![(
        "ubuntu-latest".into(),
        Platform::Docker {
            image: test_support::busybox_image(),
        },
    )];
    let again = run(WORKFLOW, o).await;
    assert_ran(&again, &marker);
    let reused = engine.inspect_image(&tag).await.expect("still tagged");
    assert_eq!(built.id, reused.id);
}

#[tokio::test]
async fn a_dockerfile_action_on_the_host_executor_is_built_in_the_engine() {
    let f = Fixture::new();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    my_action(&f, &marker);
    let mut o = f.options();
    o.docker_host = Some(test_support::docker_host());
    let out = run(WORKFLOW, o).await;
    assert_ran(&out, &marker);
}

#[tokio::test]
async fn a_broken_dockerfile_fails_the_step_naming_the_action_and_the_engine_error() {
    let image = test_support::busybox_image();
    let f = Fixture::new();
    f.write(
        "broken-action/action.yml",
        "name: broken\nruns:\n  using: docker\n  image: docker/Dockerfile\n",
    );
    f.write(
        "broken-action/docker/Dockerfile",
        &format!("FROM {image}\nFROBNICATE the image\n"),
    );
    let mut o = f.options();
    o.docker_host = Some(test_support::docker_host());
    o.platforms = vec![("ubuntu-latest".into(), Platform::Docker { image })];
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: ./broken-action
      - run: echo not reached
"##,
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Failure, "{}", out.dump());
    let steps = out.steps("j");
    assert_eq!(steps[0].1, StepOutcome::Failure, "{steps:?}");
    let errors: Vec<String> = out
        .annotations()
        .into_iter()
        .filter(|(level, _)| level == "error")
        .map(|(_, m)| m)
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("broken-action")
            && e.contains("building the image")
            && e.to_lowercase().contains("unknown instruction")),
        "{errors:?}\n{}",
        out.dump()
    );
    assert!(
        !out.logs("j").contains(&"not reached".to_owned()),
        "{}",
        out.dump()
    );
}

#[tokio::test]
async fn a_dockerfile_outside_the_action_is_rejected() {
    let f = Fixture::new();
    f.write(
        "escape/action.yml",
        "name: escape\nruns:\n  using: docker\n  image: ../Dockerfile\n",
    );
    let mut o = f.options();
    o.docker_host = Some(test_support::docker_host());
    let out = run(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./escape\n",
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Failure, "{}", out.dump());
    let all = format!("{:?}", out.annotations());
    assert!(
        all.contains("../Dockerfile") && all.contains("inside the action's directory"),
        "{all}"
    );
}
