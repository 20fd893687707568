//! Actions: resolving `uses:` (local `./path`, remote `owner/repo[/path]@ref` fetched with
//! git into the cache, `docker://image`), reading `action.yml`, and running composite, node
//! and docker actions. Built-in actions live in [`crate::builtin`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};
use workflow::expr::{Condition, Template};
use workflow::{ActionRef, BoolOrExpr, Env, NumberOrExpr, Span, Step, StepKind};

use crate::RunOptions;
use crate::context::Ctx;
use crate::job::{JobRun, PostStep, Scope, StepResult, input_env_name};

/// A parsed `action.yml`.
#[derive(Debug, Clone)]
pub struct ActionDef {
    /// The directory holding `action.yml`.
    pub dir: PathBuf,
    pub name: String,
    /// Inputs: name -> (default template source, required).
    pub inputs: IndexMap<String, (Option<String>, bool)>,
    /// Outputs: name -> `value:` template source (composite actions).
    pub outputs: IndexMap<String, Option<String>>,
    pub runs: Runs,
    /// `owner/repo` and ref of a remote action (`GITHUB_ACTION_REPOSITORY`/`_REF`).
    pub repository: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Runs {
    Composite {
        steps: Vec<Step>,
    },
    Node {
        main: String,
        pre: Option<String>,
        pre_if: Option<String>,
        post: Option<String>,
        post_if: Option<String>,
    },
    Docker {
        image: String,
        entrypoint: Option<String>,
        args: Vec<String>,
        env: IndexMap<String, String>,
    },
}

/// A problem with an action definition or reference.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("can't find `action.yml` or `action.yaml` for action `{uses}` in {searched}")]
    NotFound { uses: String, searched: String },
    #[error("reading {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("fetching action `{uses}` from {url}: {message}")]
    Fetch {
        uses: String,
        url: String,
        message: String,
    },
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// Reads `action.yml` (or `action.yaml`) from `dir`.
pub fn load_action(dir: &Path, uses: &str) -> Result<ActionDef, ActionError> {
    let file = ["action.yml", "action.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| ActionError::NotFound {
            uses: uses.to_owned(),
            searched: dir.display().to_string(),
        })?;
    let text = std::fs::read_to_string(&file).map_err(|e| ActionError::Invalid {
        path: file.clone(),
        message: e.to_string(),
    })?;
    parse_action(&text, dir).map_err(|message| ActionError::Invalid {
        path: file,
        message,
    })
}

/// Parses the text of an `action.yml`.
pub fn parse_action(text: &str, dir: &Path) -> Result<ActionDef, String> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let obj = doc.as_object().ok_or("an action must be a mapping")?;
    let name = obj.get("name").and_then(scalar).unwrap_or_default();
    let mut inputs = IndexMap::new();
    if let Some(Value::Object(m)) = obj.get("inputs") {
        for (k, v) in m {
            let default = v.get("default").and_then(scalar);
            let required = v
                .get("required")
                .is_some_and(|r| matches!(r, Value::Bool(true)) || r == "true");
            inputs.insert(k.clone(), (default, required));
        }
    }
    let mut outputs = IndexMap::new();
    if let Some(Value::Object(m)) = obj.get("outputs") {
        for (k, v) in m {
            outputs.insert(k.clone(), v.get("value").and_then(scalar));
        }
    }
    let runs = obj
        .get("runs")
        .and_then(Value::as_object)
        .ok_or("`runs` is missing")?;
    let using = runs
        .get("using")
        .and_then(scalar)
        .ok_or("`runs.using` is missing")?
        .to_lowercase();
    let get = |k: &str| runs.get(k).and_then(scalar);
    let runs = match using.as_str() {
        "composite" => {
            let steps = match runs.get("steps") {
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, s)| parse_step(s, i))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => Vec::new(),
            };
            Runs::Composite { steps }
        }
        u if u.starts_with("node") => Runs::Node {
            main: get("main").ok_or("`runs.main` is missing")?,
            pre: get("pre"),
            pre_if: get("pre-if"),
            post: get("post"),
            post_if: get("post-if"),
        },
        "docker" => Runs::Docker {
            image: get("image").ok_or("`runs.image` is missing")?,
            entrypoint: get("entrypoint"),
            args: match runs.get("args") {
                Some(Value::Array(a)) => a.iter().filter_map(scalar).collect(),
                _ => Vec::new(),
            },
            env: match runs.get("env") {
                Some(Value::Object(m)) => m
                    .iter()
                    .filter_map(|(k, v)| scalar(v).map(|v| (k.clone(), v)))
                    .collect(),
                _ => IndexMap::new(),
            },
        },
        other => {
            return Err(format!(
                "`runs.using: {other}` is not supported (composite, node12/16/20/24, docker)"
            ));
        }
    };
    let _ = dir;
    Ok(ActionDef {
        dir: dir.to_path_buf(),
        name,
        inputs,
        outputs,
        runs,
        repository: None,
    })
}

fn template(v: &Value) -> Result<Template, String> {
    Template::parse(&scalar(v).unwrap_or_default()).map_err(|e| e.to_string())
}

/// Parses `uses:` of a composite step.
pub fn parse_uses(uses: &str) -> Result<ActionRef, String> {
    if let Some(image) = uses.strip_prefix("docker://") {
        return Ok(ActionRef::Docker {
            image: image.to_owned(),
        });
    }
    if uses.starts_with("./") || uses == "." {
        return Ok(ActionRef::Local {
            path: uses.to_owned(),
        });
    }
    let bad = || format!("invalid `uses: {uses}`: Expected format {{org}}/{{repo}}[/path]@ref");
    let (what, git_ref) = uses.split_once('@').ok_or_else(bad)?;
    let mut parts = what.splitn(3, '/');
    let owner = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let repo = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let path = parts.next().map(str::to_owned);
    if git_ref.is_empty() {
        return Err(bad());
    }
    Ok(ActionRef::Remote {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        path,
        git_ref: git_ref.to_owned(),
    })
}

/// A composite step (same keys as a workflow step, `shell` required by GitHub but optional here).
fn parse_step(v: &Value, index: usize) -> Result<Step, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("step {index} is not a mapping"))?;
    let t = |k: &str| o.get(k).map(template).transpose();
    let env = match o.get("env") {
        Some(Value::Object(m)) => Env {
            vars: m
                .iter()
                .map(|(k, v)| template(v).map(|t| (k.clone(), t)))
                .collect::<Result<_, _>>()?,
            expr: None,
        },
        Some(Value::String(s)) => Env {
            vars: IndexMap::new(),
            expr: Some(Template::parse(s).map_err(|e| e.to_string())?),
        },
        _ => Env::default(),
    };
    let condition = match o.get("if") {
        Some(v) => {
            Some(Condition::parse(&scalar(v).unwrap_or_default()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let continue_on_error = match o.get("continue-on-error") {
        Some(Value::Bool(b)) => BoolOrExpr::Bool(*b),
        Some(v) => BoolOrExpr::Expr(template(v)?),
        None => BoolOrExpr::Bool(false),
    };
    let timeout_minutes = match o.get("timeout-minutes") {
        Some(Value::Number(n)) => Some(NumberOrExpr::Number(n.as_f64().unwrap_or(0.0))),
        Some(v) => Some(NumberOrExpr::Expr(template(v)?)),
        None => None,
    };
    let kind = match (o.get("run"), o.get("uses")) {
        (Some(run), None) => StepKind::Run {
            script: template(run)?,
            shell: o.get("shell").and_then(scalar),
        },
        (None, Some(uses)) => {
            let with = match o.get("with") {
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| template(v).map(|t| (k.clone(), t)))
                    .collect::<Result<_, _>>()?,
                _ => IndexMap::new(),
            };
            StepKind::Uses {
                action: parse_uses(&scalar(uses).unwrap_or_default())?,
                with,
            }
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "step {index}: a step has either `run` or `uses`, not both"
            ));
        }
        (None, None) => return Err(format!("step {index}: missing run or uses key")),
    };
    Ok(Step {
        id: o.get("id").and_then(scalar),
        span: Span::default(),
        name: t("name")?,
        condition,
        env,
        continue_on_error,
        timeout_minutes,
        working_directory: t("working-directory")?,
        kind,
    })
}

/// Where a remote action is cached.
pub fn remote_cache_dir(options: &RunOptions, owner: &str, repo: &str, git_ref: &str) -> PathBuf {
    options
        .cache_dir
        .join("actions")
        .join(owner.to_lowercase())
        .join(repo.to_lowercase())
        .join(git_ref.replace('/', "%2F"))
}

/// Fetches (or finds in the cache) a remote action and reads its definition.
pub async fn fetch_remote(
    options: &RunOptions,
    action: &ActionRef,
) -> Result<ActionDef, ActionError> {
    let ActionRef::Remote {
        owner,
        repo,
        path,
        git_ref,
    } = action
    else {
        return Err(ActionError::Invalid {
            path: PathBuf::new(),
            message: "not a remote action".into(),
        });
    };
    let uses = crate::job::uses_string(action);
    let dest = remote_cache_dir(options, owner, repo, git_ref);
    if !dest.is_dir() {
        let url = format!(
            "{}/{owner}/{repo}",
            options.actions_url.trim_end_matches('/')
        );
        let fetch_err = |message: String| ActionError::Fetch {
            uses: uses.clone(),
            url: url.clone(),
            message,
        };
        let parent = dest
            .parent()
            .ok_or_else(|| fetch_err("bad cache path".into()))?;
        std::fs::create_dir_all(parent).map_err(|e| fetch_err(e.to_string()))?;
        let tmp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let git = |args: Vec<String>| {
            let tmp = tmp.clone();
            async move {
                let out = tokio::process::Command::new("git")
                    .args(["-c", "advice.detachedHead=false"])
                    .args(&args)
                    .current_dir(&tmp)
                    .env("GIT_TERMINAL_PROMPT", "0")
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|e| format!("running git: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
                }
            }
        };
        std::fs::create_dir_all(&tmp).map_err(|e| fetch_err(e.to_string()))?;
        let result = async {
            git(vec!["init".into(), "-q".into()]).await?;
            let fetched = git(vec![
                "fetch".into(),
                "-q".into(),
                "--depth".into(),
                "1".into(),
                url.clone(),
                git_ref.clone(),
            ])
            .await;
            if fetched.is_err() {
                // Not advertised as a ref (an abbreviated sha): full fetch.
                git(vec![
                    "fetch".into(),
                    "-q".into(),
                    url.clone(),
                    "+refs/heads/*:refs/remotes/origin/*".into(),
                    "+refs/tags/*:refs/tags/*".into(),
                ])
                .await?;
                git(vec!["checkout".into(), "-q".into(), git_ref.clone()]).await?;
            } else {
                git(vec!["checkout".into(), "-q".into(), "FETCH_HEAD".into()]).await?;
            }
            Ok::<(), String>(())
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(fetch_err(e));
        }
        let _ = std::fs::remove_dir_all(tmp.join(".git"));
        if std::fs::rename(&tmp, &dest).is_err() {
            // Another job fetched it at the same time.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    let dir = match path {
        Some(p) => dest.join(p),
        None => dest,
    };
    let mut def = load_action(&dir, &uses)?;
    def.repository = Some((format!("{owner}/{repo}"), git_ref.clone()));
    Ok(def)
}

impl JobRun {
    /// Evaluates an action's inputs: `with:` over the action's defaults.
    pub(crate) fn action_inputs(
        &self,
        def: &ActionDef,
        with: &IndexMap<String, Template>,
        ctx: &Ctx,
    ) -> Result<IndexMap<String, String>, String> {
        let mut out = IndexMap::new();
        for (k, (default, _)) in &def.inputs {
            if let Some(d) = default {
                let t = Template::parse(d).map_err(|e| format!("input `{k}` default: {e}"))?;
                out.insert(
                    k.clone(),
                    t.eval_string(ctx)
                        .map_err(|e| format!("input `{k}` default: {e}"))?,
                );
            }
        }
        for (k, t) in with {
            let v = t.eval_string(ctx).map_err(|e| format!("with.{k}: {e}"))?;
            let key = def
                .inputs
                .keys()
                .find(|d| d.eq_ignore_ascii_case(k))
                .cloned()
                .unwrap_or_else(|| k.clone());
            out.insert(key, v);
        }
        Ok(out)
    }

    /// Runs a `uses:` step.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_action(
        &mut self,
        action: &ActionRef,
        uses: &str,
        with: &IndexMap<String, Template>,
        ctx: &Ctx,
        step_env: &IndexMap<String, String>,
        scope: &mut Scope,
        step_no: usize,
        timeout: Option<Duration>,
        prefetched: Option<Arc<ActionDef>>,
        state_key: &str,
        step: &Step,
    ) -> Result<StepResult, String> {
        let def: Arc<ActionDef> = match action {
            ActionRef::Docker { image } => {
                let mut inputs = IndexMap::new();
                for (k, t) in with {
                    inputs.insert(
                        k.clone(),
                        t.eval_string(ctx).map_err(|e| format!("with.{k}: {e}"))?,
                    );
                }
                let mut env = self.process_env(scope, step_env, None, uses);
                for (k, v) in &inputs {
                    env.insert(input_env_name(k), v.clone());
                }
                let entrypoint = inputs.get("entrypoint").map(|e| vec![e.clone()]);
                let args = inputs
                    .get("args")
                    .map(|a| split_args(a))
                    .unwrap_or_default();
                let spec = crate::job::run_container_spec(
                    image,
                    env,
                    entrypoint,
                    args,
                    &self.dirs.workspace,
                );
                return Ok(self.run_container_step(spec, step_no, timeout).await);
            }
            ActionRef::Remote { .. } => {
                let name = action.remote_name().unwrap_or_default();
                if crate::builtin::is_builtin(&name) {
                    let mut inputs = IndexMap::new();
                    for (k, t) in with {
                        inputs.insert(
                            k.to_lowercase(),
                            t.eval_string(ctx).map_err(|e| format!("with.{k}: {e}"))?,
                        );
                    }
                    return crate::builtin::run(self, &name, inputs, step_no, step).await;
                }
                match prefetched {
                    Some(d) => d,
                    None => {
                        self.log_system(Some(step_no), format!("Resolving action {uses}"))
                            .await;
                        Arc::new(
                            fetch_remote(&self.shared.options, action)
                                .await
                                .map_err(|e| e.to_string())?,
                        )
                    }
                }
            }
            ActionRef::Local { path } => {
                let rel = path.trim_start_matches("./");
                let candidates = [
                    self.dirs.workspace.join(rel),
                    self.shared.options.repo_root.join(rel),
                ];
                let dir = candidates
                    .iter()
                    .find(|d| d.join("action.yml").is_file() || d.join("action.yaml").is_file());
                match dir {
                    Some(d) => Arc::new(load_action(d, uses).map_err(|e| e.to_string())?),
                    None => {
                        return Err(format!(
                            "can't find action `{uses}`: no action.yml or action.yaml in {} or {}",
                            candidates[0].display(),
                            candidates[1].display()
                        ));
                    }
                }
            }
        };
        let inputs = self.action_inputs(&def, with, ctx)?;
        for (k, (_, required)) in &def.inputs {
            if *required && !inputs.contains_key(k) {
                self.annotate(
                    Some(step_no),
                    "warning",
                    format!("Input required and not supplied: {k}"),
                )
                .await;
            }
        }
        match &def.runs {
            Runs::Node {
                main,
                post,
                post_if,
                ..
            } => {
                let r = self
                    .run_node(
                        &def, main, &inputs, step_env, scope, step_no, state_key, uses,
                    )
                    .await;
                if let Some(post) = post {
                    let mut env = step_env.clone();
                    for (k, v) in &inputs {
                        env.insert(input_env_name(k), v.clone());
                    }
                    self.post.push(PostStep::Node {
                        name: step
                            .name
                            .as_ref()
                            .map(|n| n.source().to_owned())
                            .unwrap_or_else(|| uses.to_owned()),
                        action: def.clone(),
                        script: post.clone(),
                        condition: post_if.clone(),
                        env,
                        state_key: state_key.to_owned(),
                    });
                }
                Ok(r)
            }
            Runs::Docker {
                image,
                entrypoint,
                args,
                env: action_env,
            } => {
                let built;
                let image = match image.strip_prefix("docker://") {
                    Some(image) => image,
                    None => {
                        built = dockerfile_image(&def.dir, image, uses)?;
                        built.as_str()
                    }
                };
                let mut ictx = ctx.clone();
                ictx.set(
                    "inputs",
                    Value::Object(
                        inputs
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                            .collect(),
                    ),
                );
                let mut env = self.process_env(scope, step_env, None, uses);
                for (k, v) in &inputs {
                    env.insert(input_env_name(k), v.clone());
                }
                for (k, v) in action_env {
                    let v = Template::parse(v)
                        .map_err(|e| e.to_string())?
                        .eval_string(&ictx)
                        .map_err(|e| e.to_string())?;
                    env.insert(k.clone(), v);
                }
                let mut eval_args = Vec::new();
                for a in args {
                    eval_args.push(
                        Template::parse(a)
                            .map_err(|e| e.to_string())?
                            .eval_string(&ictx)
                            .map_err(|e| e.to_string())?,
                    );
                }
                let spec = crate::job::run_container_spec(
                    image,
                    env,
                    entrypoint.as_ref().map(|e| vec![e.clone()]),
                    eval_args,
                    &self.dirs.workspace,
                );
                Ok(self.run_container_step(spec, step_no, timeout).await)
            }
            Runs::Composite { steps } => {
                if scope.depth > 20 {
                    return Err(format!(
                        "composite action `{uses}` nests deeper than 20 levels"
                    ));
                }
                let mut env = scope.env.clone();
                env.extend(step_env.iter().map(|(k, v)| (k.clone(), v.clone())));
                for (k, v) in &inputs {
                    env.insert(input_env_name(k), v.clone());
                }
                let mut inner = Scope {
                    steps: Map::new(),
                    inputs: Some(Value::Object(
                        inputs
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                            .collect(),
                    )),
                    env,
                    failed: false,
                    action_path: Some(def.dir.clone()),
                    event_step: Some(step_no),
                    depth: scope.depth + 1,
                };
                self.run_steps(steps, &mut inner).await;
                let mut octx = self.step_ctx(&inner, &IndexMap::new());
                octx.set("inputs", inner.inputs.clone().unwrap_or(Value::Null));
                let mut outputs = Map::new();
                for (k, v) in &def.outputs {
                    if let Some(v) = v {
                        let t = Template::parse(v).map_err(|e| format!("output `{k}`: {e}"))?;
                        match t.eval_string(&octx) {
                            Ok(v) => {
                                outputs.insert(k.clone(), Value::String(v));
                            }
                            Err(e) => {
                                self.annotate(
                                    Some(step_no),
                                    "warning",
                                    format!("output `{k}`: {e}"),
                                )
                                .await
                            }
                        }
                    }
                }
                let outcome = if inner.failed {
                    crate::StepOutcome::Failure
                } else if self.cancel.is_cancelled() {
                    crate::StepOutcome::Cancelled
                } else {
                    crate::StepOutcome::Success
                };
                Ok(StepResult { outcome, outputs })
            }
        }
    }
}

/// Splits a docker `args` string on whitespace (quotes group).
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `dockerfile://` reference of a docker action whose `runs.image` is a Dockerfile
/// (`Dockerfile` or a relative path inside the action's directory); the executor running
/// the step builds it in its engine.
fn dockerfile_image(dir: &Path, image: &str, uses: &str) -> Result<String, String> {
    let rel = Path::new(image);
    if image.is_empty()
        || rel.is_absolute()
        || rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
    {
        return Err(format!(
            "docker action `{uses}`: runs.image `{image}` must be `docker://IMAGE` or a path to a Dockerfile inside the action's directory"
        ));
    }
    let dockerfile = dir.join(rel);
    if !dockerfile.is_file() {
        return Err(format!(
            "docker action `{uses}`: the Dockerfile {} (runs.image `{image}`) does not exist",
            dockerfile.display()
        ));
    }
    Ok(crate::executor::docker::build::dockerfile_reference(
        &dockerfile,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_strings() {
        let ok = |s: &str, owner: &str, repo: &str, path: Option<&str>, r: &str| {
            assert_eq!(
                parse_uses(s),
                Ok(ActionRef::Remote {
                    owner: owner.into(),
                    repo: repo.into(),
                    path: path.map(Into::into),
                    git_ref: r.into()
                })
            );
        };
        ok("actions/checkout@v4", "actions", "checkout", None, "v4");
        ok("o/r/sub/dir@main", "o", "r", Some("sub/dir"), "main");
        assert!(parse_uses("actions/checkout").is_err());
        assert!(parse_uses("checkout@v1").is_err());
        assert!(parse_uses("o/r@").is_err());
        assert_eq!(
            parse_uses("./x"),
            Ok(ActionRef::Local { path: "./x".into() })
        );
        assert_eq!(
            parse_uses("docker://alpine:3"),
            Ok(ActionRef::Docker {
                image: "alpine:3".into()
            })
        );
    }

    #[test]
    fn docker_args() {
        assert_eq!(split_args(r#"a "b c" 'd'"#), vec!["a", "b c", "d"]);
    }
}
