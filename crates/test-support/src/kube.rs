//! A fake Kubernetes API server for the tests of the Kubernetes targets: no API server can run
//! on the project's machines, so this axum app implements just the calls the targets make
//! (server-side apply PATCH, GET of one object, list by label selector — also cluster-wide for
//! a namespaced kind — and DELETE) over an in-memory store, and plays the Deployment controller
//! by filling in `status`. [`Cluster::start`] also writes a kubeconfig pointing at it.
//!
//! Objects are keyed by their collection path without the leading slash
//! (`apis/apps/v1/namespaces/shop/deployments`) and their name.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

struct Fake {
    /// The `fieldManager` every apply must carry.
    field_manager: String,
    /// collection path -> name -> object
    objects: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
    /// Every request, in order: `METHOD uri`.
    requests: Mutex<Vec<String>>,
    /// Mutating requests, in order: `apply coll/name`, `delete coll/name`.
    writes: Mutex<Vec<String>>,
    /// The "controller" never rolls Deployments out.
    stuck: AtomicBool,
    /// The last resourceVersion / uid handed out.
    counter: AtomicU64,
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

/// Whether the stored collection `c` answers a list of `coll`: the same collection, or, for a
/// cluster-wide list (`apis/apps/v1/deployments`), that kind in any namespace.
fn lists(coll: &str, c: &str) -> bool {
    if c == coll {
        return true;
    }
    let Some((gv, plural)) = coll.rsplit_once('/') else {
        return false;
    };
    c.strip_prefix(gv)
        .and_then(|rest| rest.strip_prefix("/namespaces/"))
        .and_then(|rest| rest.strip_suffix(plural))
        .and_then(|ns| ns.strip_suffix('/'))
        .is_some_and(|ns| !ns.is_empty() && !ns.contains('/'))
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
        .push(format!("{method} {uri}"));
    let (coll, name) = split(uri.path());
    let mut objects = fake.objects.lock().unwrap();
    match (method, name) {
        (Method::PATCH, Some(name)) => {
            assert_eq!(
                q.get("fieldManager").map(String::as_str),
                Some(fake.field_manager.as_str()),
                "{uri}"
            );
            assert_eq!(q.get("force").map(String::as_str), Some("true"), "{uri}");
            fake.writes
                .lock()
                .unwrap()
                .push(format!("apply {coll}/{name}"));
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
            let version = fake.counter.fetch_add(1, Ordering::SeqCst) + 1;
            let uid = old
                .as_ref()
                .and_then(|o| o.pointer("/metadata/uid").cloned())
                .unwrap_or_else(|| json!(format!("uid-{version}")));
            obj["metadata"]["generation"] = json!(generation);
            obj["metadata"]["resourceVersion"] = json!(version.to_string());
            obj["metadata"]["uid"] = uid;
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
                .iter()
                .filter(|(c, _)| lists(&coll, c))
                .flat_map(|(_, c)| c.values())
                .filter(|o| k.is_empty() || o["metadata"]["labels"][&k] == v.as_str())
                .cloned()
                .collect();
            let version = fake.counter.load(Ordering::SeqCst).to_string();
            axum::Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": version}, "items": items})).into_response()
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

/// A running fake API server and a kubeconfig for it (context namespace `shop`).
pub struct Cluster {
    fake: Arc<Fake>,
    kubeconfig: tempfile::TempDir,
}

impl Cluster {
    /// Starts the server on a free loopback port (on the current tokio runtime). Every apply
    /// must carry `fieldManager=field_manager` and `force=true`. The kubeconfig's user is `test`.
    pub async fn start(field_manager: &str) -> Cluster {
        Cluster::start_as(field_manager, "test").await
    }

    /// [`Cluster::start`] with the kubeconfig user named `user`.
    pub async fn start_as(field_manager: &str, user: &str) -> Cluster {
        let fake = Arc::new(Fake {
            field_manager: field_manager.to_owned(),
            objects: Mutex::default(),
            requests: Mutex::default(),
            writes: Mutex::default(),
            stuck: AtomicBool::new(false),
            counter: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let kubeconfig = crate::tempdir();
        std::fs::write(
            kubeconfig.path().join("config"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: 'http://{addr}'}}\n\
                 users:\n- name: {user}\n  user: {{token: not-checked}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: {user}, namespace: shop}}\n\
                 current-context: fake\n"
            ),
        )
        .unwrap();
        Cluster { fake, kubeconfig }
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.path().join("config")
    }

    /// One stored object.
    pub fn get(&self, coll: &str, name: &str) -> Option<Value> {
        self.fake
            .objects
            .lock()
            .unwrap()
            .get(coll)
            .and_then(|c| c.get(name))
            .cloned()
    }

    /// Stores an object behind the API's back (another owner's, or a change by hand).
    pub fn insert(&self, coll: &str, name: &str, obj: Value) {
        self.fake
            .objects
            .lock()
            .unwrap()
            .entry(coll.to_owned())
            .or_default()
            .insert(name.to_owned(), obj);
    }

    /// Changes a stored object behind the API's back; panics when it is missing.
    pub fn edit(&self, coll: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut objects = self.fake.objects.lock().unwrap();
        let obj = objects
            .get_mut(coll)
            .and_then(|c| c.get_mut(name))
            .unwrap_or_else(|| panic!("no {coll}/{name} in the fake cluster"));
        f(obj);
    }

    /// Deletes an object behind the API's back.
    pub fn remove(&self, coll: &str, name: &str) -> Option<Value> {
        self.fake
            .objects
            .lock()
            .unwrap()
            .get_mut(coll)
            .and_then(|c| c.remove(name))
    }

    /// Every request so far, in order: `METHOD uri`.
    pub fn requests(&self) -> Vec<String> {
        self.fake.requests.lock().unwrap().clone()
    }

    /// The mutating requests so far, in order: `apply coll/name`, `delete coll/name`.
    pub fn writes(&self) -> Vec<String> {
        self.fake.writes.lock().unwrap().clone()
    }

    /// When set, the "controller" never rolls Deployments out (applied from then on).
    pub fn set_stuck(&self, stuck: bool) {
        self.fake.stuck.store(stuck, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::lists;

    #[test]
    fn cluster_wide_lists_cover_every_namespace() {
        let all = "apis/apps/v1/deployments";
        assert!(lists(all, all));
        assert!(lists(all, "apis/apps/v1/namespaces/shop/deployments"));
        assert!(!lists(all, "apis/apps/v1/namespaces/shop/statefulsets"));
        assert!(!lists(all, "apis/batch/v1/namespaces/shop/deployments"));
        let shop = "api/v1/namespaces/shop/configmaps";
        assert!(lists(shop, shop));
        assert!(!lists(shop, "api/v1/namespaces/other/configmaps"));
        assert!(lists("api/v1/namespaces", "api/v1/namespaces"));
    }
}
