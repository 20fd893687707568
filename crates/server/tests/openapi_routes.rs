//! The OpenAPI document (`/api/v1/openapi.json`) matches the router: every `/api/v1/...` route
//! in the server's source (the agent protocol aside, which docs/server.md documents) is a path
//! of the document, and every documented path and method is really routed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// `{owner}` and `{name}` become `{}`, so parameter names don't matter.
fn normalise(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
    {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `pub const NAME: &str = "...";` of the protocol crate (routes named by `protocol::paths::NAME`).
fn protocol_paths() -> BTreeMap<String, String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/src/lib.rs");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub const ")
            && let Some((name, value)) = rest.split_once(": &str = \"")
            && let Some(value) = value.strip_suffix("\";")
        {
            out.insert(name.trim().to_owned(), value.to_owned());
        }
    }
    out
}

/// Every path given to `.route(` in `crates/server/src`, as (path, where).
fn routed_paths() -> Vec<(String, String)> {
    let consts = protocol_paths();
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for (at, _) in text.match_indices(".route(") {
            let line = text[..at].lines().count().max(1);
            let here = format!("{}:{line}", file.display());
            let arg = text[at + ".route(".len()..].trim_start();
            let path = if let Some(lit) = arg.strip_prefix('"') {
                lit.split('"').next().unwrap_or_default().to_owned()
            } else if let Some(name) = arg.strip_prefix("protocol::paths::") {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                consts.get(&name).cloned().unwrap_or_else(|| {
                    panic!("{here}: no `pub const {name}` in crates/protocol/src/lib.rs")
                })
            } else {
                panic!(
                    "{here}: `.route(` with a path this test cannot read (a string literal or protocol::paths::NAME): {}",
                    arg.lines().next().unwrap_or_default()
                )
            };
            out.push((path, here));
        }
    }
    out
}

fn api_routes() -> BTreeMap<String, String> {
    routed_paths()
        .into_iter()
        .filter(|(p, _)| p.starts_with("/api/v1/") && !p.starts_with("/api/v1/agent/"))
        .map(|(p, here)| (normalise(&p), here))
        .collect()
}

async fn document(server: &TestServer) -> Value {
    let resp = reqwest::get(format!("{}/api/v1/openapi.json", server.url))
        .await
        .expect("get openapi.json");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("the document is JSON")
}

#[test]
fn openapi_test_scan_sees_the_routes_of_every_module() {
    let routes = api_routes();
    for known in [
        "/api/v1/runs",                 // protocol::paths::RUNS
        "/api/v1/runs/{}/artifacts/{}", // artifacts.rs
        "/api/v1/deployments/rollback", // environments/deployments.rs
        "/api/v1/gitops/syncs",         // gitops_api.rs
        "/api/v1/openapi.json",         // lib.rs
    ] {
        assert!(
            routes.contains_key(known),
            "the source scan missed {known}; it found {routes:?}"
        );
    }
    assert!(routes.keys().all(|p| !p.starts_with("/api/v1/agent/")));
    assert_eq!(
        normalise("/api/v1/repositories/{owner}/{name}/secrets/{secret}"),
        "/api/v1/repositories/{}/{}/secrets/{}"
    );
}

#[tokio::test]
async fn openapi_documents_every_api_route_and_only_routed_ones() {
    let server = TestServer::start(ServerSetup {
        embedded_agent: false,
        ..ServerSetup::default()
    })
    .await;
    let doc = document(&server).await;
    let paths = doc["paths"].as_object().expect("the document has paths");
    let documented: BTreeMap<String, &str> =
        paths.keys().map(|p| (normalise(p), p.as_str())).collect();

    let routes = api_routes();
    let missing: Vec<String> = routes
        .iter()
        .filter(|(p, _)| !documented.contains_key(*p))
        .map(|(p, here)| format!("{p} (routed at {here})"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from crates/server/src/openapi.rs:\n{}",
        missing.join("\n")
    );
    let unrouted: Vec<&str> = documented
        .iter()
        .filter(|(p, _)| !routes.contains_key(*p))
        .map(|(_, p)| *p)
        .collect();
    assert!(
        unrouted.is_empty(),
        "documented but not found in any `.route(` of crates/server/src: {unrouted:?}"
    );

    // Every documented method of every path reaches a handler: axum answers a path it has no
    // route for with an empty 404 and a method it has none for with 405; handlers' 404s carry
    // a JSON error.
    let http = reqwest::Client::new();
    let mut wrong = Vec::new();
    for (path, item) in paths {
        let concrete: String = normalise(path).replace("{}", "1");
        for method in item.as_object().expect("a path item").keys() {
            let Ok(m) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head"
            ) {
                continue;
            }
            let resp = http
                .request(m, format!("{}{concrete}", server.url))
                .send()
                .await
                .expect("request");
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            let handled = match status.as_u16() {
                405 => false,
                404 => serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string()),
                _ => true,
            };
            if !handled {
                wrong.push(format!(
                    "{} {path} (as {concrete}): {status} {body:?}",
                    method.to_uppercase()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "documented operations the router does not serve:\n{}",
        wrong.join("\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn openapi_schema_references_all_resolve() {
    let server = TestServer::start(ServerSetup {
        embedded_agent: false,
        ..ServerSetup::default()
    })
    .await;
    let doc = document(&server).await;
    fn refs<'a>(v: &'a Value, out: &mut BTreeSet<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.insert(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    assert!(all.contains("#/components/schemas/Deployment"), "{all:?}");
    let dangling: Vec<&str> = all
        .iter()
        .filter(|r| {
            r.strip_prefix("#/components/schemas/")
                .is_none_or(|name| doc["components"]["schemas"].get(name).is_none())
        })
        .copied()
        .collect();
    assert!(dangling.is_empty(), "$refs to no schema: {dangling:?}");
    server.stop().await;
}
