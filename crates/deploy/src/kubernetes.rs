//! The `kubernetes` target: server-side apply (field manager `slipway`) of a directory of
//! manifests with the image digest substituted, a wait for Deployment/StatefulSet rollout,
//! and pruning of the app's objects that are no longer in the manifests.
//!
//! Objects are handled as untyped JSON ([`kube::api::DynamicObject`]); plural resource names
//! come from the kind (`Deployment` -> `deployments`), so no discovery round trip is made.
//! No automatic rollback here: a rollout that does not finish fails the step, and
//! `slipway rollback` re-applies an earlier digest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// The label that ties an object to an app (and makes it prunable).
pub const APP_LABEL: &str = "slipway.app";
/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "slipway";
/// The placeholder replaced by the image reference anywhere in a manifest.
pub const IMAGE_PLACEHOLDER: &str = "${SLIPWAY_IMAGE}";
const POLL: Duration = Duration::from_millis(250);

/// Kinds that are not namespaced (the common ones; anything else is treated as namespaced).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// Kinds always checked for pruning, besides those in the manifests.
const PRUNE_KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
];

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `doc` counts the file's non-empty documents, from 1.
    #[error("{path}: document {doc}: {message}")]
    Manifest {
        path: PathBuf,
        doc: usize,
        message: String,
    },
    #[error("{0}: no manifests (*.yaml, *.yml, *.json) found")]
    Empty(PathBuf),
    #[error(
        "image {0:?} is not pinned by digest: give `name@sha256:...` (tags can move under a running deployment)"
    )]
    NotByDigest(String),
    #[error("loading the kubeconfig {}", .path.as_ref().map_or("(inferred)".into(), |p| p.display().to_string()))]
    Config {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("creating the Kubernetes client")]
    Client { source: kube::Error },
    #[error("{action} {object}")]
    Api {
        action: &'static str,
        object: String,
        source: kube::Error,
    },
    #[error("rollout of {object} did not finish within {timeout:?}: {state}")]
    Rollout {
        object: String,
        timeout: Duration,
        state: String,
    },
}

/// A `kubernetes` deploy's settings.
#[derive(Clone, Debug)]
pub struct KubeDeploy {
    /// A directory of manifests (read in name order) or one file.
    pub manifests: PathBuf,
    /// The image, by digest; substituted for [`IMAGE_PLACEHOLDER`] and for any container image
    /// of the same repository.
    pub image: String,
    pub app: String,
    /// `None`: the kubeconfig context's namespace, else `default`.
    pub namespace: Option<String>,
    /// `None`: `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub rollout_timeout: Duration,
    pub prune: bool,
}

/// A finished apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub digest: String,
    /// `kind/name` of every applied object.
    pub objects: Vec<String>,
    pub pruned: Vec<String>,
}

/// The repository part of an image reference (no tag, no digest).
fn repository(image: &str) -> &str {
    let no_digest = image.split_once('@').map_or(image, |(r, _)| r);
    match no_digest.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => no_digest,
    }
}

/// Reads the manifests: every YAML document (or `kind: List` item) with apiVersion, kind and
/// metadata.name.
pub fn load(path: &Path) -> Result<Vec<Value>, KubeError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| KubeError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| KubeError::Read {
            path: file.clone(),
            source,
        })?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| KubeError::Manifest {
                path: file.clone(),
                doc: 1,
                message: e.to_string(),
            })?;
        for (i, doc) in docs.into_iter().enumerate() {
            let bad = |message: String| KubeError::Manifest {
                path: file.clone(),
                doc: i + 1,
                message,
            };
            if doc.is_null() {
                continue;
            }
            let items = if doc
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
            {
                doc.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            } else {
                vec![doc]
            };
            for item in items {
                for field in ["apiVersion", "kind"] {
                    if item
                        .get(field)
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        return Err(bad(format!("`{field}` is missing")));
                    }
                }
                if item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(bad("`metadata.name` is missing".into()));
                }
                out.push(item);
            }
        }
    }
    if out.is_empty() {
        return Err(KubeError::Empty(path.to_path_buf()));
    }
    Ok(out)
}

/// Substitutes the image, adds the app label and the namespace. Pure.
pub fn prepare(mut obj: Value, image: &str, app: &str, namespace: &str) -> Value {
    substitute(&mut obj, image, repository(image), false);
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(APP_LABEL.into(), Value::String(app.into()));
        }
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !CLUSTER_SCOPED.contains(&kind.as_str())
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.entry("namespace")
            .or_insert_with(|| Value::String(namespace.into()));
    }
    obj
}

fn substitute(v: &mut Value, image: &str, repo: &str, key_is_image: bool) {
    match v {
        Value::String(s) => {
            if s.contains(IMAGE_PLACEHOLDER) {
                *s = s.replace(IMAGE_PLACEHOLDER, image);
            } else if key_is_image && repository(s) == repo {
                *s = image.to_owned();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, image, repo, false)),
        Value::Object(m) => m
            .iter_mut()
            .for_each(|(k, x)| substitute(x, image, repo, k == "image")),
        _ => {}
    }
}

fn gvk_of(obj: &Value) -> GroupVersionKind {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

fn api_for(client: &kube::Client, gvk: &GroupVersionKind, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(gvk);
    match ns {
        Some(ns) if !CLUSTER_SCOPED.contains(&gvk.kind.as_str()) => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    }
}

async fn client(d: &KubeDeploy) -> Result<(kube::Client, String), KubeError> {
    let cfg_err = |message: String| KubeError::Config {
        path: d.kubeconfig.clone(),
        message,
    };
    let config = match &d.kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(|e| cfg_err(e.to_string()))?;
            let opts = kube::config::KubeConfigOptions {
                context: d.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| cfg_err(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| cfg_err(e.to_string()))?,
    };
    let ns = d
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|source| KubeError::Client { source })?;
    Ok((client, ns))
}

fn describe(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_ascii_lowercase(),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

/// Applies, waits for rollout, prunes.
pub async fn deploy(d: &KubeDeploy, log: crate::rollout::Log<'_>) -> Result<Applied, KubeError> {
    let digest = match d.image.split_once('@') {
        Some((_, dg)) if dg.starts_with("sha256:") => dg.to_owned(),
        _ => return Err(KubeError::NotByDigest(d.image.clone())),
    };
    let raw = load(&d.manifests)?;
    let (client, ns) = client(d).await?;
    let objects: Vec<Value> = raw
        .into_iter()
        .map(|o| prepare(o, &d.image, &d.app, &ns))
        .collect();

    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut names = Vec::new();
    for obj in &objects {
        let gvk = gvk_of(obj);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let obj_ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&ns);
        let api = api_for(&client, &gvk, Some(obj_ns));
        api.patch(name, &params, &Patch::Apply(obj))
            .await
            .map_err(|source| KubeError::Api {
                action: "applying",
                object: describe(obj),
                source,
            })?;
        log(&format!("Applied {}", describe(obj)));
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        applied
            .entry((api_version, gvk.kind.clone()))
            .or_default()
            .insert(format!("{obj_ns}/{name}"));
        names.push(describe(obj));
    }

    for obj in &objects {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "Deployment" || kind == "StatefulSet" {
            wait_rollout(&client, obj, &ns, d.rollout_timeout, log).await?;
        }
    }

    let mut pruned = Vec::new();
    if d.prune {
        let mut kinds: BTreeSet<(String, String)> = applied.keys().cloned().collect();
        kinds.extend(
            PRUNE_KINDS
                .iter()
                .map(|(a, k)| ((*a).to_owned(), (*k).to_owned())),
        );
        let selector = format!("{APP_LABEL}={}", d.app);
        for (api_version, kind) in kinds {
            let (group, version) = api_version
                .split_once('/')
                .unwrap_or(("", api_version.as_str()));
            let gvk = GroupVersionKind::gvk(group, version, &kind);
            let api = api_for(&client, &gvk, Some(&ns));
            let list = match api.list(&ListParams::default().labels(&selector)).await {
                Ok(l) => l,
                // A kind the cluster does not serve has nothing to prune.
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(source) => {
                    return Err(KubeError::Api {
                        action: "listing for pruning",
                        object: kind.to_ascii_lowercase(),
                        source,
                    });
                }
            };
            let keep = applied.get(&(api_version.clone(), kind.clone()));
            for item in list.items {
                let name = item.metadata.name.clone().unwrap_or_default();
                let item_ns = item
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| ns.clone());
                if keep.is_some_and(|k| k.contains(&format!("{item_ns}/{name}"))) {
                    continue;
                }
                let label = format!("{}/{name}", kind.to_ascii_lowercase());
                api.delete(&name, &DeleteParams::default())
                    .await
                    .map_err(|source| KubeError::Api {
                        action: "pruning",
                        object: label.clone(),
                        source,
                    })?;
                log(&format!("Pruned {label}"));
                pruned.push(label);
            }
        }
    }
    Ok(Applied {
        digest,
        objects: names,
        pruned,
    })
}

/// `kubectl rollout status` for one Deployment or StatefulSet; `Ok(None)` when done, else
/// what it waits for.
pub fn rollout_pending(obj: &Value) -> Option<String> {
    let num = |p: &str| obj.pointer(p).and_then(Value::as_i64);
    let generation = num("/metadata/generation").unwrap_or(0);
    let observed = num("/status/observedGeneration").unwrap_or(-1);
    if observed < generation {
        return Some(format!(
            "generation {generation} not yet observed (at {observed})"
        ));
    }
    let want = num("/spec/replicas").unwrap_or(1);
    let updated = num("/status/updatedReplicas").unwrap_or(0);
    let total = num("/status/replicas").unwrap_or(0);
    if updated < want {
        return Some(format!("{updated} of {want} replicas updated"));
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some("StatefulSet") => {
            let ready = num("/status/readyReplicas").unwrap_or(0);
            if ready < want {
                return Some(format!("{ready} of {want} replicas ready"));
            }
            let (cur, upd) = (
                obj.pointer("/status/currentRevision"),
                obj.pointer("/status/updateRevision"),
            );
            if upd.is_some() && cur != upd {
                return Some("the update revision is not current yet".into());
            }
        }
        _ => {
            if total > updated {
                return Some(format!(
                    "{} old replicas pending termination",
                    total - updated
                ));
            }
            let available = num("/status/availableReplicas").unwrap_or(0);
            if available < updated {
                return Some(format!(
                    "{available} of {updated} updated replicas available"
                ));
            }
        }
    }
    None
}

async fn wait_rollout(
    client: &kube::Client,
    obj: &Value,
    ns: &str,
    timeout: Duration,
    log: crate::rollout::Log<'_>,
) -> Result<(), KubeError> {
    let gvk = gvk_of(obj);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let obj_ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(ns);
    let api = api_for(client, &gvk, Some(obj_ns));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let live = api.get(name).await.map_err(|source| KubeError::Api {
            action: "reading the rollout of",
            object: describe(obj),
            source,
        })?;
        let live = serde_json::to_value(&live).unwrap_or_default();
        match rollout_pending(&live) {
            None => {
                log(&format!("Rolled out {}", describe(obj)));
                return Ok(());
            }
            Some(state) if tokio::time::Instant::now() >= deadline => {
                return Err(KubeError::Rollout {
                    object: describe(obj),
                    timeout,
                    state,
                });
            }
            Some(_) => tokio::time::sleep(POLL).await,
        }
    }
}

pub(crate) async fn run_action(
    inp: &crate::action::Inputs<'_>,
    workspace: &Path,
    log: crate::rollout::Log<'_>,
) -> Result<indexmap::IndexMap<String, String>, crate::action::ActionError> {
    use crate::action::ActionError;
    let fail = |m: String| ActionError(format!("slipway/deploy-kubernetes: {m}"));
    let d = KubeDeploy {
        manifests: workspace.join(inp.required("manifests")?),
        image: inp.required("image")?.to_owned(),
        app: inp.required("name")?.to_owned(),
        namespace: inp.get("namespace").map(str::to_owned),
        kubeconfig: inp.get("kubeconfig").map(|k| workspace.join(k)),
        context: inp.get("context").map(str::to_owned),
        rollout_timeout: inp.duration("rollout-timeout", Duration::from_secs(300))?,
        prune: match inp.get("prune") {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(fail(format!(
                    "input `prune`: {other:?} is not true or false"
                )));
            }
        },
    };
    let target = format!(
        "kubernetes:{}/{}{}",
        d.namespace.as_deref().unwrap_or("(default)"),
        d.app,
        d.context.as_deref().map(|c| format!("@{c}")).unwrap_or_default()
    );
    let image = d.image.clone();
    let done = deploy(&d, log)
        .await
        .map_err(|e| fail(crate::action::chain(&e)))?;
    let mut out = indexmap::IndexMap::new();
    out.insert("image".into(), image);
    out.insert("target".into(), target);
    out.insert("digest".into(), done.digest);
    out.insert("release".into(), done.objects.join(","));
    out.insert("pruned".into(), done.pruned.join(","));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repositories() {
        assert_eq!(repository("reg:5000/team/app:v1"), "reg:5000/team/app");
        assert_eq!(
            repository("reg:5000/team/app@sha256:00"),
            "reg:5000/team/app"
        );
        assert_eq!(
            repository("reg:5000/team/app:v1@sha256:00"),
            "reg:5000/team/app"
        );
        assert_eq!(repository("app"), "app");
    }

    #[test]
    fn prepare_substitutes_labels_and_namespaces() {
        let img = "reg:5000/team/app@sha256:abc";
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "reg:5000/team/app:latest"},
                {"name": "b", "image": "other/sidecar:1"},
                {"name": "c", "image": "${SLIPWAY_IMAGE}"}]}}}});
        let out = prepare(dep, img, "shop", "prod");
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], img);
        assert_eq!(c[1]["image"], "other/sidecar:1");
        assert_eq!(c[2]["image"], img);
        assert_eq!(out["metadata"]["labels"][APP_LABEL], "shop");
        assert_eq!(out["metadata"]["namespace"], "prod");
        let ns = prepare(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
            img,
            "shop",
            "prod",
        );
        assert!(ns["metadata"].get("namespace").is_none());
    }

    #[test]
    fn rollout_status() {
        let base = |status: Value| json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": status});
        assert!(
            rollout_pending(&base(json!({"observedGeneration": 1})))
                .unwrap()
                .contains("not yet observed")
        );
        assert!(
            rollout_pending(&base(
                json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 2})
            ))
            .unwrap()
            .contains("1 of 2")
        );
        assert!(
            rollout_pending(&base(
                json!({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3})
            ))
            .unwrap()
            .contains("old replicas")
        );
        assert!(rollout_pending(&base(json!({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}))).is_some());
        assert_eq!(
            rollout_pending(&base(
                json!({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2})
            )),
            None
        );
    }

    #[test]
    fn manifests_need_kind_and_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n").unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("a.yaml: document 3") && e.contains("metadata.name"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(
            load(empty.path())
                .unwrap_err()
                .to_string()
                .contains("no manifests")
        );
    }
}
