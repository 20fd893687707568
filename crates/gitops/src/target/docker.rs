//! The `docker` target: one container per service, named `<app>-<service>`, labelled with
//! the app, the service and the applied spec (JSON). The live spec is the label's spec with
//! what the engine shows overriding it (image, command, env values, running state), so a
//! container removed, stopped, or re-created by hand is seen as drift.
//!
//! Applying a service replaces its container (stop-first: published ports cannot be bound
//! twice): pull the image when the engine lacks it, remove the service's containers, create
//! and start the new one with restart policy `unless-stopped`, wait for its health check.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Log, Target, TargetError, live};
use crate::model::{HealthStatus, Key, LiveObject, Object};
use crate::render::Desired;

pub const APP_LABEL: &str = "slipway.gitops.app";
pub const SERVICE_LABEL: &str = "slipway.gitops.service";
pub const SPEC_LABEL: &str = "slipway.gitops.spec";

/// A Docker engine as a target.
pub struct DockerTarget {
    docker: Docker,
}

fn msg(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}

impl DockerTarget {
    /// Connects (and pings): `unix://...`, `tcp://...`; `None`: `DOCKER_HOST` or the default socket.
    pub async fn connect(endpoint: Option<&str>) -> Result<DockerTarget, TargetError> {
        let docker = deploy::docker::connect(endpoint)
            .await
            .map_err(|e| TargetError::new("connecting to", "the Docker engine", e))?;
        Ok(DockerTarget { docker })
    }

    pub fn container_name(app: &str, service: &str) -> String {
        format!("{app}-{service}")
    }

    /// (container name, service) of every container of `app`, oldest first.
    async fn containers(&self, app: &str) -> Result<Vec<(String, String)>, TargetError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{APP_LABEL}={app}")])]);
        let mut list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| TargetError::new("listing the containers of", app, msg(&e)))?;
        list.sort_by_key(|c| c.created.unwrap_or(0));
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_owned();
                let service = c.labels?.get(SERVICE_LABEL)?.clone();
                Some((name, service))
            })
            .collect())
    }

    async fn exec(&self, container: &str, cmd: &str) -> Result<(), String> {
        let exec = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), cmd.to_owned()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| msg(&e))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| msg(&e))?;
        let mut text = String::new();
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(Ok(chunk)) = output.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let info = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| msg(&e))?;
        match info.exit_code {
            Some(0) => Ok(()),
            code => Err(format!(
                "`{cmd}` exited with {}: {}",
                code.unwrap_or(-1),
                text.trim()
            )),
        }
    }

    /// The live spec and health of one container.
    async fn inspect(
        &self,
        name: &str,
    ) -> Result<Option<(Value, Result<(), (HealthStatus, String)>)>, TargetError> {
        let info = match self.docker.inspect_container(name, None).await {
            Ok(i) => i,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(TargetError::new("inspecting container", name, msg(&e))),
        };
        let config = info.config.unwrap_or_default();
        let labels = config.labels.clone().unwrap_or_default();
        let mut spec: Value = labels
            .get(SPEC_LABEL)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| json!({}));
        // What the engine shows wins over what the label says was applied.
        spec["image"] = json!(config.image);
        spec["command"] = match config.cmd.as_deref() {
            Some([sh, c, cmd]) if sh == "sh" && c == "-c" => json!(cmd),
            _ if spec.get("command").is_some_and(|c| !c.is_null()) => json!(config.cmd),
            _ => Value::Null,
        };
        let actual: BTreeMap<String, String> = config
            .env
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        if let Some(env) = spec.get_mut("env").and_then(Value::as_object_mut) {
            let keys: Vec<String> = env.keys().cloned().collect();
            for k in keys {
                match actual.get(&k) {
                    Some(v) => env.insert(k, json!(v)),
                    None => env.remove(&k),
                };
            }
        }
        let state = info.state.unwrap_or_default();
        let status = state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        spec["state"] = json!(status);
        let health = if status != "running" {
            Err((
                HealthStatus::Degraded,
                format!(
                    "the container is {status} (exit code {})",
                    state.exit_code.unwrap_or(-1)
                ),
            ))
        } else {
            let check = spec.get("health").cloned().unwrap_or(Value::Null);
            let engine = state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .unwrap_or_default();
            match super::check_once(&check, |cmd| async move { self.exec(name, &cmd).await }).await
            {
                Err(e) => Err((HealthStatus::Degraded, e)),
                Ok(()) if engine == "unhealthy" => Err((
                    HealthStatus::Degraded,
                    "the image's HEALTHCHECK reports unhealthy".into(),
                )),
                Ok(()) if engine == "starting" => Err((
                    HealthStatus::Progressing,
                    "the image's HEALTHCHECK is starting".into(),
                )),
                Ok(()) => Ok(()),
            }
        };
        Ok(Some((spec, health)))
    }

    async fn remove(&self, name: &str) -> Result<(), TargetError> {
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(TargetError::new("removing container", name, msg(&e))),
        }
    }

    async fn ensure_image(&self, image: &str, log: Log<'_>) -> Result<(), TargetError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(TargetError::new("inspecting image", image, msg(&e))),
        }
        log(&format!("Pulling {image}"));
        let (from, tag) =
            if image.contains('@') || image.rsplit('/').next().is_some_and(|l| l.contains(':')) {
                (image.to_owned(), None)
            } else {
                (image.to_owned(), Some("latest".to_owned()))
            };
        let mut progress = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(from),
                tag,
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(item) = progress.next().await {
            let m = match item {
                Ok(info) => info.error_detail.and_then(|e| e.message),
                Err(e) => Some(msg(&e)),
            };
            if let Some(m) = m {
                return Err(TargetError::new("pulling", image, m));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Target for DockerTarget {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn observe(
        &self,
        app: &str,
        _known: &[Key],
    ) -> Result<BTreeMap<Key, LiveObject>, TargetError> {
        let mut out = BTreeMap::new();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for (name, service) in self.containers(app).await? {
            *count.entry(service.clone()).or_default() += 1;
            let Some((mut spec, health)) = self.inspect(&name).await? else {
                continue;
            };
            if name != Self::container_name(app, &service) {
                spec["container"] = json!(name);
            }
            let (k, l) = live(Key::service(&service), spec, health);
            out.insert(k, l);
        }
        for (service, n) in count {
            if n > 1
                && let Some(l) = out.get_mut(&Key::service(&service))
            {
                // Two containers for one service (a crash between create and remove): drift.
                l.spec["duplicates"] = json!(n);
            }
        }
        Ok(out)
    }

    async fn apply(
        &self,
        app: &str,
        object: &Object,
        _desired: &Desired,
        log: Log<'_>,
    ) -> Result<(), TargetError> {
        let service = &object.key.name;
        let name = Self::container_name(app, service);
        let spec = &object.spec;
        let image = spec["image"].as_str().unwrap_or_default();
        self.ensure_image(image, log).await?;
        for (c, s) in self.containers(app).await? {
            if s == *service {
                log(&format!("Removing {c}"));
                self.remove(&c).await?;
            }
        }
        self.remove(&name).await?;
        let mut exposed = HashMap::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let (main, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let mut parts = main.rsplitn(3, ':');
            let (c, h, ip) = (parts.next(), parts.next(), parts.next());
            let key = format!("{}/{proto}", c.unwrap_or_default());
            exposed.insert(key.clone(), ());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: ip.map(str::to_owned),
                    host_port: h.map(str::to_owned),
                });
        }
        let env: Vec<String> = spec["env"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        let labels = HashMap::from([
            (APP_LABEL.to_owned(), app.to_owned()),
            (SERVICE_LABEL.to_owned(), service.clone()),
            (SPEC_LABEL.to_owned(), spec.to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: spec["command"]
                .as_str()
                .map(|c| vec!["sh".to_owned(), "-c".to_owned(), c.to_owned()]),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: (!exposed.is_empty()).then(|| exposed.into_keys().collect()),
            host_config: Some(HostConfig {
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                network_mode: spec["network"].as_str().map(str::to_owned),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        log(&format!("Starting {name} from {image}"));
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| TargetError::new("creating container", &name, msg(&e)))?;
        self.docker
            .start_container(&name, None)
            .await
            .map_err(|e| TargetError::new("starting container", &name, msg(&e)))?;
        let name2 = name.clone();
        super::wait_healthy(&spec["health"], |cmd| {
            let n = name2.clone();
            async move {
                match self.inspect(&n).await {
                    Ok(Some((s, _))) if s["state"] != "running" => {
                        Err(format!("the container is {}", s["state"]))
                    }
                    _ => self.exec(&n, &cmd).await,
                }
            }
        })
        .await
        .map_err(|e| TargetError::new("checking the health of", &name, e))?;
        Ok(())
    }

    async fn delete(&self, app: &str, key: &Key, log: Log<'_>) -> Result<(), TargetError> {
        for (c, s) in self.containers(app).await? {
            if s == key.name {
                log(&format!("Removing {c}"));
                self.remove(&c).await?;
            }
        }
        Ok(())
    }
}
