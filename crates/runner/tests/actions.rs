//! Actions on the host executor: composite, node (pre/post), remote fetch, built-ins.

mod common;

use common::{Fixture, run};
use runner::{Event, JobResult, StepOutcome};

fn git(dir: &std::path::Path, args: &[&str]) {
    let st = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git");
    assert!(st.success(), "git {args:?}");
}

#[tokio::test]
async fn composite_actions_nested_with_inputs_outputs_and_env_rules() {
    let f = Fixture::new();
    f.write(
        "actions/outer/action.yml",
        r##"
name: outer
inputs:
  who:
    description: who
    default: world
outputs:
  greeting:
    value: ${{ steps.inner.outputs.msg }}
runs:
  using: composite
  steps:
    - run: echo "outer who=${{ inputs.who }} env=$INPUT_WHO caller=$CALLER"
      shell: bash
    - id: inner
      uses: ./actions/inner
      with:
        name: ${{ inputs.who }}
    - run: echo "LEAK=$STEP_ONLY" >> "$GITHUB_ENV"
      shell: bash
      env:
        STEP_ONLY: inner-step
    - run: echo "after leak=$STEP_ONLY path=${{ github.action_path }}"
      shell: bash
"##,
    );
    f.write(
        "actions/inner/action.yml",
        r##"
name: inner
inputs:
  name:
    required: true
outputs:
  msg:
    value: hello-${{ inputs.name }}
runs:
  using: composite
  steps:
    - run: echo "inner name=${{ inputs.name }}"
      shell: sh
"##,
    );
    f.write(
        "actions/failing/action.yml",
        r##"
name: failing
runs:
  using: composite
  steps:
    - run: exit 1
      shell: bash
    - run: echo not-reached
      shell: bash
    - if: failure()
      run: echo inner-failure-handler
      shell: bash
"##,
    );
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: o
        uses: ./actions/outer
        with:
          who: you
        env:
          CALLER: caller-env
      - run: echo "greeting=${{ steps.o.outputs.greeting }} leak=$LEAK caller=${CALLER:-unset}"
      - id: f
        uses: ./actions/failing
        continue-on-error: true
      - run: echo "failing=${{ steps.f.outcome }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    for want in [
        "outer who=you env=you caller=caller-env",
        "inner name=you",
        "after leak= path=",
        "greeting=hello-you leak=inner-step caller=unset",
        "inner-failure-handler",
        "failing=failure",
    ] {
        assert!(
            logs.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in {logs:?}"
        );
    }
    assert!(!logs.iter().any(|l| l == "not-reached"));
}

#[tokio::test]
async fn a_missing_local_action_fails_the_step() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: ./path/to/nothing
      - if: always()
        run: echo still-here
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Failure);
    assert!(
        out.annotations()
            .iter()
            .any(|(_, m)| m.contains("can't find action `./path/to/nothing`")),
        "{:?}",
        out.annotations()
    );
    assert!(out.logs("j").contains(&"still-here".to_owned()));
}

#[tokio::test]
async fn remote_node_action_with_pre_and_post_from_a_git_server_then_the_cache() {
    let f = Fixture::new();
    let remotes = f.dir.path().join("remotes");
    let repo = remotes.join("acme/hello");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(
        repo.join("action.yml"),
        r##"
name: hello
inputs:
  who:
    default: node
outputs:
  said:
    description: what
runs:
  using: node20
  pre: pre.js
  main: main.js
  post: post.js
"##,
    )
    .expect("write");
    std::fs::write(repo.join("pre.js"), "const fs=require('fs');console.log('pre ran');fs.appendFileSync(process.env.GITHUB_STATE, 'fromPre=yes\\n');\n").expect("write");
    std::fs::write(
        repo.join("main.js"),
        "const fs=require('fs');console.log('main who=' + process.env.INPUT_WHO + ' state=' + process.env.STATE_fromPre + ' repo=' + process.env.GITHUB_ACTION_REPOSITORY + '@' + process.env.GITHUB_ACTION_REF);\
         fs.appendFileSync(process.env.GITHUB_OUTPUT, 'said=hi ' + process.env.INPUT_WHO + '\\n');\
         fs.appendFileSync(process.env.GITHUB_STATE, 'fromMain=m\\n');\n",
    )
    .expect("write");
    std::fs::write(
        repo.join("post.js"),
        "console.log('post ran state=' + process.env.STATE_fromMain);\n",
    )
    .expect("write");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "v1"]);
    git(&repo, &["tag", "v1"]);
    let yaml = r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo first
      - id: h
        uses: acme/hello@v1
        with:
          who: tester
      - run: echo "said=${{ steps.h.outputs.said }}"
"##;
    let mut o = f.options();
    o.actions_url = format!("file://{}", remotes.display());
    let out = run(yaml, o.clone()).await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    let pos = |s: &str| {
        logs.iter()
            .position(|l| l.starts_with(s))
            .unwrap_or_else(|| panic!("no {s:?} in {logs:?}"))
    };
    assert!(pos("pre ran") < pos("first"));
    assert!(pos("first") < pos("main who=tester state=yes repo=acme/hello@v1"));
    assert!(pos("said=hi tester") < pos("post ran state=m"));
    // Offline: the remote is gone, the cache serves it.
    std::fs::remove_dir_all(&remotes).expect("rm");
    let out = run(yaml, o).await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
}

#[tokio::test]
async fn a_remote_action_that_cannot_be_fetched_fails_the_step() {
    let f = Fixture::new();
    let mut o = f.options();
    o.actions_url = format!("file://{}/nowhere", f.dir.path().display());
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: acme/missing@v1
"##,
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Failure);
    assert!(
        out.annotations()
            .iter()
            .any(|(_, m)| m.contains("fetching action `acme/missing@v1`")),
        "{:?}",
        out.annotations()
    );
}

#[tokio::test]
async fn checkout_copies_tracked_and_unignored_files() {
    let f = Fixture::new();
    f.write("src/main.rs", "fn main() {}\n");
    f.write(".gitignore", "target/\n");
    f.write("target/big.bin", "ignored");
    git(&f.repo(), &["init", "-q"]);
    git(&f.repo(), &["add", "src/main.rs", ".gitignore"]);
    git(&f.repo(), &["commit", "-qm", "init"]);
    f.write("untracked.txt", "new");
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: |
          test -f src/main.rs && echo has-main
          test -f untracked.txt && echo has-untracked
          test -e target/big.bin || echo no-target
      - uses: actions/checkout@v4
        with:
          path: sub
      - run: test -f sub/src/main.rs && echo has-sub
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    for want in ["has-main", "has-untracked", "no-target", "has-sub"] {
        assert!(
            logs.contains(&want.to_owned()),
            "missing {want} in {logs:?}"
        );
    }
}

#[tokio::test]
async fn artifacts_round_trip_between_jobs_and_stay_in_artifact_dir() {
    let f = Fixture::new();
    let mut o = f.options();
    let keep = f.dir.path().join("kept-artifacts");
    o.artifact_dir = Some(keep.clone());
    let out = run(
        r##"
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p dist/sub
          echo binary > dist/app
          echo doc > dist/sub/readme.md
          echo log > dist/debug.log
      - id: up
        uses: actions/upload-artifact@v4
        with:
          name: dist
          path: |
            dist/
            !dist/*.log
      - uses: actions/upload-artifact@v4
        with:
          name: empty
          path: nothing-here/
          if-no-files-found: warn
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: dist
          path: got
      - run: |
          cat got/app got/sub/readme.md
          test -e got/debug.log || echo no-log
      - id: missing
        uses: actions/download-artifact@v4
        continue-on-error: true
        with:
          name: not-there
      - run: echo "missing=${{ steps.missing.outcome }}"
"##,
        o,
    )
    .await;
    assert_eq!(out.job("build"), JobResult::Success, "{}", out.dump());
    assert_eq!(out.job("test"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("test");
    for want in ["binary", "doc", "no-log", "missing=failure"] {
        assert!(
            logs.contains(&want.to_owned()),
            "missing {want} in {logs:?}"
        );
    }
    assert!(
        out.annotations()
            .iter()
            .any(|(l, m)| l == "warning" && m.contains("No files were found"))
    );
    assert!(keep.join("dist/manifest.json").is_file());
}

#[tokio::test]
async fn cache_misses_then_hits_and_restore_keys_match_prefixes() {
    let f = Fixture::new();
    let o = f.options();
    let wf = |key: &str| {
        format!(
            r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: c
        uses: actions/cache@v4
        with:
          path: deps
          key: {key}
          restore-keys: |
            deps-
      - run: |
          echo "hit=${{{{ steps.c.outputs.cache-hit }}}}"
          if [ -f deps/lib.txt ]; then cat deps/lib.txt; else mkdir -p deps && echo built-{key} > deps/lib.txt; fi
"##
        )
    };
    let first = run(&wf("deps-1"), o.clone()).await;
    assert_eq!(first.job("j"), JobResult::Success, "{}", first.dump());
    assert!(first.logs("j").contains(&"hit=false".to_owned()));
    assert!(
        first
            .steps("j")
            .iter()
            .any(|(n, o, _)| n.starts_with("Post") && *o == StepOutcome::Success),
        "{:?}",
        first.steps("j")
    );
    let second = run(&wf("deps-1"), o.clone()).await;
    let logs = second.logs("j");
    assert!(logs.contains(&"hit=true".to_owned()), "{logs:?}");
    assert!(logs.contains(&"built-deps-1".to_owned()), "{logs:?}");
    assert!(
        !second
            .steps("j")
            .iter()
            .any(|(n, _, _)| n.starts_with("Post"))
    );
    let third = run(&wf("deps-2"), o).await;
    let logs = third.logs("j");
    assert!(logs.contains(&"hit=false".to_owned()), "{logs:?}");
    assert!(
        logs.contains(&"built-deps-1".to_owned()),
        "restored via restore-keys: {logs:?}"
    );
    let _ = Event::RunFinished { success: true };
}

#[tokio::test]
async fn build_push_action_builds_with_the_native_builder() {
    let f = Fixture::new();
    let layout = f.dir.path().join("image-layout");
    let out = run(
        &format!(
            r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo hello > hello.txt
          printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' > Dockerfile
      - id: b
        uses: docker/build-push-action@v6
        with:
          context: .
          tags: example.test/app:1
          outputs: type=oci,dest={dest}
      - run: echo "digest=${{{{ steps.b.outputs.digest }}}}"
"##,
            dest = layout.display()
        ),
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let digest = out
        .logs("j")
        .iter()
        .find_map(|l| l.strip_prefix("digest=").map(str::to_owned))
        .expect("digest line");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(layout.exists(), "the OCI output was written");
}

#[tokio::test]
async fn checkout_of_another_repository_fetches_it_from_the_base_url() {
    let f = Fixture::new();
    let remotes = f.dir.path().join("remotes");
    let other = remotes.join("acme/lib");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("lib.txt"), "library").expect("write");
    git(&other, &["init", "-q"]);
    git(&other, &["add", "."]);
    git(&other, &["commit", "-qm", "lib"]);
    let mut o = f.options();
    o.actions_url = format!("file://{}", remotes.display());
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          repository: acme/lib
          ref: main
          path: vendor/lib
      - run: cat vendor/lib/lib.txt
      - id: escape
        continue-on-error: true
        uses: actions/checkout@v4
        with:
          path: ../outside
      - run: echo "escape=${{ steps.escape.outcome }}"
"##,
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    assert!(logs.contains(&"library".to_owned()), "{logs:?}");
    assert!(logs.contains(&"escape=failure".to_owned()), "{logs:?}");
}
