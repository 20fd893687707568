//! `slipway/deploy-kubernetes` against a fake Kubernetes API server: no API server can run on
//! the project's machines, so this axum app implements just the calls the target makes
//! (server-side apply PATCH, GET, list by label selector, DELETE) over an in-memory store,
//! and plays the Deployment controller by filling in `status`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{Value, json};

#[derive(Default)]
struct Fake {
    /// collection path -> name -> object
    objects: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
    requests: Mutex<Vec<String>>,
    /// The "controller" never rolls Deployments out.
    stuck: AtomicBool,
}

fn not_found(what: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// (collection path, object name)
fn split(path: &str) -> (String, Option<String>) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if segs.first() == Some(&"api") { 2 } else { 3 }; // api/v1 | apis/g/v
    let plural_at = if segs.get(base) == Some(&"namespaces") && segs.len() > base + 2 {
        base + 2
    } else {
        base
    };
    (
        segs[..=plural_at.min(segs.len() - 1)].join("/"),
        segs.get(plural_at + 1).map(|s| s.to_string()),
    )
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    fake.requests
        .lock()
        .unwrap()
        .push(format!("{method} {}", uri));
    let (coll, name) = split(uri.path());
    let mut objects = fake.objects.lock().unwrap();
    match (method, name) {
        (Method::PATCH, Some(name)) => {
            assert_eq!(
                q.get("fieldManager").map(String::as_str),
                Some("slipway"),
                "{uri}"
            );
            assert_eq!(q.get("force").map(String::as_str), Some("true"), "{uri}");
            let mut obj: Value = serde_json::from_slice(&body).unwrap();
            let old = objects.get(&coll).and_then(|c| c.get(&name)).cloned();
            let generation = old
                .as_ref()
                .and_then(|o| o.pointer("/metadata/generation")?.as_i64())
                .unwrap_or(0);
            let changed = old
                .as_ref()
                .is_none_or(|o| o.get("spec") != obj.get("spec"));
            let generation = if changed { generation + 1 } else { generation };
            obj["metadata"]["generation"] = json!(generation);
            obj["metadata"]["resourceVersion"] = json!(generation.to_string());
            if obj["kind"] == "Deployment" {
                let want = obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                obj["status"] = if fake.stuck.load(Ordering::SeqCst) {
                    json!({"observedGeneration": generation, "replicas": want, "updatedReplicas": 0, "availableReplicas": 0})
                } else {
                    json!({"observedGeneration": generation, "replicas": want, "updatedReplicas": want, "availableReplicas": want, "readyReplicas": want})
                };
            }
            objects.entry(coll).or_default().insert(name, obj.clone());
            axum::Json(obj).into_response()
        }
        (Method::GET, Some(name)) => match objects.get(&coll).and_then(|c| c.get(&name)) {
            Some(o) => axum::Json(o.clone()).into_response(),
            None => not_found(&name),
        },
        (Method::GET, None) => {
            let (k, v) = q
                .get("labelSelector")
                .and_then(|s| s.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .unwrap_or_default();
            let items: Vec<Value> = objects
                .get(&coll)
                .map(|c| {
                    c.values()
                        .filter(|o| k.is_empty() || o["metadata"]["labels"][&k] == v.as_str())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            axum::Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})).into_response()
        }
        (Method::DELETE, Some(name)) => {
            match objects.get_mut(&coll).and_then(|c| c.remove(&name)) {
                Some(o) => axum::Json(o).into_response(),
                None => not_found(&name),
            }
        }
        _ => not_found(uri.path()),
    }
}

struct Cluster {
    fake: Arc<Fake>,
    kubeconfig: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let fake = Arc::new(Fake::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let kubeconfig = test_support::tempdir();
        std::fs::write(
            kubeconfig.path().join("config"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: 'http://{addr}'}}\n\
                 users:\n- name: ci\n  user: {{token: not-checked}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: ci, namespace: shop}}\n\
                 current-context: fake\n"
            ),
        )
        .unwrap();
        Cluster { fake, kubeconfig }
    }

    fn get(&self, coll: &str, name: &str) -> Option<Value> {
        self.fake
            .objects
            .lock()
            .unwrap()
            .get(coll)
            .and_then(|c| c.get(name))
            .cloned()
    }
}

const IMAGE: &str = "127.0.0.1:5000/team/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn manifests(dir: &std::path::Path, with_config: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("10-deployment.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: 127.0.0.1:5000/team/web:latest\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    let cm = dir.join("20-config.yaml");
    if with_config {
        std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  image: ${SLIPWAY_IMAGE}\n").unwrap();
    } else {
        let _ = std::fs::remove_file(&cm);
    }
}

async fn run(
    cluster: &Cluster,
    ws: &std::path::Path,
    extra: &[(&str, &str)],
) -> Result<indexmap::IndexMap<String, String>, String> {
    let mut pairs = vec![
        ("manifests", "k8s".to_string()),
        ("image", IMAGE.to_string()),
        ("name", "shop-web".to_string()),
        (
            "kubeconfig",
            cluster
                .kubeconfig
                .path()
                .join("config")
                .display()
                .to_string(),
        ),
    ];
    for (k, v) in extra {
        pairs.retain(|(kk, _)| kk != k);
        pairs.push((k, v.to_string()));
    }
    let lines = Lines::default();
    deploy::action::run("deploy-kubernetes", &inputs(&pairs), ws, &lines.sink())
        .await
        .map_err(|e| format!("{e}\n--- log:\n{}", lines.text()))
}

#[tokio::test]
async fn applies_with_the_digest_waits_for_rollout_and_prunes() {
    let cluster = Cluster::start().await;
    let ws = test_support::tempdir();
    manifests(&ws.path().join("k8s"), true);
    // An object of another owner in the same namespace: never pruned.
    cluster.fake.objects.lock().unwrap().entry("api/v1/namespaces/shop/configmaps".into()).or_default().insert(
        "unrelated".into(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": "shop", "labels": {"slipway.app": "other"}}}),
    );
    let out = run(&cluster, ws.path(), &[]).await.unwrap();
    assert_eq!(out["digest"], IMAGE.split_once('@').unwrap().1);
    assert_eq!(
        out["release"],
        "deployment/web,service/web,configmap/web-config"
    );
    let dep = cluster
        .get("apis/apps/v1/namespaces/shop/deployments", "web")
        .unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        IMAGE
    );
    assert_eq!(dep["metadata"]["labels"]["slipway.app"], "shop-web");
    assert_eq!(
        dep["metadata"]["namespace"], "shop",
        "the kubeconfig context's namespace"
    );
    let cm = cluster
        .get("api/v1/namespaces/shop/configmaps", "web-config")
        .unwrap();
    assert_eq!(cm["data"]["image"], IMAGE);
    assert!(
        cluster
            .get("api/v1/namespaces/shop/services", "web")
            .is_some()
    );
    assert!(
        cluster
            .fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("GET /apis/apps/v1/namespaces/shop/deployments/web"))
    );

    // The config map leaves the manifests: it is pruned; the other owner's is not.
    manifests(&ws.path().join("k8s"), false);
    let out = run(&cluster, ws.path(), &[]).await.unwrap();
    assert_eq!(out["pruned"], "configmap/web-config");
    assert!(
        cluster
            .get("api/v1/namespaces/shop/configmaps", "web-config")
            .is_none()
    );
    assert!(
        cluster
            .get("api/v1/namespaces/shop/configmaps", "unrelated")
            .is_some()
    );
    assert!(
        cluster
            .get("api/v1/namespaces/shop/services", "web")
            .is_some()
    );
}

#[tokio::test]
async fn a_rollout_that_never_finishes_fails_with_its_state() {
    let cluster = Cluster::start().await;
    cluster.fake.stuck.store(true, Ordering::SeqCst);
    let ws = test_support::tempdir();
    manifests(&ws.path().join("k8s"), false);
    let e = run(
        &cluster,
        ws.path(),
        &[("rollout-timeout", "1s"), ("namespace", "staging")],
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("rollout of deployment/web did not finish within 1s")
            && e.contains("0 of 2 replicas updated"),
        "{e}"
    );
    assert!(
        cluster
            .get("apis/apps/v1/namespaces/staging/deployments", "web")
            .is_some()
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_applied() {
    let cluster = Cluster::start().await;
    let ws = test_support::tempdir();
    manifests(&ws.path().join("k8s"), false);
    let e = run(
        &cluster,
        ws.path(),
        &[("image", "127.0.0.1:5000/team/web:v1")],
    )
    .await
    .unwrap_err();
    assert!(e.contains("not pinned by digest"), "{e}");
    std::fs::write(
        ws.path().join("k8s/30-bad.yaml"),
        "kind: Service\nmetadata: {name: x}\n",
    )
    .unwrap();
    let e = run(&cluster, ws.path(), &[]).await.unwrap_err();
    assert!(
        e.contains("30-bad.yaml: document 1: `apiVersion` is missing"),
        "{e}"
    );
    assert!(
        cluster.fake.requests.lock().unwrap().is_empty(),
        "nothing was sent"
    );
    std::fs::remove_file(ws.path().join("k8s/30-bad.yaml")).unwrap();
    let e = run(
        &cluster,
        ws.path(),
        &[("kubeconfig", "/nonexistent/config")],
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("loading the kubeconfig /nonexistent/config"),
        "{e}"
    );
}
