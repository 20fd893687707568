//! The kubernetes target against the fake Kubernetes API server of `test_support::kube` (no
//! API server can run on the project's machines; the deploy crate's tests use the same one): it
//! implements just the calls the agent makes over an in-memory store and plays the Deployment
//! controller by filling in `status`. Git is a real `git daemon`; kustomize is the real
//! `kubectl kustomize`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gitops::agent::{AppSpec, TargetSpec, Trigger};
use gitops::model::{HealthStatus, SyncStatus};
use gitops::target::kubernetes::KubeOptions;
use serde_json::json;
use test_support::git::GitDaemon;
use test_support::kube::Cluster;

fn spec(cluster: &Cluster, app: &str, repo: &str, path: &str) -> AppSpec {
    let mut s = AppSpec::new(
        app,
        repo,
        path,
        "main",
        TargetSpec::Kubernetes(KubeOptions {
            kubeconfig: Some(cluster.kubeconfig()),
            context: None,
            namespace: None,
        }),
    );
    s.interval = std::time::Duration::from_secs(3600);
    s
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: reg.example/team/web@sha256:00\n";
const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";
const CONFIG: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  greeting: hello\n";

#[tokio::test(flavor = "multi_thread")]
async fn sync_heal_prune_on_kubernetes() {
    let cluster = Cluster::start("slipway-gitops").await;
    let git = GitDaemon::start();
    let url = git.create_repo("deploy");
    let wt = git.work_tree("deploy");
    wt.write("k8s/deployment.yaml", DEPLOYMENT)
        .write("k8s/namespace.yaml", NAMESPACE)
        .write("k8s/config.yaml", CONFIG);
    let first = wt.commit("web");
    wt.push("main");
    let agent = start_agent(vec![spec(&cluster, "shop", &url, "k8s")]).await;
    let s = agent
        .wait("shop", "the first sync", |s| synced_at(s, &first))
        .await;
    // The namespace goes first although its file sorts last.
    let writes = cluster.writes();
    assert_eq!(writes[0], "apply api/v1/namespaces/shop", "{writes:?}");
    assert_eq!(s.record.resources.len(), 3);
    let dep = cluster
        .get("apis/apps/v1/namespaces/shop/deployments", "web")
        .unwrap();
    assert_eq!(dep["metadata"]["labels"]["slipway.gitops/app"], "shop");

    // A change by hand: OutOfSync, then reverted (self-heal).
    cluster.edit("api/v1/namespaces/shop/configmaps", "web-config", |cm| {
        cm["data"]["greeting"] = json!("hacked");
    });
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
    let cluster = Cluster::start("slipway-gitops").await;
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
    let mut spec = spec(&cluster, "kz", &url, "base");
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
        .remove("apis/apps/v1/namespaces/shop/deployments", "web")
        .unwrap();
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
