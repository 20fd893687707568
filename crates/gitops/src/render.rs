//! Desired state from a checked-out app path: the app file (`local`, `docker`), or
//! Kubernetes manifests (plain YAML/JSON files, or a kustomization rendered by
//! `kubectl kustomize` / `kustomize build`). All or nothing: any invalid file fails the
//! render with `file:line:col`, so nothing of a broken revision is ever applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::appfile::{self, APP_FILE, Check, Flavor};
use crate::diff::rank_of_kind;
use crate::model::{Compare, Key, Object};

/// The label every applied Kubernetes object carries (the tracking label).
pub const APP_LABEL: &str = "slipway.gitops/app";
/// The annotation holding a hash of the object as Git has it (catches removed fields).
pub const HASH_ANNOTATION: &str = "slipway.gitops/spec-hash";

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

pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    AppFile(#[from] appfile::AppFileError),
    #[error("{0}: no {APP_FILE} at the app's path")]
    NoAppFile(String),
    #[error("{file}:{line}:{col}: {message}")]
    Manifest {
        file: String,
        line: u64,
        col: u64,
        message: String,
    },
    #[error("{0}: no manifests (*.yaml, *.yml, *.json) at the app's path")]
    NoManifests(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering the kustomization in {dir}: {message}")]
    Kustomize { dir: String, message: String },
    #[error("{file}:{line}:{col}: {what} appears twice (also at line {first})")]
    Duplicate {
        file: String,
        line: u64,
        col: u64,
        what: String,
        first: u64,
    },
}

/// The rendered desired state of one revision.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub objects: Vec<Object>,
    /// Local target: the directory a service's `files:` names, by service name.
    pub files: BTreeMap<String, PathBuf>,
}

/// What to render for.
#[derive(Clone, Debug)]
pub enum RenderFor {
    Local,
    Docker,
    /// `namespace`: where namespaced objects without one go.
    Kubernetes {
        app: String,
        namespace: String,
    },
}

/// Renders `dir` (the app path of a checkout); `shown` is how the path is named in errors
/// (`deploy/web` rather than a temporary directory).
pub async fn render(dir: &Path, shown: &str, target: &RenderFor) -> Result<Desired, RenderError> {
    match target {
        RenderFor::Local => app_file(dir, shown, Flavor::Local),
        RenderFor::Docker => app_file(dir, shown, Flavor::Docker),
        RenderFor::Kubernetes { app, namespace } => {
            let docs = kubernetes_documents(dir, shown).await?;
            Ok(Desired {
                objects: docs
                    .into_iter()
                    .map(|d| kube_object(d, app, namespace))
                    .collect::<Result<_, _>>()?,
                files: BTreeMap::new(),
            })
        }
    }
}

fn join(shown: &str, file: &str) -> String {
    let s = shown.trim_matches('/');
    if s.is_empty() || s == "." {
        file.to_owned()
    } else {
        format!("{s}/{file}")
    }
}

fn app_file(dir: &Path, shown: &str, flavor: Flavor) -> Result<Desired, RenderError> {
    let path = dir.join(APP_FILE);
    let file = join(shown, APP_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RenderError::NoAppFile(join(shown, "")));
        }
        Err(source) => return Err(RenderError::Read { path, source }),
    };
    let app = appfile::parse(&text, &file, dir, flavor)?;
    let mut out = Desired::default();
    for s in &app.services {
        let health = s.health.as_ref().map(|h| match &h.check {
            Check::Url(u) => json!({"url": u, "timeout_ms": h.timeout.as_millis() as u64}),
            Check::Cmd(c) => json!({"cmd": c, "timeout_ms": h.timeout.as_millis() as u64}),
        });
        let mut spec = json!({
            "image": s.image,
            "command": s.command,
            "env": s.env,
            "health": health,
            "state": "running",
        });
        match flavor {
            Flavor::Docker => {
                spec["ports"] = json!(s.ports);
                spec["network"] = json!(s.network);
            }
            Flavor::Local => {
                if let Some(f) = &s.files {
                    let digest = dir_digest(f).map_err(|source| RenderError::Read {
                        path: f.clone(),
                        source,
                    })?;
                    spec["files"] = json!(digest);
                    out.files.insert(s.name.clone(), f.clone());
                }
            }
        }
        out.objects.push(Object {
            key: Key::service(&s.name),
            spec,
            depends_on: s.depends_on.iter().map(|d| Key::service(d)).collect(),
            rank: 1,
            compare: Compare::Exact,
        });
    }
    Ok(out)
}

/// A hash over a directory's relative paths, modes and contents.
pub fn dir_digest(dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    let mut entries: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    for e in entries {
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        let md = e.metadata().map_err(std::io::Error::other)?;
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(md.permissions().mode().to_le_bytes());
        if md.is_file() {
            h.update(std::fs::read(e.path())?);
        } else if md.file_type().is_symlink() {
            h.update(std::fs::read_link(e.path())?.to_string_lossy().as_bytes());
        }
        h.update([0]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// One manifest document and where it starts.
struct Doc {
    value: Value,
    file: String,
    line: u64,
}

async fn kubernetes_documents(dir: &Path, shown: &str) -> Result<Vec<Doc>, RenderError> {
    for k in ["kustomization.yaml", "kustomization.yml", "Kustomization"] {
        if dir.join(k).is_file() {
            let text = kustomize(dir, shown).await?;
            return parse_docs(&text, &format!("{} (kustomize output)", join(shown, k)));
        }
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&f).map_err(|source| RenderError::Read {
            path: f.clone(),
            source,
        })?;
        out.extend(parse_docs(&text, &join(shown, &rel))?);
    }
    if out.is_empty() {
        return Err(RenderError::NoManifests(join(shown, "")));
    }
    Ok(out)
}

async fn kustomize(dir: &Path, shown: &str) -> Result<String, RenderError> {
    let err = |message: String| RenderError::Kustomize {
        dir: join(shown, ""),
        message,
    };
    let mut tried = Vec::new();
    for (bin, args) in [
        ("kubectl", &["kustomize"][..]),
        ("kustomize", &["build"][..]),
    ] {
        let out = tokio::process::Command::new(bin)
            .args(args)
            .arg(dir)
            .kill_on_drop(true)
            .output()
            .await;
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => tried.push(bin),
            Err(e) => return Err(err(format!("running {bin}: {e}"))),
            Ok(o) if o.status.success() => {
                return Ok(String::from_utf8_lossy(&o.stdout).into_owned());
            }
            Ok(o) => return Err(err(String::from_utf8_lossy(&o.stderr).trim().to_owned())),
        }
    }
    Err(err(format!(
        "neither {} is installed (apt-get install kubernetes-client, or put kustomize on PATH)",
        tried.join(" nor ")
    )))
}

/// The documents of one YAML stream, each with its first line.
fn parse_docs(text: &str, file: &str) -> Result<Vec<Doc>, RenderError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
        RenderError::Manifest {
            file: file.to_owned(),
            line,
            col,
            message: e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .to_owned(),
        }
    })?;
    // Where each document starts: after a `---` line (or at line 1).
    let mut starts = vec![1u64];
    let mut seen_content = false;
    for (i, l) in text.lines().enumerate() {
        if l.starts_with("---") {
            if seen_content || starts.len() > 1 {
                starts.push(i as u64 + 2);
            } else {
                starts[0] = i as u64 + 2;
            }
            seen_content = false;
        } else if !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            seen_content = true;
        }
    }
    let mut out = Vec::new();
    for (i, value) in docs.into_iter().enumerate() {
        let line = starts.get(i).copied().unwrap_or(1);
        if value.is_null() {
            continue;
        }
        let items = match value.get("kind").and_then(Value::as_str) {
            Some(k) if k.ends_with("List") => value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => vec![value],
        };
        for v in items {
            out.push(Doc {
                value: v,
                file: file.to_owned(),
                line,
            });
        }
    }
    Ok(out)
}

/// A manifest prepared for apply: tracking label, spec hash, default namespace.
fn kube_object(doc: Doc, app: &str, namespace: &str) -> Result<Object, RenderError> {
    let bad = |message: String| RenderError::Manifest {
        file: doc.file.clone(),
        line: doc.line,
        col: 1,
        message,
    };
    let mut v = doc.value.clone();
    if !v.is_object() {
        return Err(bad("a manifest must be a mapping".into()));
    }
    let field = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let api_version =
        field(&v, "/apiVersion").ok_or_else(|| bad("`apiVersion` is missing".into()))?;
    let kind = field(&v, "/kind").ok_or_else(|| bad("`kind` is missing".into()))?;
    let name =
        field(&v, "/metadata/name").ok_or_else(|| bad("`metadata.name` is missing".into()))?;
    let hash = hex::encode(Sha256::digest(
        serde_json::to_vec(&doc.value).unwrap_or_default(),
    ));
    let ns = if is_cluster_scoped(&kind) {
        String::new()
    } else {
        field(&v, "/metadata/namespace").unwrap_or_else(|| namespace.to_owned())
    };
    let meta = v["metadata"]
        .as_object_mut()
        .ok_or_else(|| bad("`metadata` must be a mapping".into()))?;
    if !ns.is_empty() {
        meta.insert("namespace".into(), json!(ns));
    }
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    labels
        .as_object_mut()
        .ok_or_else(|| bad("`metadata.labels` must be a mapping".into()))?
        .insert(APP_LABEL.into(), json!(app));
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    ann.as_object_mut()
        .ok_or_else(|| bad("`metadata.annotations` must be a mapping".into()))?
        .insert(HASH_ANNOTATION.into(), json!(&hash[..16]));
    let mut depends_on = Vec::new();
    if !ns.is_empty() {
        // A namespaced object depends on its namespace when the app has it (ignored otherwise).
        depends_on.push(Key {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: ns.clone(),
        });
    }
    Ok(Object {
        rank: rank_of_kind(&kind),
        key: Key {
            api_version,
            kind,
            namespace: ns,
            name,
        },
        spec: v,
        depends_on,
        compare: Compare::Subset,
    })
}

/// Two desired objects with the same key: the later one is an error (Git would be ambiguous).
pub fn check_unique(objects: &[Object]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for o in objects {
        if !seen.insert(&o.key) {
            return Err(format!("{} appears twice", o.key));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kube() -> RenderFor {
        RenderFor::Kubernetes {
            app: "shop".into(),
            namespace: "prod".into(),
        }
    }

    #[tokio::test]
    async fn manifests_get_label_hash_and_namespace() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n").unwrap();
        std::fs::write(d.path().join("sub/b.yml"), "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s, namespace: other}\n").unwrap();
        let out = render(d.path(), "deploy", &kube()).await.unwrap();
        let keys: Vec<String> = out.objects.iter().map(|o| o.key.to_string()).collect();
        assert_eq!(
            keys,
            ["namespace/prod", "configmap/prod/c", "service/other/s"]
        );
        let cm = &out.objects[1].spec;
        assert_eq!(cm["metadata"]["labels"][APP_LABEL], "shop");
        assert_eq!(
            cm["metadata"]["annotations"][HASH_ANNOTATION]
                .as_str()
                .unwrap()
                .len(),
            16
        );
        assert!(out.objects[0].spec["metadata"].get("namespace").is_none());
        assert_eq!(out.objects[0].rank, 0);
    }

    #[tokio::test]
    async fn a_bad_manifest_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n# second\nkind: Service\nmetadata: {name: s}\n").unwrap();
        let e = render(d.path(), "deploy", &kube())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(e, "deploy/a.yaml:5:1: `apiVersion` is missing");
        std::fs::write(d.path().join("a.yaml"), "apiVersion: v1\nkind: [\n").unwrap();
        let e = render(d.path(), "deploy", &kube())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("deploy/a.yaml:"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = render(empty.path(), "deploy", &kube())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no manifests"), "{e}");
    }

    #[tokio::test]
    async fn app_files_render_services() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("site")).unwrap();
        std::fs::write(d.path().join("site/index.html"), "v1").unwrap();
        std::fs::write(
            d.path().join("app.yaml"),
            "services:\n  web:\n    command: run\n    files: site\n    env: {A: b}\n",
        )
        .unwrap();
        let out = render(d.path(), "apps/web", &RenderFor::Local)
            .await
            .unwrap();
        let spec = &out.objects[0].spec;
        assert_eq!(spec["env"]["A"], "b");
        assert!(spec["files"].as_str().unwrap().starts_with("sha256:"));
        let before = spec["files"].clone();
        std::fs::write(d.path().join("site/index.html"), "v2").unwrap();
        let out2 = render(d.path(), "apps/web", &RenderFor::Local)
            .await
            .unwrap();
        assert_ne!(
            out2.objects[0].spec["files"], before,
            "content changes change the spec"
        );
        let e = render(d.path(), "apps/web", &RenderFor::Docker)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("apps/web/app.yaml:3:5: service web: `image` is required"),
            "{e}"
        );
        let e = render(
            tempfile::tempdir().unwrap().path(),
            "apps/x",
            &RenderFor::Docker,
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(e, "apps/x/: no app.yaml at the app's path");
    }
}
