//! `slipway/deploy-kubernetes` against the fake Kubernetes API server of
//! `test_support::kube` (no API server can run on the project's machines): it implements
//! just the calls the target makes over an in-memory store and plays the Deployment
//! controller by filling in `status`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use test_support::kube::Cluster;

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
        ("kubeconfig", cluster.kubeconfig().display().to_string()),
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
    let cluster = Cluster::start("slipway").await;
    let ws = test_support::tempdir();
    manifests(&ws.path().join("k8s"), true);
    // An object of another owner in the same namespace: never pruned.
    cluster.insert(
        "api/v1/namespaces/shop/configmaps",
        "unrelated",
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
            .requests()
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
    let cluster = Cluster::start("slipway").await;
    cluster.set_stuck(true);
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
    let cluster = Cluster::start("slipway").await;
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
    assert!(cluster.requests().is_empty(), "nothing was sent");
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
