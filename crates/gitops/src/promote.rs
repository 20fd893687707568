//! `slipway/promote`: the CI side of the pull model. Clones the deployment repository, sets
//! the new image in the app, commits with a message naming the source commit and run (as
//! trailers the agent reads back), and pushes. A push refused as non-fast-forward (another
//! promote landed first) is retried on the new tip: the edit is re-applied to what is there
//! now, so both promotes land in order and neither is lost.
//!
//! Where the image goes (first that applies):
//! - `yaml-path: spec.template.spec.containers[name=web].image` in the file `path`
//! - `service: web` — `services.web.image` in the app file (`path` is `app.yaml` or its dir)
//! - a kustomization at `path`: the `images:` entry whose `name` is the image's repository
//!   (or `kustomize-name`) gets `digest:` (the entry is added when missing)
//! - an app file at `path`: the one service whose image has the same repository

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::git::{RUN_TRAILER, SOURCE_TRAILER, git};
use crate::yamledit::{self, Seg};

/// A failed promote, with the action's name in front.
#[derive(Debug, thiserror::Error)]
#[error("slipway/promote: {0}")]
pub struct PromoteError(pub String);

fn fail(m: impl Into<String>) -> PromoteError {
    PromoteError(m.into())
}

/// Where to write the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    YamlPath(String),
    Service(String),
    /// Kustomize `images:` entry by name (`None`: the image's repository).
    Kustomize(Option<String>),
    /// The app file's service with the same repository.
    Auto,
}

#[derive(Clone, Debug)]
pub struct Promote {
    pub repository: String,
    pub branch: String,
    /// A file or directory inside the repository.
    pub path: String,
    /// The new image, `name@sha256:<hex>`.
    pub image: String,
    pub placement: Placement,
    pub source_commit: Option<String>,
    pub run: Option<String>,
    pub source_repository: Option<String>,
    /// Push attempts (a non-fast-forward rejection starts the next).
    pub attempts: u32,
}

/// A finished promote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promoted {
    /// The promote commit (or the tip when nothing changed).
    pub commit: String,
    pub changed: bool,
    /// The value that was replaced.
    pub previous: Option<String>,
    pub file: String,
    pub attempts: u32,
}

/// The repository part of an image reference (no tag, no digest).
pub fn repository(image: &str) -> &str {
    let no_digest = image.split_once('@').map_or(image, |(r, _)| r);
    match no_digest.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => no_digest,
    }
}

fn check_image(image: &str) -> Result<&str, PromoteError> {
    match image.split_once('@') {
        Some((repo, d))
            if !repo.is_empty()
                && d.strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())) =>
        {
            Ok(d)
        }
        _ => Err(fail(format!(
            "input `image`: {image:?} is not pinned by digest (give `name@sha256:<64 hex>`, as docker/build-push-action's `digest` output makes it)"
        ))),
    }
}

/// The commit message: a subject naming image and path, the trailers.
pub fn message(p: &Promote) -> String {
    let mut m = format!(
        "Promote {} to {} in {}\n",
        repository(&p.image),
        p.image.split_once('@').map_or("", |x| x.1),
        p.path
    );
    let mut trailers = Vec::new();
    if let Some(c) = &p.source_commit {
        let from = p
            .source_repository
            .as_deref()
            .map(|r| format!(" from {r}"))
            .unwrap_or_default();
        m.push_str(&format!("\nBuilt{from} at {c}.\n"));
        trailers.push(format!("{SOURCE_TRAILER}: {c}"));
    }
    if let Some(r) = &p.run {
        trailers.push(format!("{RUN_TRAILER}: {r}"));
    }
    if !trailers.is_empty() {
        m.push('\n');
        m.push_str(&trailers.join("\n"));
        m.push('\n');
    }
    m
}

/// Edits the checkout at `root`: the file changed, the previous value, whether it changed.
fn edit(root: &Path, p: &Promote) -> Result<(String, Option<String>, bool), PromoteError> {
    let rel = p.path.trim_matches('/');
    if Path::new(rel)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(fail(format!(
            "input `path`: {:?} leaves the repository",
            p.path
        )));
    }
    let target = root.join(rel);
    let find_file = |names: &[&str]| -> Option<PathBuf> {
        if target.is_file() {
            return Some(target.clone());
        }
        names.iter().map(|n| target.join(n)).find(|f| f.is_file())
    };
    let kustomization = find_file(&["kustomization.yaml", "kustomization.yml", "Kustomization"])
        .filter(|f| {
            f.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .to_lowercase()
                    .starts_with("kustomization")
            })
        });
    let app_file = find_file(&[crate::appfile::APP_FILE]);
    let repo = repository(&p.image).to_owned();
    let digest = check_image(&p.image)?.to_owned();

    let (file, path, value) = match &p.placement {
        Placement::YamlPath(y) => {
            let file = if target.is_file() {
                target.clone()
            } else {
                return Err(fail(format!(
                    "input `path`: {:?} is not a file in the repository (yaml-path needs one)",
                    p.path
                )));
            };
            (
                file,
                yamledit::parse_path(y).map_err(|e| fail(format!("input `yaml-path`: {e}")))?,
                p.image.clone(),
            )
        }
        Placement::Service(s) => {
            let file = app_file.ok_or_else(|| {
                fail(format!(
                    "input `path`: no {} at {:?}",
                    crate::appfile::APP_FILE,
                    p.path
                ))
            })?;
            (
                file,
                vec![
                    Seg::Key("services".into()),
                    Seg::Key(s.clone()),
                    Seg::Key("image".into()),
                ],
                p.image.clone(),
            )
        }
        Placement::Kustomize(_) | Placement::Auto if kustomization.is_some() => {
            let file = kustomization.clone().expect("checked above");
            let name = match &p.placement {
                Placement::Kustomize(Some(n)) => n.clone(),
                _ => repo.clone(),
            };
            let text = read(&file)?;
            let entry = vec![
                Seg::Key("images".into()),
                Seg::Match("name".into(), name.clone()),
            ];
            let digest_path = [entry.clone(), vec![Seg::Key("digest".into())]].concat();
            if yamledit::get(
                &text,
                &entry
                    .iter()
                    .cloned()
                    .chain([Seg::Key("name".into())])
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| fail(format!("{}: {e}", shown(root, &file))))?
            .is_none()
                || yamledit::get(&text, &digest_path).map_err(fail)?.is_none()
            {
                // No entry or no digest key yet: rewrite the file structurally.
                return rewrite_kustomization(root, &file, &text, &name, &digest);
            }
            (file, digest_path, digest.clone())
        }
        Placement::Kustomize(_) => {
            return Err(fail(format!(
                "input `path`: no kustomization at {:?}",
                p.path
            )));
        }
        Placement::Auto => {
            let file = app_file.ok_or_else(|| {
                fail(format!(
                    "input `path`: {:?} holds neither a kustomization nor an {}; give `yaml-path` or `service`",
                    p.path,
                    crate::appfile::APP_FILE
                ))
            })?;
            let text = read(&file)?;
            let services: serde_json::Value = serde_saphyr::from_str(&text)
                .map_err(|e| fail(format!("{}: {e}", shown(root, &file))))?;
            let matching: Vec<String> = services["services"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, s)| s["image"].as_str().is_some_and(|i| repository(i) == repo))
                .map(|(n, _)| n.clone())
                .collect();
            let service = match matching.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(fail(format!(
                        "{}: no service runs an image of {repo}; give `service`",
                        shown(root, &file)
                    )));
                }
                many => {
                    return Err(fail(format!(
                        "{}: services {} run {repo}; give `service`",
                        shown(root, &file),
                        many.join(", ")
                    )));
                }
            };
            (
                file,
                vec![
                    Seg::Key("services".into()),
                    Seg::Key(service),
                    Seg::Key("image".into()),
                ],
                p.image.clone(),
            )
        }
    };
    let text = read(&file)?;
    let previous =
        yamledit::get(&text, &path).map_err(|e| fail(format!("{}: {e}", shown(root, &file))))?;
    let Some(new) = yamledit::set(&text, &path, &value)
        .map_err(|e| fail(format!("{}: {e}", shown(root, &file))))?
    else {
        return Err(fail(format!(
            "{}: nothing at {} to set",
            shown(root, &file),
            show_path(&path)
        )));
    };
    let changed = new != text;
    if changed {
        std::fs::write(&file, new)
            .map_err(|e| fail(format!("writing {}: {e}", shown(root, &file))))?;
    }
    Ok((shown(root, &file), previous, changed))
}

fn show_path(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => format!(".{k}"),
            Seg::Index(i) => format!("[{i}]"),
            Seg::Match(k, v) => format!("[{k}={v}]"),
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

fn rewrite_kustomization(
    root: &Path,
    file: &Path,
    text: &str,
    name: &str,
    digest: &str,
) -> Result<(String, Option<String>, bool), PromoteError> {
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| fail(format!("{}: {e}", shown(root, file))))?;
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| fail(format!("{}: not a mapping", shown(root, file))))?;
    let images = obj.entry("images").or_insert_with(|| serde_json::json!([]));
    let list = images
        .as_array_mut()
        .ok_or_else(|| fail(format!("{}: `images` is not a list", shown(root, file))))?;
    let previous;
    match list.iter_mut().find(|e| e["name"] == name) {
        Some(e) => {
            previous = e["digest"].as_str().map(str::to_owned);
            e["digest"] = serde_json::json!(digest);
        }
        None => {
            previous = None;
            list.push(serde_json::json!({"name": name, "digest": digest}));
        }
    }
    let out = serde_saphyr::to_string(&doc)
        .map_err(|e| fail(format!("serializing {}: {e}", shown(root, file))))?;
    std::fs::write(file, &out).map_err(|e| fail(format!("writing {}: {e}", shown(root, file))))?;
    Ok((shown(root, file), previous, out != text))
}

fn read(file: &Path) -> Result<String, PromoteError> {
    std::fs::read_to_string(file).map_err(|e| fail(format!("reading {}: {e}", file.display())))
}

fn shown(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn is_non_fast_forward(e: &crate::git::GitError) -> bool {
    let s = e.to_string();
    s.contains("non-fast-forward")
        || s.contains("fetch first")
        || s.contains("[rejected]")
        || s.contains("cannot lock ref")
}

/// Runs a promote (see the module docs). `log` gets progress lines.
pub async fn promote(
    p: &Promote,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<Promoted, PromoteError> {
    check_image(&p.image)?;
    let dir = tempfile::tempdir().map_err(|e| fail(format!("creating a clone directory: {e}")))?;
    let root = dir.path().join("repo");
    let g = |e: crate::git::GitError| fail(crate::chain(&e));
    log(&format!("Cloning {} ({})", p.repository, p.branch));
    git(
        None,
        &[
            "clone",
            "--quiet",
            "--no-tags",
            "--single-branch",
            "--branch",
            &p.branch,
            &p.repository,
            &root.to_string_lossy(),
        ],
    )
    .await
    .map_err(g)?;
    let tip = String::from_utf8_lossy(&git(Some(&root), &["rev-parse", "HEAD"]).await.map_err(g)?)
        .trim()
        .to_owned();
    log(&format!("Cloned {} at {tip}", p.repository));
    let msg = message(p);
    let attempts = p.attempts.max(1);
    for attempt in 1..=attempts {
        if attempt > 1 {
            git(Some(&root), &["fetch", "--quiet", "origin", &p.branch])
                .await
                .map_err(g)?;
            git(
                Some(&root),
                &[
                    "reset",
                    "--quiet",
                    "--hard",
                    &format!("origin/{}", p.branch),
                ],
            )
            .await
            .map_err(g)?;
        }
        let (file, previous, changed) = edit(&root, p)?;
        if !changed {
            let head = String::from_utf8_lossy(
                &git(Some(&root), &["rev-parse", "HEAD"]).await.map_err(g)?,
            )
            .trim()
            .to_owned();
            log(&format!(
                "{file} already has {}; nothing to commit",
                p.image
            ));
            return Ok(Promoted {
                commit: head,
                changed: false,
                previous,
                file,
                attempts: attempt,
            });
        }
        git(Some(&root), &["add", "--", &file]).await.map_err(g)?;
        git(Some(&root), &["commit", "--quiet", "-m", &msg])
            .await
            .map_err(g)?;
        let commit =
            String::from_utf8_lossy(&git(Some(&root), &["rev-parse", "HEAD"]).await.map_err(g)?)
                .trim()
                .to_owned();
        match git(
            Some(&root),
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{}", p.branch),
            ],
        )
        .await
        {
            Ok(_) => {
                log(&format!(
                    "Pushed {commit} to {} ({file}: {})",
                    p.branch, p.image
                ));
                return Ok(Promoted {
                    commit,
                    changed: true,
                    previous,
                    file,
                    attempts: attempt,
                });
            }
            Err(e) if is_non_fast_forward(&e) && attempt < attempts => {
                log(&format!(
                    "Push rejected (the branch moved); retrying on the new tip (attempt {})",
                    attempt + 1
                ));
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(e) => return Err(g(e)),
        }
    }
    Err(fail(format!(
        "the push was rejected {attempts} times (the branch keeps moving)"
    )))
}

/// The built-in action: inputs `repository`, `branch` (main), `path`, `image`, and optionally
/// `yaml-path`, `service`, `kustomize-name`, `attempts` (5), `source-commit`, `run`,
/// `source-repository` (the runner fills the last three from the `github` context).
/// Outputs: `commit`, `changed`, `previous`, `file`.
pub async fn action(
    inputs: &IndexMap<String, String>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<IndexMap<String, String>, PromoteError> {
    const KNOWN: &[&str] = &[
        "repository",
        "branch",
        "path",
        "image",
        "yaml-path",
        "service",
        "kustomize-name",
        "attempts",
        "source-commit",
        "run",
        "source-repository",
    ];
    if let Some(k) = inputs.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(fail(format!(
            "unknown input `{k}` (known: {})",
            KNOWN.join(", ")
        )));
    }
    let get = |k: &str| inputs.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let required = |k: &str| get(k).ok_or_else(|| fail(format!("input `{k}` is required")));
    let placement = match (get("yaml-path"), get("service"), get("kustomize-name")) {
        (Some(y), None, None) => Placement::YamlPath(y.to_owned()),
        (None, Some(s), None) => Placement::Service(s.to_owned()),
        (None, None, Some(n)) => Placement::Kustomize(Some(n.to_owned())),
        (None, None, None) => Placement::Auto,
        _ => {
            return Err(fail(
                "give at most one of `yaml-path`, `service`, `kustomize-name`",
            ));
        }
    };
    let attempts = match get("attempts") {
        None => 5,
        Some(a) => a
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| fail(format!("input `attempts`: {a:?} is not a positive number")))?,
    };
    let p = Promote {
        repository: required("repository")?.to_owned(),
        branch: get("branch").unwrap_or("main").to_owned(),
        path: required("path")?.to_owned(),
        image: required("image")?.to_owned(),
        placement,
        source_commit: get("source-commit").map(str::to_owned),
        run: get("run").map(str::to_owned),
        source_repository: get("source-repository").map(str::to_owned),
        attempts,
    };
    let done = promote(&p, log).await?;
    let mut out = IndexMap::new();
    out.insert("commit".into(), done.commit);
    out.insert("changed".into(), done.changed.to_string());
    out.insert("previous".into(), done.previous.unwrap_or_default());
    out.insert("file".into(), done.file);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn p(path: &str, placement: Placement) -> Promote {
        Promote {
            repository: String::new(),
            branch: "main".into(),
            path: path.into(),
            image: format!("reg:5000/team/web@{D1}"),
            placement,
            source_commit: Some("abc".into()),
            run: Some("7".into()),
            source_repository: Some("team/web".into()),
            attempts: 1,
        }
    }

    #[test]
    fn edits_each_placement() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("apps/web")).unwrap();
        std::fs::write(r.join("apps/web/app.yaml"), "services:\n  db:\n    image: reg:5000/team/db@sha256:00\n  web:\n    image: reg:5000/team/web:old # comment\n").unwrap();
        let (file, prev, changed) = edit(r, &p("apps/web", Placement::Auto)).unwrap();
        assert_eq!(
            (file.as_str(), prev.as_deref(), changed),
            ("apps/web/app.yaml", Some("reg:5000/team/web:old"), true)
        );
        assert!(
            std::fs::read_to_string(r.join("apps/web/app.yaml"))
                .unwrap()
                .contains(&format!("image: reg:5000/team/web@{D1} # comment"))
        );
        assert!(
            !edit(r, &p("apps/web", Placement::Auto)).unwrap().2,
            "a second promote of the same image changes nothing"
        );

        std::fs::create_dir_all(r.join("k")).unwrap();
        std::fs::write(
            r.join("k/kustomization.yaml"),
            "resources: [d.yaml]\nimages:\n- name: reg:5000/team/web\n  digest: sha256:00\n",
        )
        .unwrap();
        edit(r, &p("k", Placement::Auto)).unwrap();
        assert_eq!(
            std::fs::read_to_string(r.join("k/kustomization.yaml")).unwrap(),
            format!("resources: [d.yaml]\nimages:\n- name: reg:5000/team/web\n  digest: {D1}\n")
        );
        std::fs::write(r.join("k/kustomization.yaml"), "resources: [d.yaml]\n").unwrap();
        edit(r, &p("k", Placement::Auto)).unwrap();
        let k: serde_json::Value = serde_saphyr::from_str(
            &std::fs::read_to_string(r.join("k/kustomization.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(k["images"][0]["digest"], D1);
        assert_eq!(k["resources"][0], "d.yaml");

        std::fs::write(r.join("d.yaml"), "spec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: x\n").unwrap();
        edit(
            r,
            &p(
                "d.yaml",
                Placement::YamlPath("spec.template.spec.containers[name=web].image".into()),
            ),
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(r.join("d.yaml"))
                .unwrap()
                .ends_with(&format!("image: reg:5000/team/web@{D1}\n"))
        );
    }

    #[test]
    fn refuses_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let mut q = p("x", Placement::Auto);
        q.image = "reg/web:v1".into();
        assert!(
            edit(d.path(), &q)
                .unwrap_err()
                .to_string()
                .contains("not pinned by digest")
        );
        let e = edit(d.path(), &p("x", Placement::Auto))
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither a kustomization nor an app.yaml"), "{e}");
        assert!(
            edit(d.path(), &p("../etc", Placement::Auto))
                .unwrap_err()
                .to_string()
                .contains("leaves the repository")
        );
    }

    #[test]
    fn message_has_trailers() {
        let m = message(&p("apps/web", Placement::Auto));
        assert!(
            m.starts_with(&format!("Promote reg:5000/team/web to {D1} in apps/web\n")),
            "{m}"
        );
        let prov = crate::git::provenance(&m);
        assert_eq!(prov.source_commit.as_deref(), Some("abc"));
        assert_eq!(prov.run.as_deref(), Some("7"));
    }
}
