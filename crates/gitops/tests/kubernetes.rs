//! The kubernetes target against a fake Kubernetes API server: no API server can run on the
//! project's machines, so this axum app implements just the calls the agent makes
//! (server-side apply PATCH, list by label selector, DELETE) over an in-memory store, and
//! plays the Deployment controller by filling in `status` (the same approach as the deploy
//! crate's tests). Git is a real `git daemon`; kustomize is the real `kubectl kustomize`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use gitops::agent::{AppSpec, TargetSpec, Trigger};
use gitops::model::{HealthStatus, SyncStatus};
use gitops::target::kubernetes::KubeOptions;
use serde_json::{Value, json};
use test_support::git::GitDaemon;

#[derive(Default)]
struct Fake {
    /// collection path -> name -> object
    objects: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
    /// Mutating requests, in order.
    writes: Mutex<Vec<String>>,
}

fn not_found(what: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// (collection path, object name)
fn split(path: &str) -> (String, Option<String>) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if segs.first() == Some(&"api") { 2 } else { 3 };
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
    let (coll, name) = split(uri.path());
    let mut objects = fake.objects.lock().unwrap();
    match (method, name) {
        (Method::PATCH, Some(name)) => {
            assert_eq!(
                q.get("fieldManager").map(String::as_str),
                Some("slipway-gitops"),
                "{uri}"
            );
            fake.writes
                .lock()
                .unwrap()
                .push(format!("apply {coll}/{name}"));
            let mut obj: Value = serde_json::from_slice(&body).unwrap();
            let old = objects.get(&coll).and_then(|c| c.get(&name)).cloned();
            let generation = old
                .as_ref()
                .and_then(|o| o.pointer("/metadata/generation")?.as_i64())
                .unwrap_or(0)
                + 1;
            obj["metadata"]["generation"] = json!(generation);
            obj["metadata"]["uid"] = json!(format!("uid-{name}"));
            if obj["kind"] == "Deployment" {
                let want = obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                obj["status"] = json!({"observedGeneration": generation, "replicas": want, "updatedReplicas": want, "availableReplicas": want});
            }
            objects.entry(coll).or_default().insert(name, obj.clone());
            axum::Json(obj).into_response()
        }
        (Method::GET, None) => {
            let (k, v) = q
                .get("labelSelector")
                .and_then(|s| s.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .unwrap_or_default();
            // A cluster-wide list of a namespaced kind: every namespace's collection.
            let items: Vec<Value> = objects
                .iter()
                .filter(|(c, _)| {
                    **c == coll
                        || (c.ends_with(coll.rsplit('/').next().unwrap())
                            && c.starts_with(coll.rsplit_once('/').unwrap().0)
                            && !coll.contains("/namespaces/"))
                })
                .flat_map(|(_, c)| c.values())
                .filter(|o| k.is_empty() || o["metadata"]["labels"][&k] == v.as_str())
                .cloned()
                .collect();
            axum::Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})).into_response()
        }
        (Method::DELETE, Some(name)) => {
            fake.writes
                .lock()
                .unwrap()
                .push(format!("delete {coll}/{name}"));
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
                 users:\n- name: agent\n  user: {{token: not-checked}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: agent, namespace: shop}}\n\
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

    fn spec(&self, app: &str, repo: &str, path: &str) -> AppSpec {
        let mut s = AppSpec::new(
            app,
            repo,
            path,
            "main",
            TargetSpec::Kubernetes(KubeOptions {
                kubeconfig: Some(self.kubeconfig.path().join("config")),
                context: None,
                namespace: None,
            }),
        );
        s.interval = std::time::Duration::from_secs(3600);
        s
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: reg.example/team/web@sha256:00\n";
const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";
const CONFIG: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  greeting: hello\n";

#[tokio::test(flavor = "multi_thread")]
async fn sync_heal_prune_on_kubernetes() {
    let cluster = Cluster::start().await;
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    wt.write("k8s/deployment.yaml", DEPLOYMENT)
        .write("k8s/namespace.yaml", NAMESPACE)
        .write("k8s/config.yaml", CONFIG);
    let first = wt.commit("web");
    wt.push("main");
    let agent = start_agent(vec![cluster.spec("shop", &url, "k8s")]).await;
    let s = agent
        .wait("shop", "the first sync", |s| synced_at(s, &first))
        .await;
    // The namespace goes first although its file sorts last.
    let writes = cluster.fake.writes.lock().unwrap().clone();
    assert_eq!(writes[0], "apply api/v1/namespaces/shop", "{writes:?}");
    assert_eq!(s.record.resources.len(), 3);
    let dep = cluster
        .get("apis/apps/v1/namespaces/shop/deployments", "web")
        .unwrap();
    assert_eq!(dep["metadata"]["labels"]["slipway.gitops/app"], "shop");

    // A change by hand: OutOfSync, then reverted (self-heal).
    {
        let mut objs = cluster.fake.objects.lock().unwrap();
        let cm = objs
            .get_mut("api/v1/namespaces/shop/configmaps")
            .unwrap()
            .get_mut("web-config")
            .unwrap();
        cm["data"]["greeting"] = json!("hacked");
    }
    let s = agent.agent.reconcile("shop", Trigger::Poll).await.unwrap();
    assert_eq!(
        s.record.history.last().unwrap().changes,
        ["update configmap/shop/web-config (data.greeting)"]
    );
    assert_eq!(s.record.sync, SyncStatus::Synced);
    assert_eq!(
        cluster
            .get("api/v1/namespaces/shop/configmaps", "web-config")
            .unwrap()["data"]["greeting"],
        "hello"
    );

    // The config map leaves Git: pruned; nothing else is touched.
    std::fs::remove_file(wt.path().join("k8s/config.yaml")).unwrap();
    let second = wt.commit("no config");
    wt.push("main");
    agent.webhook().await;
    agent
        .wait("shop", "the prune", |s| synced_at(s, &second))
        .await;
    assert!(
        cluster
            .get("api/v1/namespaces/shop/configmaps", "web-config")
            .is_none()
    );
    assert!(
        cluster
            .get("apis/apps/v1/namespaces/shop/deployments", "web")
            .is_some()
    );
    let h = agent
        .agent
        .app_status("shop")
        .unwrap()
        .record
        .history
        .last()
        .unwrap()
        .clone();
    assert_eq!(h.changes, ["delete configmap/shop/web-config"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn kustomize_renders_images_and_drift_is_reported_without_self_heal() {
    test_support::require_command("kubectl", "kubernetes-client");
    let cluster = Cluster::start().await;
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    let digest = "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    wt.write("base/deployment.yaml", DEPLOYMENT).write(
        "base/kustomization.yaml",
        &format!("resources: [deployment.yaml]\nimages:\n- name: reg.example/team/web\n  digest: {digest}\n"),
    );
    let first = wt.commit("kustomized");
    wt.push("main");
    let mut spec = cluster.spec("kz", &url, "base");
    spec.self_heal = false;
    let agent = start_agent(vec![spec]).await;
    agent
        .wait("kz", "the first sync", |s| synced_at(s, &first))
        .await;
    let dep = cluster
        .get("apis/apps/v1/namespaces/shop/deployments", "web")
        .unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("reg.example/team/web@{digest}")
    );

    cluster
        .fake
        .objects
        .lock()
        .unwrap()
        .get_mut("apis/apps/v1/namespaces/shop/deployments")
        .unwrap()
        .remove("web");
    let s = agent.agent.reconcile("kz", Trigger::Poll).await.unwrap();
    assert_eq!(s.record.sync, SyncStatus::OutOfSync);
    assert_eq!(s.record.health, HealthStatus::Missing);
    assert!(
        s.record.message.contains("create deployment/shop/web"),
        "{}",
        s.record.message
    );
    assert!(
        cluster
            .get("apis/apps/v1/namespaces/shop/deployments", "web")
            .is_none(),
        "no self-heal: left as is"
    );
}
