//! Snapshot tests for `parse` + `compile`: each test is one workflow and the rendered
//! result (diagnostics, or a compact plan summary). Review with `cargo insta review`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{check, check_files};
use insta::assert_snapshot;

// ----- valid workflows: the plan summary -----------------------------------------------

#[test]
fn minimal() {
    assert_snapshot!(check(
        "on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo hi
"
    ));
}

#[test]
fn full_syntax() {
    assert_snapshot!(check(
        r#"name: CI
run-name: Deploy by ${{ github.actor }}
on:
  push:
    branches: [main, 'release/**']
    tags-ignore: v0*
    paths: ['src/**']
  pull_request:
    types: [opened, synchronize]
    branches-ignore: [wip]
  workflow_dispatch:
    inputs:
      level:
        description: Log level
        required: true
        type: choice
        options: [info, debug]
        default: info
      dry:
        type: boolean
        default: false
  schedule:
    - cron: '0 3 * * *'
    - cron: '30 5 * * 1'
  issues:
    types: opened
env:
  A: 1
  B: true
  C: ~
  D: 1.50
  E: "${{ github.sha }}"
defaults:
  run:
    shell: bash
    working-directory: ./src
concurrency:
  group: ci-${{ github.ref }}
  cancel-in-progress: true
permissions: read-all
jobs:
  build:
    name: Build ${{ matrix.os }}
    runs-on: [self-hosted, "${{ matrix.os }}"]
    environment:
      name: staging
      url: https://staging.example.com
    container:
      image: node:20
      credentials:
        username: u
        password: ${{ secrets.PW }}
      env:
        NODE_ENV: test
      ports: [80, "8080:80"]
      volumes: [/tmp:/tmp]
      options: --cpus 1
    services:
      redis: redis:7
      db:
        image: postgres:16
        env:
          POSTGRES_PASSWORD: pw
    strategy:
      fail-fast: false
      max-parallel: 2
      matrix:
        os: [ubuntu-latest, debian]
        node: [18, 20]
        include:
          - os: debian
            experimental: true
        exclude:
          - os: debian
            node: 18
    outputs:
      digest: ${{ steps.img.outputs.digest }}
    env:
      JOB: "1"
    defaults:
      run:
        shell: sh
    timeout-minutes: 30
    continue-on-error: ${{ matrix.experimental }}
    concurrency: build-${{ matrix.os }}
    permissions:
      contents: read
      id-token: write
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - id: img
        name: Build image
        if: github.event_name == 'push'
        run: make image
        shell: bash
        working-directory: build
        env:
          X: ${{ matrix.node }}
        continue-on-error: true
        timeout-minutes: 5
      - uses: docker://alpine:3.20
        with:
          args: echo hi
          entrypoint: /bin/sh
      - uses: ./.github/actions/local
      - uses: org/repo/path/to/action@v1.2
  test:
    needs: build
    if: false
    runs-on: ubuntu-latest
    steps:
      - run: true
      - run: 42
"#
    ));
}

#[test]
fn on_forms() {
    assert_snapshot!(check_files(
        "workflow_run",
        &[(
            "wf.yml",
            "on:
  - push
  - workflow_run
jobs:
  a: {runs-on: x, steps: [{run: echo}]}
"
        )]
    ));
}

#[test]
fn on_workflow_run_filters() {
    assert_snapshot!(check_files(
        "workflow_run",
        &[(
            "wf.yml",
            "on:
  workflow_run:
    workflows: [CI]
    types: [completed]
    branches: [main]
  workflow_dispatch:
jobs:
  a: {runs-on: x, steps: [{run: echo}]}
"
        )]
    ));
}

#[test]
fn jobs_are_ordered_by_needs_ties_in_file_order() {
    assert_snapshot!(check(
        "on: push
jobs:
  deploy:
    needs: [test, package]
    runs-on: x
    steps: [{run: deploy}]
  test:
    needs: build
    runs-on: x
    steps: [{run: test}]
  lint:
    runs-on: x
    steps: [{run: lint}]
  package:
    needs: build
    runs-on: x
    steps: [{run: package}]
  build:
    runs-on: x
    steps: [{run: build}]
"
    ));
}

#[test]
fn runs_on_group_and_permissions_none() {
    assert_snapshot!(check(
        "on: push
permissions: {}
jobs:
  a:
    runs-on:
      group: big
      labels: [linux, x64]
    environment: production
    steps: [{run: echo}]
  b:
    runs-on: {group: only-group}
    permissions: write-all
    steps: [{run: echo}]
"
    ));
}

#[test]
fn env_as_expression_and_matrix_as_expression() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    runs-on: x
    env: ${{ fromJSON(needs.setup.outputs.env) }}
    strategy:
      matrix: ${{ fromJSON(needs.setup.outputs.matrix) }}
    steps: [{run: echo}]
"
    ));
}

#[test]
fn yaml_anchors_are_expanded() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    runs-on: x
    env: &common
      A: a
    steps: [{run: echo}]
  b:
    runs-on: x
    env: *common
    steps: [{run: echo}]
"
    ));
}

#[test]
fn warns_about_unknown_event_close_to_a_known_one() {
    assert_snapshot!(check(
        "on: [push, pul_request, my_custom_event]
jobs:
  a: {runs-on: x, steps: [{run: echo}]}
"
    ));
}

#[test]
fn contexts_used_where_github_does_not_provide_them_are_warnings() {
    assert_snapshot!(check(
        r#"on:
  workflow_call:
    inputs:
      x:
        type: string
        default: ${{ env.X }}
    outputs:
      o:
        value: ${{ jobs.a.outputs.r }}
run-name: ${{ secrets.TOKEN }}
env:
  TOKEN: ${{ secrets.TOKEN }}
  BAD: ${{ steps.x.outputs.y }}
jobs:
  a:
    if: env.DEPLOY == 'true' && needs.setup.result == 'success'
    runs-on: ${{ matrix.os }}-${{ env.SUFFIX }}
    env:
      S: ${{ secrets.S }}
    outputs:
      r: ${{ steps.s.outputs.r }}
    strategy:
      matrix:
        os: ${{ fromJSON(vars.OSES) }}
        v: ['${{ matrix.os }}']
    container:
      image: ${{ secrets.IMAGE }}
      credentials:
        username: ${{ secrets.USER }}
        password: ${{ env.PASSWORD }}
      env:
        E: ${{ runner.os }}
    steps:
      - id: s
        if: secrets.TOKEN != ''
        run: echo ${{ secrets.TOKEN }} ${{ steps.s.outputs.r }} ${{ jobs.x }}
        env:
          T: ${{ secrets.TOKEN }}
  call:
    uses: ./.github/workflows/x.yml
    with:
      a: ${{ secrets.NOPE }}
    secrets:
      t: ${{ secrets.T }}
"#
    ));
}

// ----- errors -----------------------------------------------------------------------------

#[test]
fn malformed_yaml() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    runs-on: x
    steps:
      - run: echo
     bad: [1, 2
"
    ));
}

#[test]
fn unclosed_flow_sequence() {
    assert_snapshot!(check("on: [push\njobs: {}\n"));
}

#[test]
fn empty_file() {
    assert_snapshot!(check("# nothing here\n"));
}

#[test]
fn not_a_mapping() {
    assert_snapshot!(check("- on\n- jobs\n"));
}

#[test]
fn missing_on_and_jobs() {
    assert_snapshot!(check("name: nothing\n"));
}

#[test]
fn unknown_keys_with_did_you_mean() {
    assert_snapshot!(check(
        "on: push
enviroment:
  A: 1
jobs:
  build:
    runs_on: ubuntu-latest
    step:
      - run: echo
        shel: bash
        timeout_minutes: 3
    strategy:
      matrx: {}
      fail_fast: true
    frobnicate: 1
"
    ));
}

#[test]
fn wrong_types() {
    assert_snapshot!(check(
        "on: push
env: [A, B]
jobs:
  build:
    runs-on: ubuntu-latest
    needs: {a: b}
    timeout-minutes: soon
    continue-on-error: maybe
    steps:
      - run: [echo, hi]
        env: hello
      - uses: {name: x}
    outputs: [a]
  other: 3
"
    ));
}

#[test]
fn step_with_both_run_and_uses_or_neither() {
    assert_snapshot!(check(
        "on: push
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - name: Test
        run: echo
        uses: actions/checkout@v2
      - name: empty
      -
      - run: fine
"
    ));
}

#[test]
fn bad_uses_forms() {
    assert_snapshot!(check(
        "on: push
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout
      - uses: actions@v1
      - uses: actions/checkout@
      - uses: docker://
      - uses: ''
      - uses: owner/${{ matrix.repo }}@v1
      - uses: ../outside
      - uses: owner//path@v1
"
    ));
}

#[test]
fn expression_errors_point_inside_the_string() {
    assert_snapshot!(check(
        r#"on: push
run-name: ${{ github.actor ==  }}
env:
  PLAIN: value ${{ 1 + }} tail
  QUOTED: "x ${{ foo( }}"
  SINGLE: 'y ${{ a.b.( }}'
  UNCLOSED: ${{ github.sha
jobs:
  a:
    if: github.ref == 'main' &&
    runs-on: x
    steps:
      - run: |
          echo one
          echo ${{ steps..outputs }}
      - run: echo
        if: ${{ ) }}
        with:
          a: 1
"#
    ));
}

#[test]
fn needs_unknown_and_cycles() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    needs: [c]
    runs-on: x
    steps: [{run: echo}]
  b:
    needs: a
    runs-on: x
    steps: [{run: echo}]
  c:
    needs: [b, buld, nope]
    runs-on: x
    steps: [{run: echo}]
  self:
    needs: self
    runs-on: x
    steps: [{run: echo}]
  build:
    runs-on: x
    steps: [{run: echo}]
"
    ));
}

#[test]
fn duplicate_step_ids_and_invalid_ids() {
    assert_snapshot!(check(
        "on: push
jobs:
  1st:
    runs-on: x
    steps:
      - id: build
        run: a
      - id: test
        run: b
      - id: build
        run: c
      - id: has space
        run: d
  'my job':
    runs-on: x
    steps: [{run: e}]
"
    ));
}

#[test]
fn duplicate_keys() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    runs-on: x
    steps: [{run: one}]
  a:
    runs-on: y
    steps: [{run: two}]
"
    ));
}

#[test]
fn job_shape_errors() {
    assert_snapshot!(check(
        "on: push
jobs:
  nothing:
  no-steps:
    runs-on: x
  no-runs-on:
    steps: [{run: echo}]
  mixed:
    uses: ./.github/workflows/x.yml
    runs-on: x
    steps: [{run: echo}]
  with-without-uses:
    runs-on: x
    with: {a: 1}
    steps: [{run: echo}]
  run-step-with-with:
    runs-on: x
    steps:
      - run: echo
        with: {a: 1}
      - uses: ./action
        shell: bash
        working-directory: sub
"
    ));
}

#[test]
fn on_errors() {
    assert_snapshot!(check(
        "on:
  push:
    branches: [main]
    branches-ignore: [dev]
    types: [created]
  workflow_dispatch:
    inputs:
      kind:
        type: strin
        requird: true
      pick:
        type: choice
  workflow_call:
    outputs:
      out:
        description: no value
  schedule:
    - crom: '* * * * *'
jobs:
  a: {runs-on: x, steps: [{run: echo}]}
"
    ));
}

#[test]
fn permission_and_concurrency_errors() {
    assert_snapshot!(check(
        "on: push
permissions:
  content: read
  issues: admin
concurrency:
  cancel-in-progress: true
jobs:
  a:
    permissions: read-some
    runs-on: x
    steps: [{run: echo}]
"
    ));
}

#[test]
fn matrix_errors() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    runs-on: x
    strategy:
      matrix:
        os: ubuntu
        empty: []
        include: [1, {a: b}]
        exclude: nope
        ${{ matrix.key }}: [1]
    steps: [{run: echo}]
  b:
    runs-on: x
    strategy:
      matrix: just a string
    steps: [{run: echo}]
  c:
    runs-on: x
    strategy:
      matrix:
        node: ['${{ 1 + }}']
    steps: [{run: echo}]
"
    ));
}

#[test]
fn errors_in_flow_style_and_tabs_keep_columns() {
    assert_snapshot!(check(
        "on: push\njobs: {a: {runs-on: x, stepz: [], steps: [{run: echo, bogus: 1}]}}\n"
    ));
}

#[test]
fn schedule_cron_and_shell_checks() {
    assert_snapshot!(check(
        "on:
  schedule:
    - cron: '0 3 * * *'
    - cron: '*/15 9-17 * JAN-dec mon-FRI'
    - cron: '0 3 * *'
    - cron: '61 * * * *'
    - cron: '0 0 * * 8'
    - cron: '0 0 5-1 * *'
    - cron: '*/0 * * * *'
jobs:
  a:
    runs-on: x
    defaults:
      run:
        shell: bsh
    steps:
      - run: echo
        shell: python
      - run: echo
        shell: perl {0}
      - run: echo
        shell: fish
      - run: echo
        shell: ''
"
    ));
}

#[test]
fn matrix_with_no_values() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    runs-on: x
    strategy:
      matrix:
        exclude: [{os: x}]
    steps: [{run: echo}]
  b:
    runs-on: x
    strategy:
      matrix: {}
    steps: [{run: echo}]
  fine:
    runs-on: x
    strategy:
      matrix:
        include: ${{ fromJSON(needs.x.outputs.list) }}
    steps: [{run: echo}]
"
    ));
}

// ----- reusable workflows -------------------------------------------------------------------

const CALLEE: &str = "name: reusable
on:
  workflow_call:
    inputs:
      name:
        required: true
        type: string
      count:
        type: number
        default: 1
      flag:
        required: true
        type: boolean
        default: false
    outputs:
      result:
        value: ${{ jobs.work.outputs.r }}
    secrets:
      token:
        required: true
jobs:
  work:
    runs-on: x
    outputs:
      r: ${{ steps.s.outputs.r }}
    steps:
      - id: s
        run: echo r=1 >> $GITHUB_OUTPUT
";

#[test]
fn reusable_workflow_resolved() {
    assert_snapshot!(check_files(
        "push",
        &[
            (
                "ci.yml",
                "on: push
jobs:
  call:
    uses: ./.github/workflows/callee.yml
    with:
      name: x
      count: 2
    secrets:
      token: ${{ secrets.T }}
  inherit:
    needs: call
    if: always()
    strategy:
      matrix:
        n: [1, 2]
    uses: ./.github/workflows/callee.yml
    with:
      name: ${{ matrix.n }}
    secrets: inherit
  remote:
    uses: org/repo/.github/workflows/w.yml@v1
  after:
    needs: [call, remote]
    runs-on: x
    steps: [{run: 'echo ${{ needs.call.outputs.result }}'}]
"
            ),
            (".github/workflows/callee.yml", CALLEE),
        ]
    ));
}

#[test]
fn reusable_workflow_input_errors() {
    assert_snapshot!(check_files(
        "push",
        &[
            (
                "ci.yml",
                "on: push
jobs:
  call:
    uses: ./.github/workflows/callee.yml
    with:
      nmae: x
      colour: red
  missing:
    uses: ./.github/workflows/missing.yml
  not-callable:
    uses: ./.github/workflows/push-only.yml
"
            ),
            (".github/workflows/callee.yml", CALLEE),
            (
                ".github/workflows/push-only.yml",
                "on: push\njobs: {a: {runs-on: x, steps: [{run: echo}]}}\n"
            ),
        ]
    ));
}

#[test]
fn reusable_workflow_bad_references() {
    assert_snapshot!(check(
        "on: push
jobs:
  bad-ref:
    uses: org/repo/.github/workflows/w.yml
  not-a-file:
    uses: ./.github/workflows
  action-not-workflow:
    uses: actions/checkout@v4
  secrets-typo:
    uses: ./w.yml
    secrets: inherits
"
    ));
}

#[test]
fn workflow_dispatch_trigger_in_plan() {
    assert_snapshot!(check_files(
        "workflow_dispatch",
        &[(
            "wf.yml",
            "on:
  push:
  workflow_dispatch:
    inputs:
      level:
        description: Log level
        required: true
        type: choice
        options: [info, debug]
        default: info
      dry:
        type: boolean
        default: false
      env:
        type: environment
jobs:
  a:
    runs-on: x
    steps:
      - run: echo ${{ inputs.level }}
"
        )]
    ));
}

#[test]
fn multi_line_run_expression_error_points_at_its_line() {
    assert_snapshot!(check(
        "on: push
jobs:
  a:
    runs-on: x
    steps:
      - run: |
          echo one
            echo ${{ steps..outputs }}
          echo three
      - if: |
          always() &&
          (github.ref == 'x' ||)
        run: echo
"
    ));
}

#[test]
fn reusable_workflow_warnings_reach_the_plan() {
    assert_snapshot!(check_files(
        "push",
        &[
            ("ci.yml", "on: push\njobs:\n  a:\n    uses: ./w.yml\n"),
            (
                "w.yml",
                "on: workflow_call\njobs:\n  b:\n    runs-on: x\n    steps:\n      - run: echo\n        shell: fish\n"
            ),
        ]
    ));
}

#[test]
fn reusable_workflow_call_cycle() {
    assert_snapshot!(check_files(
        "push",
        &[
            ("ci.yml", "on: push\njobs:\n  a:\n    uses: ./one.yml\n"),
            (
                "one.yml",
                "on: workflow_call\njobs:\n  b:\n    uses: ./two.yml\n"
            ),
            (
                "two.yml",
                "on: workflow_call\njobs:\n  c:\n    uses: ./one.yml\n"
            ),
        ]
    ));
}

#[test]
fn reusable_workflow_with_errors_reports_them_in_its_file() {
    assert_snapshot!(check_files(
        "push",
        &[
            ("ci.yml", "on: push\njobs:\n  a:\n    uses: ./broken.yml\n"),
            (
                "broken.yml",
                "on: workflow_call\njobs:\n  b:\n    runs-on: x\n    steps:\n      - uses: nope\n"
            ),
        ]
    ));
}

#[test]
fn a_job_in_its_workflows_concurrency_group_is_a_warning() {
    assert_snapshot!(check(
        "on: push
concurrency: Deploy
jobs:
  deploy:
    runs-on: x
    concurrency: deploy
    steps: [{run: echo}]
  other:
    runs-on: x
    concurrency:
      group: ${{ github.ref }}
    steps: [{run: echo}]
"
    ));
}
