//! Workflows run end to end on the host executor.

mod common;

use common::{Fixture, run};
use runner::{Event, JobResult, StepOutcome};

#[tokio::test]
async fn run_steps_env_and_default_variables() {
    let f = Fixture::new();
    let mut o = f.options();
    o.env.insert("FROM_CLI".into(), "cli".into());
    let out = run(
        r##"
on: push
env:
  WF: wf
  LEVEL: workflow
jobs:
  build:
    runs-on: ubuntu-latest
    env:
      LEVEL: job
    steps:
      - run: echo "hello $WF $LEVEL $FROM_CLI"
      - run: echo "step=$LEVEL"
        env:
          LEVEL: step
      - run: |
          echo "ci=$CI ws-ok=$([ "$GITHUB_WORKSPACE" = "$PWD" ] && echo yes) repo=$GITHUB_REPOSITORY job=$GITHUB_JOB os=$RUNNER_OS"
          test -f "$GITHUB_EVENT_PATH" && grep -q refs/heads/main "$GITHUB_EVENT_PATH" && echo event-ok
          echo "expr=${{ github.repository }} ${{ env.LEVEL }}"
      - run: print("python " + "works")
        shell: python
"##,
        o,
    )
    .await;
    assert_eq!(out.job("build"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("build");
    for want in [
        "hello wf job cli",
        "step=step",
        "ci=true ws-ok=yes repo=team/app job=build os=Linux",
        "event-ok",
        "expr=team/app job",
        "python works",
    ] {
        assert!(
            logs.iter().any(|l| l == want),
            "missing {want:?} in {logs:?}"
        );
    }
    assert!(out.summary.success);
}

#[tokio::test]
async fn env_files_including_heredoc_and_path() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: w
        run: |
          echo "ONE=1" >> "$GITHUB_ENV"
          { echo 'MULTI<<EOF'; echo 'line a'; echo 'k=v'; echo 'EOF'; } >> "$GITHUB_ENV"
          echo "out=value" >> "$GITHUB_OUTPUT"
          { echo 'big<<XX'; echo 'l1'; echo 'l2'; echo 'XX'; } >> "$GITHUB_OUTPUT"
          mkdir -p "$RUNNER_TEMP/bin"
          printf '#!/bin/sh\necho tool-ran\n' > "$RUNNER_TEMP/bin/mytool"
          chmod +x "$RUNNER_TEMP/bin/mytool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          echo "# Summary" >> "$GITHUB_STEP_SUMMARY"
      - run: |
          echo "one=$ONE"
          printf 'multi=%s|\n' "$MULTI"
          echo "k=${k:-unset}"
          mytool
          echo "outs=${{ steps.w.outputs.out }} ${{ steps.w.outputs.big == 'l1
          l2' }}"
      - run: echo "TWO=2" > "$GITHUB_ENV"
      - run: echo "one=$ONE two=$TWO ctx=${{ env.TWO }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j").join("\n");
    for want in [
        "one=1",
        "multi=line a\nk=v|",
        "k=unset",
        "tool-ran",
        "outs=value true",
        "one=1 two=2 ctx=2",
    ] {
        assert!(logs.contains(want), "missing {want:?} in {logs}");
    }
    assert!(out.events.iter().any(
        |e| matches!(e, Event::StepSummary { markdown, .. } if markdown.contains("# Summary"))
    ));
}

#[tokio::test]
async fn secrets_are_masked_also_when_split_across_writes() {
    let f = Fixture::new();
    let mut o = f.options();
    o.secrets.insert("TOKEN".into(), "hunter2-secret".into());
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo "plain ${{ secrets.TOKEN }} end"
          printf 'split hunter2'; sleep 0.1; printf -- '-secret done\n'
          echo "::add-mask::dynamic value"
          echo "see dynamic value here"
          echo "to stderr $SEC" >&2
        env:
          SEC: ${{ secrets.TOKEN }}
      - run: |
          echo "::add-mask::$(printf 'first\nsecond-line')"
          echo "first and second-line"
"##,
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.all_logs();
    assert!(!logs.contains("hunter2"), "{logs}");
    assert!(!logs.contains("dynamic value"), "{logs}");
    for want in [
        "plain *** end",
        "split *** done",
        "see *** here",
        "to stderr ***",
    ] {
        assert!(logs.contains(want), "missing {want:?} in {logs}");
    }
    assert!(!logs.contains("add-mask"), "{logs}");
}

#[tokio::test]
async fn workflow_commands_become_events() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: s
        run: |
          echo "::group::My group"
          echo inside
          echo "::endgroup::"
          echo "::error file=src/a.rs,line=3,col=5,title=T::bad%0Athing"
          echo "::warning::careful"
          echo "::debug::hidden"
          echo "::stop-commands::pause1"
          echo "::warning::not a command"
          echo "::pause1::"
          echo "::notice::back"
          echo "::set-output name=legacy::old"
          echo "::set-env name=X::y"
      - run: echo "legacy=${{ steps.s.outputs.legacy }} x=${X:-unset}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::GroupStarted { title, .. } if title == "My group"))
    );
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::GroupEnded { .. }))
    );
    assert!(out.events.iter().any(|e| matches!(e,
        Event::Annotation { level, message, file, line, col, .. }
        if level == "error" && message == "bad\nthing" && file.as_deref() == Some("src/a.rs") && *line == Some(3) && *col == Some(5))));
    let ann = out.annotations();
    assert!(ann.contains(&("warning".into(), "careful".into())));
    assert!(ann.contains(&("notice".into(), "back".into())));
    assert!(
        ann.iter()
            .any(|(l, m)| l == "error" && m.contains("`set-env` command is disabled"))
    );
    let logs = out.logs("j");
    assert!(
        logs.contains(&"::warning::not a command".to_owned()),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.contains("hidden")));
    assert!(logs.contains(&"legacy=old x=unset".to_owned()), "{logs:?}");
}

#[tokio::test]
async fn lines_of_one_write_keep_their_order_around_commands() {
    let f = Fixture::new();
    // One write: the runner reads it at once, yet `::add-mask::` applies only from its line
    // on and group events sit between the right lines.
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          printf 'before s3cr3tval\n::add-mask::s3cr3tval\nafter s3cr3tval\n::group::G\nin group\n\n::endgroup::\nlast\ncrlf\r\nbad \377 byte\n'
          printf 'err line\n' >&2
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    // How many lines one event carries depends on how the pipe was read (a loaded machine
    // may hand them over one by one), so compare the sequence line by line.
    let seen: Vec<String> = out
        .events
        .iter()
        .flat_map(|e| match e {
            Event::Log {
                stream: runner::LogStream::System,
                ..
            } => vec![],
            Event::Log { lines, stream, .. } => lines
                .iter()
                .map(|l| format!("{stream:?}: {l}"))
                .collect(),
            Event::GroupStarted { title, .. } => vec![format!("group {title}")],
            Event::GroupEnded { .. } => vec!["endgroup".into()],
            _ => vec![],
        })
        .collect();
    let stdout: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|s| !s.starts_with("Stderr"))
        .collect();
    assert_eq!(
        stdout,
        [
            "Stdout: before s3cr3tval",
            "Stdout: after ***",
            "group G",
            "Stdout: in group",
            "Stdout: ",
            "endgroup",
            "Stdout: last",
            "Stdout: crlf",
            "Stdout: bad \u{FFFD} byte"
        ],
        "{}",
        out.dump()
    );
    assert!(seen.contains(&"Stderr: err line".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn outputs_flow_across_needs_and_failures_skip_dependents() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    outputs:
      v: ${{ steps.s.outputs.v }}
    steps:
      - id: s
        run: echo "v=from-a" >> "$GITHUB_OUTPUT"
  b:
    needs: a
    runs-on: ubuntu-latest
    steps:
      - run: echo "got ${{ needs.a.outputs.v }} ${{ needs.a.result }}"
      - run: exit 3
  c:
    needs: b
    runs-on: ubuntu-latest
    steps:
      - run: echo never
  d:
    needs: [b]
    if: failure()
    runs-on: ubuntu-latest
    steps:
      - run: echo "b was ${{ needs.b.result }}"
  e:
    needs: [c]
    if: always()
    runs-on: ubuntu-latest
    steps:
      - run: echo "c was ${{ needs.c.result }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("a"), JobResult::Success);
    assert_eq!(out.job("b"), JobResult::Failure);
    assert_eq!(out.job("c"), JobResult::Skipped);
    assert_eq!(out.job("d"), JobResult::Success);
    assert_eq!(out.job("e"), JobResult::Success);
    assert_eq!(
        out.outputs("a").get("v").and_then(|v| v.as_str()),
        Some("from-a")
    );
    assert!(out.logs("b").contains(&"got from-a success".to_owned()));
    assert!(out.logs("d").contains(&"b was failure".to_owned()));
    assert!(out.logs("e").contains(&"c was skipped".to_owned()));
    assert!(!out.summary.success);
    let b = out.steps("b");
    assert_eq!(b[1].1, StepOutcome::Failure);
}

#[tokio::test]
async fn needs_outside_the_plan_come_from_the_options() {
    let f = Fixture::new();
    let mut options = f.options();
    options
        .secrets
        .insert("TOKEN".into(), "hunter2-secret".into());
    let outside = |result, outputs: serde_json::Value| runner::JobOutcome {
        result,
        outputs: outputs.as_object().cloned().unwrap_or_default(),
    };
    options.needs.insert(
        "build".into(),
        outside(JobResult::Success, serde_json::json!({"x": "42"})),
    );
    options.needs.insert(
        "lint".into(),
        outside(JobResult::Failure, serde_json::json!({})),
    );
    // The whole workflow compiles; the plan is then reduced to three jobs, as the agent does.
    let mut plan = common::plan(
        r##"
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo build
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: echo lint
  deploy:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "x=${{ needs.build.outputs.x }} build=${{ needs.build.result }}"
      - id: push
        run: |
          echo "digest=sha256:abc" >> "$GITHUB_OUTPUT"
          echo "token=${{ secrets.TOKEN }}" >> "$GITHUB_OUTPUT"
  gate:
    needs: lint
    runs-on: ubuntu-latest
    steps:
      - run: echo never
  report:
    needs: [build, lint]
    if: failure()
    runs-on: ubuntu-latest
    steps:
      - run: echo "lint=${{ needs.lint.result }} x=${{ needs.build.outputs.x }}"
"##,
        &options,
    );
    plan.jobs
        .retain(|j| ["deploy", "gate", "report"].contains(&j.id.as_str()));
    let out = common::run_plan(plan, options, Default::default()).await;
    assert_eq!(out.job("deploy"), JobResult::Success, "{}", out.dump());
    assert_eq!(out.job("gate"), JobResult::Skipped);
    assert_eq!(out.job("report"), JobResult::Success);
    assert!(
        out.logs("deploy")
            .contains(&"x=42 build=success".to_owned()),
        "{:?}",
        out.logs("deploy")
    );
    assert!(out.logs("report").contains(&"lint=failure x=42".to_owned()));
    assert!(out.logs("gate").is_empty());
    // The step's outputs are in its StepFinished event, masked.
    let outputs = out
        .events
        .iter()
        .find_map(|e| match e {
            Event::StepFinished {
                job,
                step: 1,
                outputs,
                ..
            } if job == "deploy" => Some(outputs.clone()),
            _ => None,
        })
        .expect("deploy's second step finished");
    assert_eq!(
        outputs.get("digest").map(String::as_str),
        Some("sha256:abc")
    );
    assert_eq!(outputs.get("token").map(String::as_str), Some("***"));
}

#[tokio::test]
async fn continue_on_error_outcome_vs_conclusion() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: bad
        run: exit 1
        continue-on-error: true
      - run: echo "outcome=${{ steps.bad.outcome }} conclusion=${{ steps.bad.conclusion }}"
      - id: skipped
        if: false
        run: echo no
      - run: echo "skipped=${{ steps.skipped.outcome }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    assert!(
        logs.contains(&"outcome=failure conclusion=success".to_owned()),
        "{logs:?}"
    );
    assert!(logs.contains(&"skipped=skipped".to_owned()), "{logs:?}");
    let steps = out.steps("j");
    assert_eq!(
        (steps[0].1, steps[0].2),
        (StepOutcome::Failure, StepOutcome::Success)
    );
    assert_eq!(steps[2].1, StepOutcome::Skipped);
}

#[tokio::test]
async fn failure_runs_only_failure_and_always_steps() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: exit 2
      - run: echo not-run
      - if: failure()
        run: echo on-failure
      - if: always()
        run: echo "always status=${{ job.status }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Failure);
    let logs = out.logs("j");
    assert!(!logs.contains(&"not-run".to_owned()));
    assert!(logs.contains(&"on-failure".to_owned()));
    assert!(
        logs.contains(&"always status=failure".to_owned()),
        "{logs:?}"
    );
    assert!(
        out.annotations()
            .iter()
            .any(|(_, m)| m.contains("exit code 2"))
    );
}

#[tokio::test]
async fn matrix_legs_and_fail_fast() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [linux]
        v: [1, 2]
        include:
          - os: linux
            v: 3
            extra: yes
    steps:
      - run: echo "leg ${{ matrix.os }} ${{ matrix.v }} ${{ matrix.extra }} ${{ strategy.job-total }}"
  ff:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        n: [fail, slow]
    steps:
      - run: |
          if [ "${{ matrix.n }}" = fail ]; then exit 1; fi
          sleep 600
"##,
        f.options(),
    )
    .await;
    assert_eq!(
        out.job("test (linux, 1)"),
        JobResult::Success,
        "{:?}",
        out.summary.jobs
    );
    assert_eq!(out.job("test (linux, 2)"), JobResult::Success);
    assert_eq!(out.job("test (linux, 3, yes)"), JobResult::Success);
    assert!(
        out.logs("test (linux, 3, yes)")
            .contains(&"leg linux 3 yes 3".to_owned())
    );
    assert_eq!(out.job("ff (fail)"), JobResult::Failure);
    assert_eq!(out.job("ff (slow)"), JobResult::Cancelled);
}

#[tokio::test]
async fn matrix_filter_and_max_parallel() {
    let f = Fixture::new();
    let mut o = f.options();
    o.matrix_filter.insert("v".into(), vec!["2".into()]);
    let out = run(
        r##"
on: push
jobs:
  t:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 1
      matrix:
        v: [1, 2, 3]
    steps:
      - run: echo "v=${{ matrix.v }}"
"##,
        o,
    )
    .await;
    assert_eq!(out.summary.jobs.len(), 1, "{:?}", out.summary.jobs);
    assert_eq!(out.job("t (2)"), JobResult::Success);
}

#[tokio::test]
async fn runs_on_without_mapping_is_skipped_with_a_warning() {
    let f = Fixture::new();
    let mut o = f.options();
    o.platforms = vec![("ubuntu-latest".into(), runner::Platform::Host)];
    let out = run(
        r##"
on: push
jobs:
  mapped:
    runs-on: ubuntu-latest
    steps:
      - run: echo ok
  unmapped:
    runs-on: windows-latest
    steps:
      - run: echo no
"##,
        o,
    )
    .await;
    assert_eq!(out.job("mapped"), JobResult::Success);
    assert_eq!(out.job("unmapped"), JobResult::Skipped);
    assert!(
        out.annotations()
            .iter()
            .any(|(l, m)| l == "warning" && m.contains("windows-latest"))
    );
    assert!(out.summary.success);
}

fn pids_of_group_alive(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(Result::ok)
    {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) {
            // Zombies have an empty cmdline, so a match is a live process.
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn step_timeout_kills_the_whole_process_group() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          sleep 1001 &
          sleep 1001
        timeout-minutes: 0.02
      - if: always()
        run: echo after
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Failure);
    assert!(
        out.annotations().iter().any(|(_, m)| m.contains("timeout")),
        "{:?}",
        out.annotations()
    );
    assert!(out.logs("j").contains(&"after".to_owned()));
    assert!(
        pids_of_group_alive("sleep 1001").is_empty(),
        "sleep 1001 still running"
    );
}

#[tokio::test]
async fn cancellation_runs_always_steps_and_kills_processes() {
    let f = Fixture::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let o = f.options();
    let plan = common::plan(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo started
          sleep 1002 &
          sleep 1002
      - run: echo skipped-normal
      - if: always()
        run: echo always-ran
      - if: cancelled()
        run: echo cancelled-ran
"##,
        &o,
    );
    let c2 = cancel.clone();
    let handle = tokio::spawn(async move { runner::run(vec![plan], o, tx, c2).await });
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        if matches!(&e, Event::Log { lines, .. } if lines.iter().any(|l| l == "started")) {
            cancel.cancel();
        }
        events.push(e);
    }
    let summary = handle.await.expect("join").expect("run");
    let out = common::Outcome { summary, events };
    assert_eq!(out.job("j"), JobResult::Cancelled, "{}", out.dump());
    let logs = out.logs("j");
    assert!(logs.contains(&"always-ran".to_owned()), "{logs:?}");
    assert!(logs.contains(&"cancelled-ran".to_owned()), "{logs:?}");
    assert!(!logs.contains(&"skipped-normal".to_owned()));
    assert!(pids_of_group_alive("sleep 1002").is_empty());
}

#[tokio::test]
async fn a_missing_shell_fails_the_step_with_a_message() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo hi
        shell: no-such-shell-xyz {0}
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Failure);
    assert!(
        out.annotations()
            .iter()
            .any(|(_, m)| m == "shell `no-such-shell-xyz` not found on PATH"),
        "{:?}",
        out.annotations()
    );
}

#[tokio::test]
async fn working_directory_and_defaults() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
defaults:
  run:
    shell: sh
jobs:
  j:
    runs-on: ubuntu-latest
    defaults:
      run:
        working-directory: sub
    steps:
      - run: pwd
        working-directory: .
      - run: mkdir -p sub
        working-directory: .
      - run: echo "in=$(basename "$PWD") bash=${BASH_VERSION:-no}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    assert!(logs.iter().any(|l| l == "in=sub bash=no"), "{logs:?}");
}

#[tokio::test]
async fn job_timeout_and_continue_on_error_job() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  slow:
    runs-on: ubuntu-latest
    timeout-minutes: 0.02
    continue-on-error: true
    steps:
      - run: sleep 1003
  after:
    needs: slow
    runs-on: ubuntu-latest
    steps:
      - run: echo "slow=${{ needs.slow.result }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("slow"), JobResult::Failure);
    assert_eq!(out.job("after"), JobResult::Success, "{}", out.dump());
    assert!(out.summary.success);
    assert!(pids_of_group_alive("sleep 1003").is_empty());
}

#[tokio::test]
async fn reusable_workflow_inputs_secrets_outputs() {
    let f = Fixture::new();
    f.write(
        ".github/workflows/callee.yml",
        r##"
on:
  workflow_call:
    inputs:
      flag:
        type: boolean
        default: false
      name:
        type: string
        required: true
    secrets:
      token:
        required: true
    outputs:
      result:
        value: ${{ jobs.inner.outputs.r }}
jobs:
  inner:
    runs-on: ubuntu-latest
    outputs:
      r: ${{ steps.s.outputs.r }}
    steps:
      - id: s
        run: |
          echo "flag=${{ inputs.flag }} is-bool=${{ inputs.flag == true }} name=${{ inputs.name }} tok=${{ secrets.token }}"
          echo "r=done-${{ inputs.name }}" >> "$GITHUB_OUTPUT"
"##,
    );
    let mut o = f.options();
    o.secrets.insert("MY".into(), "sekret".into());
    let out = run(
        r##"
on: push
jobs:
  call:
    uses: ./.github/workflows/callee.yml
    with:
      Flag: true  # input names are case-insensitive: this fills `flag`, over its default
      name: x
    secrets:
      token: ${{ secrets.MY }}
  use:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - run: echo "got ${{ needs.call.outputs.result }}"
"##,
        o,
    )
    .await;
    assert_eq!(
        out.job("call / inner"),
        JobResult::Success,
        "{}",
        out.dump()
    );
    assert_eq!(out.job("call"), JobResult::Success);
    assert!(
        out.logs("call / inner")
            .contains(&"flag=true is-bool=true name=x tok=***".to_owned()),
        "{:?}",
        out.logs("call / inner")
    );
    assert!(
        out.logs("use").contains(&"got done-x".to_owned()),
        "{}",
        out.dump()
    );
}

#[tokio::test]
async fn the_sandbox_lets_a_job_write_only_its_own_directories() {
    test_support::require_command("bwrap", "bubblewrap");
    let f = Fixture::new();
    let mut o = f.options();
    o.sandbox = true;
    let outside = f.dir.path().join("outside.txt");
    let out = run(
        &format!(
            r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo inside > ws.txt && cat ws.txt
          echo tmp > "$RUNNER_TEMP/t.txt" && cat "$RUNNER_TEMP/t.txt"
          if echo no > {outside} 2>/dev/null; then echo wrote-outside; else echo outside-denied; fi
"##,
            outside = outside.display()
        ),
        o,
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    for want in ["inside", "tmp", "outside-denied"] {
        assert!(
            logs.contains(&want.to_owned()),
            "missing {want} in {logs:?}"
        );
    }
    assert!(!outside.exists());
}

#[tokio::test]
async fn events_come_in_order() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo one
  m:
    needs: a
    runs-on: ubuntu-latest
    strategy:
      matrix:
        x: [1, 2]
    steps:
      - run: echo "x${{ matrix.x }}"
"##,
        f.options(),
    )
    .await;
    let kinds: Vec<String> = out
        .events
        .iter()
        .map(|e| match e {
            Event::RunStarted { jobs, .. } => format!("run_started {}", jobs.join(",")),
            Event::JobQueued { job, .. } => format!("queued {job}"),
            Event::JobStarted { job, .. } => format!("started {job}"),
            Event::JobFinished { job, .. } => format!("finished {job}"),
            Event::RunFinished { .. } => "run_finished".into(),
            _ => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(kinds[0], "run_started a,m");
    assert_eq!(kinds[1], "queued a");
    assert_eq!(kinds.last().map(String::as_str), Some("run_finished"));
    let pos = |s: &str| {
        kinds
            .iter()
            .position(|k| k == s)
            .unwrap_or_else(|| panic!("no {s} in {kinds:?}"))
    };
    assert!(pos("started a") < pos("finished a"));
    assert!(pos("finished a") < pos("queued m (1)"));
    assert!(pos("queued m (2)") < pos("finished m (2)"));
    // Step events of a job are bracketed by the job's start and finish.
    let a_step = out
        .events
        .iter()
        .position(|e| matches!(e, Event::StepStarted { job, .. } if job == "a"))
        .expect("step");
    let a_log = out
        .events
        .iter()
        .position(|e| matches!(e, Event::Log { job, lines, .. } if job == "a" && lines.iter().any(|l| l == "one")))
        .expect("log");
    let a_done = out
        .events
        .iter()
        .position(|e| matches!(e, Event::StepFinished { job, .. } if job == "a"))
        .expect("done");
    assert!(a_step < a_log && a_log < a_done);
}

#[tokio::test]
async fn hash_files_hashes_workspace_files() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo content > lock.txt
      - run: |
          echo "h=${{ hashFiles('**/lock.txt') }}"
          echo "none=${{ hashFiles('nothing/**') }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    let logs = out.logs("j");
    let h = logs
        .iter()
        .find_map(|l| l.strip_prefix("h="))
        .expect("hash line");
    assert_eq!(h.len(), 64, "{h}");
    assert!(logs.contains(&"none=".to_owned()), "{logs:?}");
}

#[tokio::test]
async fn a_skipped_need_skips_dependents_unless_their_if_says_otherwise() {
    let f = Fixture::new();
    let out = run(
        r##"
on: push
jobs:
  gate:
    if: false
    runs-on: ubuntu-latest
    steps:
      - run: echo no
  plain:
    needs: gate
    runs-on: ubuntu-latest
    steps:
      - run: echo no
  explicit-success:
    needs: gate
    if: success()
    runs-on: ubuntu-latest
    steps:
      - run: echo no
  always:
    needs: gate
    if: always()
    runs-on: ubuntu-latest
    steps:
      - run: echo "gate=${{ needs.gate.result }}"
"##,
        f.options(),
    )
    .await;
    assert_eq!(out.job("gate"), JobResult::Skipped);
    assert_eq!(out.job("plain"), JobResult::Skipped);
    assert_eq!(out.job("explicit-success"), JobResult::Skipped);
    assert_eq!(out.job("always"), JobResult::Success);
    assert!(out.logs("always").contains(&"gate=skipped".to_owned()));
    assert!(out.summary.success);
}
