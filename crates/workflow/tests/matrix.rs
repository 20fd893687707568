//! `matrix::expand` and `matrix::filter`: each test is one matrix (YAML, as written under
//! `strategy.matrix`) and its legs, one JSON object per line (or the error).

#![allow(clippy::unwrap_used)]

use indexmap::IndexMap;
use serde_json::json;
use workflow::expr::MapContext;
use workflow::matrix::{Leg, expand, filter};
use workflow::parse;

/// The matrix of job `a` in a workflow built around `matrix_yaml` (indented as the value
/// of `matrix:`), expanded with a context holding `needs.setup.outputs`.
fn legs(matrix_yaml: &str) -> Result<Vec<Leg>, String> {
    let indented: String = matrix_yaml
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let source = format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n     matrix:\n{indented}    steps: [{{run: echo}}]\n"
    );
    let wf = parse(&source, "wf.yml").map_err(|d| d.to_string())?;
    let matrix = wf.jobs["a"]
        .strategy
        .as_ref()
        .and_then(|s| s.matrix.clone())
        .ok_or("no matrix")?;
    let mut ctx = MapContext::default();
    ctx.contexts.insert(
        "needs".into(),
        json!({"setup": {"outputs": {
            "matrix": r#"{"os": ["linux", "mac"], "include": [{"os": "mac", "arch": "arm"}]}"#,
            "list": r#"["a", "b", "c"]"#,
            "empty": "[]"
        }}}),
    );
    expand(&matrix, &ctx).map_err(|e| format!("error: {e}"))
}

fn render(r: Result<Vec<Leg>, String>) -> String {
    match r {
        Ok(legs) if legs.is_empty() => "(no legs)".to_owned(),
        Ok(legs) => legs
            .iter()
            .map(|l| serde_json::to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => e,
    }
}

fn check(matrix_yaml: &str) -> String {
    render(legs(matrix_yaml))
}

#[test]
fn product_in_key_order() {
    insta::assert_snapshot!(check("os: [linux, mac]\nnode: [18, 20]\nflag: [true]"));
}

#[test]
fn github_docs_include_example() {
    insta::assert_snapshot!(check(
        "fruit: [apple, pear]
animal: [cat, dog]
include:
  - color: green
  - color: pink
    animal: cat
  - fruit: apple
    shape: circle
  - fruit: banana
  - fruit: banana
    animal: cat"
    ));
}

#[test]
fn exclude_is_a_partial_match() {
    insta::assert_snapshot!(check(
        "os: [macos-latest, windows-latest]
version: [12, 14, 16]
environment: [staging, production]
exclude:
  - os: macos-latest
    version: 12
    environment: production
  - os: windows-latest
    version: 16"
    ));
}

#[test]
fn exclude_matches_nested_mappings_partially() {
    insta::assert_snapshot!(check(
        "cfg:
  - {os: linux, arch: x64}
  - {os: linux, arch: arm}
  - {os: mac, arch: arm}
exclude:
  - cfg: {arch: arm}"
    ));
}

#[test]
fn include_only() {
    insta::assert_snapshot!(check("include:\n  - name: a\n    x: 1\n  - name: b"));
}

#[test]
fn act_matrix_with_user_inclusions() {
    insta::assert_snapshot!(check(
        "os: [ubuntu-18.04, macos-latest]
node: [4, 6, 8, 10]
exclude:
  - os: macos-latest
    node: 4
include:
  - os: ubuntu-16.04
    node: 10"
    ));
}

#[test]
fn act_additional_properties() {
    insta::assert_snapshot!(check(
        "x: [0]\ny: [0]\nz: [0]\ninclude:\n  - def: val\n    z: 0"
    ));
}

#[test]
fn whole_matrix_from_json() {
    insta::assert_snapshot!(check(
        r#"|-
  ${{fromJson('
    {
      "A": [ "A", "B" ]
    }
  ')}}"#
    ));
}

#[test]
fn whole_matrix_from_needs() {
    insta::assert_snapshot!(check("${{ fromJSON(needs.setup.outputs.matrix) }}"));
}

#[test]
fn key_from_expression_and_values_as_expressions() {
    insta::assert_snapshot!(check(
        r#"letter: ${{ fromJSON(needs.setup.outputs.list) }}
num: ['${{ 1 }}', 'n${{ 3 }}', "${{ format('{0}-{1}', 'x', 2) }}"]"#
    ));
}

#[test]
fn array_entry_expression_is_flattened() {
    insta::assert_snapshot!(check(
        r#"a:
- env:
    key1: ${{'val'}}1
- ${{fromJSON('[{"env":{"key2":"val2"}},{"env":{"key3":"val3"}}]')}}"#
    ));
}

#[test]
fn insert_merges_a_mapping() {
    insta::assert_snapshot!(check(
        r#"a:
- env:
    key1: val1
    ${{insert}}:
       key2: val2
    ${{ insert }}: ${{fromJSON('{"key3":"val3"}')}}"#
    ));
}

#[test]
fn computed_values_are_not_evaluated_again() {
    insta::assert_snapshot!(check(r#"s: ["${{ '${{ github.sha }}' }}"]"#));
}

#[test]
fn everything_excluded_gives_no_legs() {
    insta::assert_snapshot!(check("os: [linux]\nexclude:\n  - os: linux"));
}

#[test]
fn empty_vector_from_expression_is_an_error() {
    insta::assert_snapshot!(check("os: ${{ fromJSON(needs.setup.outputs.empty) }}"));
}

#[test]
fn vector_that_is_not_a_list_is_an_error() {
    insta::assert_snapshot!(check("os: ${{ 'linux' }}"));
}

#[test]
fn matrix_expression_that_is_not_a_mapping_is_an_error() {
    insta::assert_snapshot!(check("${{ fromJSON(needs.setup.outputs.list) }}"));
}

#[test]
fn matrix_without_vectors_is_an_error() {
    insta::assert_snapshot!(check("exclude:\n  - os: linux"));
}

#[test]
fn evaluation_error_is_reported() {
    insta::assert_snapshot!(check("os: ${{ fromJSON('not json') }}"));
}

#[test]
fn runaway_products_are_refused() {
    let keys: String = (0..5)
        .map(|k| {
            format!(
                "k{k}: [{}]\n",
                (0..20)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    insta::assert_snapshot!(check(&keys));
}

#[test]
fn filter_keeps_legs_matching_every_filtered_key() {
    let all = legs(
        "os: [ubuntu-18.04, macos-latest]
node: [4, 6, 8, 10]
include:
  - os: ubuntu-16.04
    node: 10
  - extra: only",
    )
    .expect("expands");
    let mut f = IndexMap::new();
    f.insert("node".to_owned(), vec!["8".to_owned(), "8.x".to_owned()]);
    f.insert("os".to_owned(), vec!["ubuntu-18.04".to_owned()]);
    insta::assert_snapshot!(render(Ok(filter(all, &f))));
}

#[test]
fn empty_filter_keeps_everything() {
    let all = legs("os: [a, b]").expect("expands");
    assert_eq!(filter(all.clone(), &IndexMap::new()), all);
}
