//! The `kubernetes` target: server-side apply (field manager `slipway-gitops`) of rendered
//! manifests; live objects are found by the tracking label `slipway.gitops/app` in every
//! kind and namespace the app has or had (its inventory), so an object deleted or edited by
//! hand is drift. Health: a Deployment or StatefulSet is Progressing until its rollout is
//! complete (the same rule as `kubectl rollout status`); other objects are Healthy once
//! they exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use super::{Log, Target, TargetError, live};
use crate::model::{HealthStatus, Key, LiveObject, Object};
use crate::render::{APP_LABEL, Desired, is_cluster_scoped};

pub const FIELD_MANAGER: &str = "slipway-gitops";

/// Where the cluster is.
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    /// `None`: `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// `None`: the context's namespace.
    pub namespace: Option<String>,
}

pub struct KubeTarget {
    client: kube::Client,
    namespace: String,
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

impl KubeTarget {
    pub async fn connect(o: &KubeOptions) -> Result<KubeTarget, TargetError> {
        let shown = o
            .kubeconfig
            .as_ref()
            .map_or("(inferred)".to_owned(), |p| p.display().to_string());
        let err = |e: &dyn std::fmt::Display| TargetError::new("loading the kubeconfig", &shown, e);
        let config = match &o.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(&e))?;
                let opts = kube::config::KubeConfigOptions {
                    context: o.context.clone(),
                    ..Default::default()
                };
                kube::Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| err(&e))?
            }
            None => kube::Config::infer().await.map_err(|e| err(&e))?,
        };
        let namespace = o
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| err(&e))?;
        Ok(KubeTarget { client, namespace })
    }

    /// The namespace objects without one go to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self, key: &Key) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&gvk(&key.api_version, &key.kind));
        if key.namespace.is_empty() || is_cluster_scoped(&key.kind) {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), &key.namespace, &ar)
        }
    }
}

fn health_of(obj: &Value) -> Result<(), (HealthStatus, String)> {
    match obj.get("kind").and_then(Value::as_str) {
        Some("Deployment" | "StatefulSet") => match deploy::kubernetes::rollout_pending(obj) {
            None => Ok(()),
            Some(state) => Err((HealthStatus::Progressing, state)),
        },
        _ => Ok(()),
    }
}

#[async_trait]
impl Target for KubeTarget {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn default_namespace(&self) -> &str {
        &self.namespace
    }

    async fn observe(
        &self,
        app: &str,
        known: &[Key],
    ) -> Result<BTreeMap<Key, LiveObject>, TargetError> {
        // One list per (apiVersion, kind, namespace) the app has or had.
        let groups: BTreeSet<(String, String, String)> = known
            .iter()
            .map(|k| (k.api_version.clone(), k.kind.clone(), k.namespace.clone()))
            .collect();
        let selector = format!("{APP_LABEL}={app}");
        let mut out = BTreeMap::new();
        for (api_version, kind, namespace) in groups {
            let probe = Key {
                api_version: api_version.clone(),
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: String::new(),
            };
            let list = match self
                .api(&probe)
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(l) => l,
                // A kind the cluster does not serve (a CRD not yet applied) has no objects.
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    return Err(TargetError::new(
                        "listing",
                        format!("{kind} in {namespace:?}"),
                        crate::chain(&e),
                    ));
                }
            };
            for item in list.items {
                let mut v = serde_json::to_value(&item).unwrap_or_default();
                // Lists may leave apiVersion/kind out of their items.
                v["apiVersion"] = Value::String(api_version.clone());
                v["kind"] = Value::String(kind.clone());
                let key = Key {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                    namespace: item.metadata.namespace.clone().unwrap_or_default(),
                    name: item.metadata.name.clone().unwrap_or_default(),
                };
                let health = health_of(&v);
                let (k, l) = live(key, v, health);
                out.insert(k, l);
            }
        }
        Ok(out)
    }

    async fn apply(
        &self,
        _app: &str,
        object: &Object,
        _desired: &Desired,
        log: Log<'_>,
    ) -> Result<(), TargetError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api(&object.key)
            .patch(&object.key.name, &params, &Patch::Apply(&object.spec))
            .await
            .map_err(|e| TargetError::new("applying", &object.key, crate::chain(&e)))?;
        log(&format!("Applied {}", object.key));
        Ok(())
    }

    async fn delete(&self, _app: &str, key: &Key, log: Log<'_>) -> Result<(), TargetError> {
        match self
            .api(key)
            .delete(&key.name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(TargetError::new("deleting", key, crate::chain(&e))),
        }
        log(&format!("Deleted {key}"));
        Ok(())
    }
}
