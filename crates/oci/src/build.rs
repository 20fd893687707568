//! The daemonless image builder: a Dockerfile and a context in, an image (manifest, config,
//! layers) in the local store out — byte-for-byte the same on every run and machine.
//!
//! - Stages are built only when the target needs them; `FROM` takes `scratch`, an earlier
//!   stage, `oci-layout://DIR[:tag]` or a registry image (pulled into the store once; `pull`
//!   refreshes it).
//! - `COPY`/`ADD` layers are written straight from the sources (no root filesystem needed);
//!   `RUN` unpacks the stage into a scratch directory and runs in [`crate::sandbox`].
//! - Layer cache: a layer is looked up by a key over the parent chain, the instruction and its
//!   inputs — the source files' identity (path, size, mtime, ctime, inode, mode) for `COPY`,
//!   the environment for `RUN`. A hit skips reading the sources; the stored layer is
//!   content-addressed, so a stale key can only miss, never give wrong content.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::context::{Ignore, is_glob, resolve_in_root};
use crate::digest::{Digest, Hasher};
use crate::dockerfile::{self, CommandForm, Dockerfile, DockerfileError, Instruction};
use crate::layer::{self, Entry, Kind, LayerBlob, LayerError, clean_rel};
use crate::layout::{Layout, LayoutError};
use crate::manifest::{
    Compression, ContainerConfig, Descriptor, History, ImageConfig, Index, Manifest, Platform,
    RootFs, media, rfc3339,
};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError};
use crate::sandbox;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A mistake in the Dockerfile or its arguments (the CLI exits 2).
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    #[error("{file}:{line}: {what}")]
    Step {
        file: String,
        line: usize,
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{file}:{line}: RUN failed with exit code {code}: {command}")]
    RunFailed {
        file: String,
        line: usize,
        command: String,
        code: i32,
    },
    #[error(
        "{file}:{line}: RUN needs a sandbox to run without a daemon: apt-get install bubblewrap"
    )]
    NoSandbox { file: String, line: usize },
    #[error("reading the Dockerfile {path}")]
    ReadDockerfile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the build context {path} is not a directory")]
    Context {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Ignore(String),
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Layer(#[from] LayerError),
}

impl BuildError {
    /// Whether this is a user error in the Dockerfile (exit code 2).
    pub fn is_dockerfile_error(&self) -> bool {
        matches!(self, BuildError::Dockerfile(_))
    }
}

/// Everything a build needs, passed in (the library reads no environment).
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// Default: `CONTEXT/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub target: Option<String>,
    /// Full references to tag the result with in the local store.
    pub tags: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: every timestamp in the image.
    pub source_date_epoch: i64,
    pub compression: Compression,
    /// The store and layer cache (see [`default_cache_dir`]).
    pub cache_dir: PathBuf,
    pub no_cache: bool,
    /// Pull base images even when the store has them.
    pub pull: bool,
    pub platform: Platform,
}

impl BuildOptions {
    pub fn new(context: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            context: context.into(),
            dockerfile: None,
            build_args: vec![],
            labels: vec![],
            target: None,
            tags: vec![],
            source_date_epoch: 0,
            compression: Compression::None,
            cache_dir: cache_dir.into(),
            no_cache: false,
            pull: false,
            platform: crate::manifest::host_platform(),
        }
    }
}

/// `$XDG_CACHE_HOME/slipway`, else `~/.cache/slipway`, else a directory under the temp dir.
pub fn default_cache_dir(xdg_cache_home: Option<&Path>, home: Option<&Path>) -> PathBuf {
    match (xdg_cache_home, home) {
        (Some(x), _) if !x.as_os_str().is_empty() => x.join("slipway"),
        (_, Some(h)) if !h.as_os_str().is_empty() => h.join(".cache/slipway"),
        _ => std::env::temp_dir().join("slipway-cache"),
    }
}

/// The local image store: an OCI layout plus the layer cache.
#[derive(Clone, Debug)]
pub struct Store {
    pub layout: Layout,
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, BuildError> {
        let layout = Layout::create(&dir.join("oci"))?;
        for sub in ["layers", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|source| BuildError::Io {
                action: "creating",
                path: p,
                source,
            })?;
        }
        Ok(Store {
            layout,
            dir: dir.to_path_buf(),
        })
    }

    fn cached(&self, key: &Digest) -> Option<LayerBlob> {
        let bytes = fs::read(self.dir.join("layers").join(key.hex())).ok()?;
        let blob: LayerBlob = serde_json::from_slice(&bytes).ok()?;
        self.layout
            .has_blob(&blob.descriptor.digest)
            .then_some(blob)
    }

    fn remember(&self, key: &Digest, blob: &LayerBlob) {
        // A failed cache write only costs a rebuild next time.
        let _ = crate::layout::atomic_write(
            &self.dir.join("layers").join(key.hex()),
            &crate::layout::to_json(blob),
        );
    }

    fn tempdir(&self, prefix: &str) -> Result<tempfile::TempDir, BuildError> {
        let p = self.dir.join("tmp");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&p)
            .map_err(|source| BuildError::Io {
                action: "creating a directory in",
                path: p,
                source,
            })
    }
}

/// The result of a build.
#[derive(Clone, Debug)]
pub struct Built {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub image: ImageConfig,
    /// `registry/repository`s the base layers came from (cross-repository mount candidates).
    pub sources: Vec<(String, String)>,
}

struct Stage {
    name: Option<String>,
    config: ImageConfig,
    layers: Vec<LayerBlob>,
    args: BTreeMap<String, String>,
    chain: Digest,
    rootfs: Option<(tempfile::TempDir, usize)>,
    cmd_set: bool,
    sources: Vec<(String, String)>,
    base: Option<(String, Digest)>,
}

type Log<'a> = &'a (dyn Fn(&str) + Send + Sync);

struct Builder<'a> {
    opts: &'a BuildOptions,
    df: Dockerfile,
    store: Store,
    client: &'a Client,
    log: Log<'a>,
    context: PathBuf,
    ignore: Ignore,
    meta_args: BTreeMap<String, String>,
    build_args: HashMap<String, String>,
    created: String,
}

/// Builds the image described by `opts`; tags it in the local store.
pub async fn build(
    opts: &BuildOptions,
    client: &Client,
    log: Log<'_>,
) -> Result<Built, BuildError> {
    let context = fs::canonicalize(&opts.context).map_err(|source| BuildError::Context {
        path: opts.context.clone(),
        source,
    })?;
    if !context.is_dir() {
        return Err(BuildError::Context {
            path: opts.context.clone(),
            source: std::io::Error::other("not a directory"),
        });
    }
    let df_path = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    let text = fs::read_to_string(&df_path).map_err(|source| BuildError::ReadDockerfile {
        path: df_path.clone(),
        source,
    })?;
    let df = dockerfile::parse(&df_path.display().to_string(), &text)?;
    let store = Store::open(&opts.cache_dir)?;
    let ignore = Ignore::load(&context).map_err(BuildError::Ignore)?;
    let build_args: HashMap<String, String> = opts.build_args.iter().cloned().collect();
    let mut b = Builder {
        opts,
        df,
        store,
        client,
        log,
        context,
        ignore,
        meta_args: BTreeMap::new(),
        build_args,
        created: rfc3339(opts.source_date_epoch),
    };
    b.run().await
}

fn key_of(parts: &[&[u8]]) -> Digest {
    let mut h = Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finish()
}

fn predefined_args(p: &Platform) -> BTreeMap<String, String> {
    let plat = format!("{}/{}", p.os, p.architecture);
    [
        ("TARGETPLATFORM", plat.clone()),
        ("TARGETOS", p.os.clone()),
        ("TARGETARCH", p.architecture.clone()),
        ("TARGETVARIANT", p.variant.clone().unwrap_or_default()),
        ("BUILDPLATFORM", plat),
        ("BUILDOS", p.os.clone()),
        ("BUILDARCH", p.architecture.clone()),
        ("BUILDVARIANT", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Builder<'_> {
    fn derr(&self, line: usize, msg: impl std::fmt::Display) -> BuildError {
        BuildError::Dockerfile(self.df.error(line, msg))
    }

    fn step(
        &self,
        line: usize,
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> BuildError {
        BuildError::Step {
            file: self.df.file.clone(),
            line,
            what: what.into(),
            source: Box::new(source),
        }
    }

    async fn run(&mut self) -> Result<Built, BuildError> {
        // Global ARGs (before the first FROM) are visible to FROM lines only.
        let instructions = self.df.instructions.clone();
        let first_from = instructions
            .iter()
            .position(|i| i.keyword == "FROM")
            .unwrap_or(0);
        for ins in &instructions[..first_from] {
            let pairs = self.arg_pairs(ins, &self.meta_args.clone())?;
            for (k, default) in pairs {
                let v = self
                    .build_args
                    .get(&k)
                    .cloned()
                    .or(default)
                    .unwrap_or_default();
                self.meta_args.insert(k, v);
            }
        }
        // Split into stages.
        let mut stages: Vec<(usize, Vec<Instruction>)> = Vec::new();
        for ins in &instructions[first_from..] {
            if ins.keyword == "FROM" {
                stages.push((ins.line, vec![ins.clone()]));
            } else if let Some(last) = stages.last_mut() {
                last.1.push(ins.clone());
            }
        }
        let names: Vec<Option<String>> = stages
            .iter()
            .map(|(_, ins)| self.stage_name(&ins[0]))
            .collect::<Result<_, _>>()?;
        for (i, n) in names.iter().enumerate() {
            if let Some(n) = n
                && names[..i].iter().any(|m| m.as_deref() == Some(n.as_str()))
            {
                return Err(self.derr(stages[i].0, format!("duplicate stage name {n:?}")));
            }
        }
        let target = match &self.opts.target {
            Some(t) => names
                .iter()
                .position(|n| n.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| self.derr(stages[0].0, format!("target stage {t:?} not found")))?,
            None => stages.len() - 1,
        };
        let mut built: Vec<Option<Stage>> = (0..stages.len()).map(|_| None).collect();
        let needed = self.needed_stages(&stages, &names, target)?;
        for i in 0..=target {
            if !needed[i] {
                continue;
            }
            let st = self
                .build_stage(i, &stages[i].1, &names, &mut built)
                .await?;
            built[i] = Some(st);
        }
        let stage = built[target].take().expect("the target stage was built");
        self.finish(stage)
    }

    fn stage_name(&self, from: &Instruction) -> Result<Option<String>, BuildError> {
        let words: Vec<&str> = from.rest.split_whitespace().collect();
        match words.as_slice() {
            [_] => Ok(None),
            [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                let n = name.to_ascii_lowercase();
                let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if ok {
                    Ok(Some(n))
                } else {
                    Err(self.derr(from.line, format!("invalid stage name {name:?}")))
                }
            }
            _ => Err(self.derr(from.line, "FROM takes an image and an optional `AS name`")),
        }
    }

    fn base_name(&self, from: &Instruction) -> Result<String, BuildError> {
        let raw = from.rest.split_whitespace().next().unwrap_or_default();
        let vars = |n: &str| self.meta_args.get(n).cloned();
        let v =
            dockerfile::expand(raw, &vars, self.df.escape).map_err(|e| self.derr(from.line, e))?;
        if v.is_empty() {
            return Err(self.derr(
                from.line,
                format!("FROM {raw} expands to an empty image name"),
            ));
        }
        Ok(v)
    }

    fn needed_stages(
        &self,
        stages: &[(usize, Vec<Instruction>)],
        names: &[Option<String>],
        target: usize,
    ) -> Result<Vec<bool>, BuildError> {
        let mut needed = vec![false; stages.len()];
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if needed[i] {
                continue;
            }
            needed[i] = true;
            let mut refs = vec![self.base_name(&stages[i].1[0])?];
            for ins in &stages[i].1[1..] {
                if ins.keyword == "COPY"
                    && let Some(f) = ins.flag_value("from")
                {
                    let vars = |n: &str| self.meta_args.get(n).cloned();
                    refs.push(
                        dockerfile::expand(f, &vars, self.df.escape)
                            .map_err(|e| self.derr(ins.line, e))?,
                    );
                }
            }
            for r in refs {
                let r = r.to_ascii_lowercase();
                if let Some(j) = names.iter().position(|n| n.as_deref() == Some(r.as_str()))
                    && j < i
                {
                    todo.push(j);
                } else if let Ok(j) = r.parse::<usize>()
                    && j < i
                {
                    todo.push(j);
                }
            }
        }
        Ok(needed)
    }

    fn arg_pairs(
        &self,
        ins: &Instruction,
        vars_src: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, Option<String>)>, BuildError> {
        let vars = |n: &str| vars_src.get(n).cloned();
        let words = dockerfile::split_words(&ins.rest, &vars, self.df.escape)
            .map_err(|e| self.derr(ins.line, e))?;
        Ok(words
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            })
            .collect())
    }

    async fn build_stage(
        &mut self,
        index: usize,
        ins: &[Instruction],
        names: &[Option<String>],
        built: &mut [Option<Stage>],
    ) -> Result<Stage, BuildError> {
        let from = &ins[0];
        let image = self.base_name(from)?;
        if let Some(p) = from.flag_value("platform") {
            let want = format!(
                "{}/{}",
                self.opts.platform.os, self.opts.platform.architecture
            );
            let vars = |n: &str| {
                self.meta_args
                    .get(n)
                    .cloned()
                    .or_else(|| predefined_args(&self.opts.platform).get(n).cloned())
            };
            let p = dockerfile::expand(p, &vars, self.df.escape)
                .map_err(|e| self.derr(from.line, e))?;
            if p != want {
                return Err(self.derr(
                    from.line,
                    format!("--platform={p} is not supported (this builder builds {want})"),
                ));
            }
        }
        (self.log)(&format!(
            "[{}/{}] {}",
            index + 1,
            names.len(),
            from.original
        ));
        let mut st = self
            .base_stage(&image, from.line, names, index, built)
            .await?;
        st.name = names[index].clone();
        for ins in &ins[1..] {
            (self.log)(&format!("#{} {}", ins.line, ins.original));
            self.instruction(&mut st, ins, names, built).await?;
        }
        Ok(st)
    }

    fn empty_stage(&self) -> Stage {
        let p = &self.opts.platform;
        let mut config = ContainerConfig::default();
        config.env_set("PATH", DEFAULT_PATH);
        Stage {
            name: None,
            config: ImageConfig {
                architecture: p.architecture.clone(),
                os: p.os.clone(),
                variant: p.variant.clone(),
                config,
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![],
                },
                ..Default::default()
            },
            layers: vec![],
            args: BTreeMap::new(),
            chain: key_of(&[b"scratch"]),
            rootfs: None,
            cmd_set: false,
            sources: vec![],
            base: None,
        }
    }

    fn clone_stage(s: &Stage) -> Stage {
        Stage {
            name: None,
            config: s.config.clone(),
            layers: s.layers.clone(),
            args: BTreeMap::new(),
            chain: s.chain.clone(),
            rootfs: None,
            cmd_set: false,
            sources: s.sources.clone(),
            base: s.base.clone(),
        }
    }

    /// The stage an image name refers to: an earlier stage, scratch, a layout or a registry image.
    async fn base_stage(
        &mut self,
        image: &str,
        line: usize,
        names: &[Option<String>],
        index: usize,
        built: &[Option<Stage>],
    ) -> Result<Stage, BuildError> {
        let lower = image.to_ascii_lowercase();
        if let Some(j) = names[..index]
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
        {
            let s = built[j].as_ref().expect("needed stages are built in order");
            return Ok(Self::clone_stage(s));
        }
        if lower == "scratch" {
            return Ok(self.empty_stage());
        }
        self.image_stage(image, line).await
    }

    async fn image_stage(&mut self, image: &str, line: usize) -> Result<Stage, BuildError> {
        let layout = &self.store.layout;
        let (desc, base_name, source) = if let Some(rest) = image.strip_prefix("oci-layout://") {
            let (dir, tag) = split_layout_ref(rest);
            let src = Layout::open(Path::new(dir))
                .map_err(|e| self.step(line, format!("opening {image}"), e))?;
            let mut desc = src
                .resolve(tag)
                .map_err(|e| self.step(line, format!("resolving {image}"), e))?;
            if media::is_index(&desc.media_type) {
                desc = self.pick_platform(&src, &desc, line, image)?;
            }
            copy_image(&src, layout, &desc)
                .map_err(|e| self.step(line, format!("copying {image} into the store"), e))?;
            (desc, image.to_string(), None)
        } else {
            let r: Reference = image.parse().map_err(|e| self.derr(line, e))?;
            let name = r.to_string();
            let local = if self.opts.pull {
                None
            } else {
                layout
                    .resolve(Some(&name))
                    .ok()
                    .filter(|d| have_image(layout, d))
            };
            let desc = match local {
                Some(d) => d,
                None => {
                    (self.log)(&format!("pulling {name}"));
                    let pulled = self
                        .client
                        .pull(&r, &self.opts.platform, layout)
                        .await
                        .map_err(|e: RegistryError| {
                            self.step(line, format!("pulling {name}"), e)
                        })?;
                    layout.set_ref(&name, pulled.descriptor.clone(), None)?;
                    pulled.descriptor
                }
            };
            (desc, name, Some((r.registry.clone(), r.repository.clone())))
        };
        let manifest: Manifest = serde_json::from_slice(&layout.read_blob(&desc.digest)?)
            .map_err(|e| self.step(line, format!("reading the manifest of {image}"), e))?;
        let config: ImageConfig =
            serde_json::from_slice(&layout.read_blob(&manifest.config.digest)?)
                .map_err(|e| self.step(line, format!("reading the config of {image}"), e))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(self.derr(
                line,
                format!(
                    "{image}: the config lists {} layers, the manifest {}",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            ));
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(d, id)| LayerBlob {
                descriptor: d.clone(),
                diff_id: id.clone(),
            })
            .collect();
        let mut st = self.empty_stage();
        if config.config.env_get("PATH").is_none() {
            let mut c = config.clone();
            c.config.env_set("PATH", DEFAULT_PATH);
            st.config = c;
        } else {
            st.config = config;
        }
        st.config.config.on_build = None;
        st.layers = layers;
        st.chain = key_of(&[b"image", desc.digest.as_str().as_bytes()]);
        st.sources = source.into_iter().collect();
        st.base = Some((base_name, desc.digest.clone()));
        Ok(st)
    }

    fn pick_platform(
        &self,
        src: &Layout,
        index: &Descriptor,
        line: usize,
        image: &str,
    ) -> Result<Descriptor, BuildError> {
        let idx: Index = serde_json::from_slice(&src.read_blob(&index.digest)?)
            .map_err(|e| self.step(line, format!("reading the index of {image}"), e))?;
        let p = &self.opts.platform;
        idx.manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_none_or(|q| q.os == p.os && q.architecture == p.architecture)
                    && media::is_manifest(&d.media_type)
            })
            .cloned()
            .ok_or_else(|| {
                self.derr(
                    line,
                    format!("{image} has no image for {}/{}", p.os, p.architecture),
                )
            })
    }

    fn vars<'s>(&self, st: &'s Stage) -> impl Fn(&str) -> Option<String> + 's {
        move |n: &str| {
            st.config
                .config
                .env_get(n)
                .map(str::to_string)
                .or_else(|| st.args.get(n).cloned())
        }
    }

    fn words(&self, st: &Stage, ins: &Instruction) -> Result<Vec<String>, BuildError> {
        let vars = self.vars(st);
        match ins.command_form() {
            CommandForm::Exec(v) => v
                .iter()
                .map(|w| dockerfile::expand(w, &vars, self.df.escape))
                .collect::<Result<_, _>>(),
            CommandForm::Shell(s) => dockerfile::split_words(&s, &vars, self.df.escape),
        }
        .map_err(|e| self.derr(ins.line, e))
    }

    fn expand1(&self, st: &Stage, ins: &Instruction, s: &str) -> Result<String, BuildError> {
        let vars = self.vars(st);
        dockerfile::expand(s, &vars, self.df.escape).map_err(|e| self.derr(ins.line, e))
    }

    fn exec_form(&self, st: &Stage, ins: &Instruction) -> Vec<String> {
        match ins.command_form() {
            CommandForm::Exec(v) => v,
            CommandForm::Shell(s) => {
                let mut v = st
                    .config
                    .config
                    .shell
                    .clone()
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                v.push(s);
                v
            }
        }
    }

    fn history(&self, st: &mut Stage, ins: &Instruction, empty: bool) {
        st.config.history.push(History {
            created: Some(self.created.clone()),
            created_by: Some(ins.original.clone()),
            comment: None,
            empty_layer: empty,
        });
    }

    async fn instruction(
        &mut self,
        st: &mut Stage,
        ins: &Instruction,
        names: &[Option<String>],
        built: &mut [Option<Stage>],
    ) -> Result<(), BuildError> {
        let line = ins.line;
        match ins.keyword.as_str() {
            "ARG" => {
                let mut scope = self.meta_args.clone();
                scope.extend(st.args.clone());
                for (k, default) in self.arg_pairs(ins, &scope)? {
                    let v = self
                        .build_args
                        .get(&k)
                        .cloned()
                        .or(default)
                        .or_else(|| self.meta_args.get(&k).cloned())
                        .or_else(|| predefined_args(&self.opts.platform).get(&k).cloned())
                        .unwrap_or_default();
                    st.args.insert(k, v);
                }
                self.history(st, ins, true);
            }
            "ENV" => {
                let pairs = {
                    let vars = self.vars(st);
                    dockerfile::key_values(&ins.rest, &vars, self.df.escape, true)
                        .map_err(|e| self.derr(line, e))?
                };
                for (k, v) in pairs {
                    st.config.config.env_set(&k, &v);
                }
                self.history(st, ins, true);
            }
            "LABEL" => {
                let pairs = {
                    let vars = self.vars(st);
                    dockerfile::key_values(&ins.rest, &vars, self.df.escape, false)
                        .map_err(|e| self.derr(line, e))?
                };
                st.config.config.labels.extend(pairs);
                self.history(st, ins, true);
            }
            "MAINTAINER" => {
                st.config.author = Some(ins.rest.clone());
                self.history(st, ins, true);
            }
            "WORKDIR" => {
                let w = self.expand1(st, ins, ins.rest.trim())?;
                let base = st
                    .config
                    .config
                    .working_dir
                    .clone()
                    .unwrap_or_else(|| "/".into());
                let joined = Path::new("/").join(clean_rel(&Path::new(&base).join(&w)));
                st.config.config.working_dir = Some(joined.display().to_string());
                self.history(st, ins, true);
            }
            "USER" => {
                let u = self.expand1(st, ins, ins.rest.trim())?;
                st.config.config.user = Some(u);
                self.history(st, ins, true);
            }
            "EXPOSE" => {
                for w in self.words(st, ins)? {
                    let (port, proto) = w.split_once('/').unwrap_or((&w, "tcp"));
                    let ok = port.split('-').all(|p| p.parse::<u16>().is_ok())
                        && matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp");
                    if !ok {
                        return Err(self.derr(line, format!("invalid port {w:?}")));
                    }
                    st.config.config.exposed_ports.insert(
                        format!("{port}/{}", proto.to_ascii_lowercase()),
                        serde_json::json!({}),
                    );
                }
                self.history(st, ins, true);
            }
            "ENTRYPOINT" => {
                st.config.config.entrypoint = Some(self.exec_form(st, ins));
                if !st.cmd_set {
                    st.config.config.cmd = None;
                }
                self.history(st, ins, true);
            }
            "CMD" => {
                st.config.config.cmd = Some(self.exec_form(st, ins));
                st.cmd_set = true;
                self.history(st, ins, true);
            }
            "VOLUME" => {
                for v in self.words(st, ins)? {
                    st.config.config.volumes.insert(v, serde_json::json!({}));
                }
                self.history(st, ins, true);
            }
            "STOPSIGNAL" => {
                st.config.config.stop_signal = Some(self.expand1(st, ins, ins.rest.trim())?);
                self.history(st, ins, true);
            }
            "SHELL" => match ins.command_form() {
                CommandForm::Exec(v) if !v.is_empty() => {
                    st.config.config.shell = Some(v);
                    self.history(st, ins, true);
                }
                _ => {
                    return Err(self.derr(
                        line,
                        "SHELL requires the JSON form: SHELL [\"executable\", \"parameters\"]",
                    ));
                }
            },
            "ONBUILD" => {
                st.config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(ins.rest.clone());
                self.history(st, ins, true);
            }
            "HEALTHCHECK" => {
                st.config.config.healthcheck = Some(self.healthcheck(st, ins)?);
                self.history(st, ins, true);
            }
            "COPY" | "ADD" => self.copy(st, ins, names, built).await?,
            "RUN" => self.run_step(st, ins)?,
            "FROM" => unreachable!("FROM starts a stage"),
            other => return Err(self.derr(line, format!("unknown instruction: {other}"))),
        }
        Ok(())
    }

    fn healthcheck(&self, st: &Stage, ins: &Instruction) -> Result<serde_json::Value, BuildError> {
        let rest = ins.rest.trim();
        if rest.eq_ignore_ascii_case("none") {
            return Ok(serde_json::json!({ "Test": ["NONE"] }));
        }
        let Some(cmd) = rest
            .get(..3)
            .filter(|c| c.eq_ignore_ascii_case("cmd"))
            .map(|_| rest[3..].trim())
        else {
            return Err(self.derr(ins.line, "HEALTHCHECK takes NONE or CMD <command>"));
        };
        let test: Vec<String> = match serde_json::from_str::<Vec<String>>(cmd) {
            Ok(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
            Err(_) => vec!["CMD-SHELL".into(), cmd.to_string()],
        };
        let mut h = serde_json::json!({ "Test": test });
        for (flag, key) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ] {
            if let Some(v) = ins.flag_value(flag) {
                let v = self.expand1(st, ins, v)?;
                let ns = parse_duration(&v).ok_or_else(|| {
                    self.derr(ins.line, format!("--{flag}: invalid duration {v:?}"))
                })?;
                h[key] = serde_json::json!(ns);
            }
        }
        if let Some(v) = ins.flag_value("retries") {
            let n: u64 = v
                .parse()
                .map_err(|_| self.derr(ins.line, format!("--retries: not a number: {v:?}")))?;
            h["Retries"] = serde_json::json!(n);
        }
        Ok(h)
    }

    /// Brings the stage's root filesystem up to date (unpacking layers not applied yet).
    fn materialize(&self, st: &mut Stage, line: usize) -> Result<PathBuf, BuildError> {
        if st.rootfs.is_none() {
            st.rootfs = Some((self.store.tempdir("rootfs-")?, 0));
        }
        let (dir, applied) = st.rootfs.as_mut().expect("just set");
        for l in &st.layers[*applied..] {
            let r = layer::open_layer(&self.store.layout, &l.descriptor)?;
            layer::apply_layer(r, dir.path()).map_err(|e| BuildError::Step {
                file: self.df.file.clone(),
                line,
                what: format!("unpacking layer {}", l.descriptor.digest),
                source: Box::new(e),
            })?;
        }
        *applied = st.layers.len();
        Ok(dir.path().to_path_buf())
    }

    fn push_layer(&self, st: &mut Stage, ins: &Instruction, key: &Digest, blob: LayerBlob) {
        st.chain = key.clone();
        st.config.rootfs.diff_ids.push(blob.diff_id.clone());
        st.layers.push(blob);
        self.history(st, ins, false);
    }

    fn parse_chown(
        &self,
        st: &mut Stage,
        ins: &Instruction,
        spec: &str,
    ) -> Result<(u64, u64), BuildError> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let needs_lookup =
            u.parse::<u64>().is_err() || g.is_some_and(|g| g.parse::<u64>().is_err());
        let (passwd, group) = if needs_lookup {
            let root = self.materialize(st, ins.line)?;
            (
                fs::read_to_string(root.join("etc/passwd")).unwrap_or_default(),
                fs::read_to_string(root.join("etc/group")).unwrap_or_default(),
            )
        } else {
            (String::new(), String::new())
        };
        let lookup = |db: &str, name: &str, field: usize| -> Option<u64> {
            db.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name))
                    .then(|| f.get(field).and_then(|v| v.parse().ok()))
                    .flatten()
            })
        };
        let uid = match u.parse::<u64>() {
            Ok(n) => n,
            Err(_) => lookup(&passwd, u, 2).ok_or_else(|| {
                self.derr(
                    ins.line,
                    format!("--chown: unknown user {u:?} (not in the stage's /etc/passwd)"),
                )
            })?,
        };
        let gid = match g {
            None if u.parse::<u64>().is_ok() => uid,
            None => lookup(&passwd, u, 3).unwrap_or(uid),
            Some(g) => match g.parse::<u64>() {
                Ok(n) => n,
                Err(_) => lookup(&group, g, 2).ok_or_else(|| {
                    self.derr(
                        ins.line,
                        format!("--chown: unknown group {g:?} (not in the stage's /etc/group)"),
                    )
                })?,
            },
        };
        Ok((uid, gid))
    }

    async fn copy(
        &mut self,
        st: &mut Stage,
        ins: &Instruction,
        names: &[Option<String>],
        built: &mut [Option<Stage>],
    ) -> Result<(), BuildError> {
        let line = ins.line;
        let add = ins.keyword == "ADD";
        for unsupported in ["parents", "exclude", "checksum", "keep-git-dir"] {
            if ins.flag(unsupported).is_some() {
                return Err(self.derr(
                    line,
                    format!(
                        "{} --{unsupported} is not supported by slipway's builder",
                        ins.keyword
                    ),
                ));
            }
        }
        let words = self.words(st, ins)?;
        if words.len() < 2 {
            return Err(self.derr(
                line,
                format!(
                    "{} needs at least one source and a destination",
                    ins.keyword
                ),
            ));
        }
        let (dest_raw, srcs) = words.split_last().expect("two or more words");
        let chown = match ins.flag_value("chown") {
            Some(c) => {
                let c = self.expand1(st, ins, c)?;
                Some(self.parse_chown(st, ins, &c)?)
            }
            None => None,
        };
        let chmod = match ins.flag_value("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| self.derr(line, format!("--chmod: invalid octal mode {m:?}")))?,
            ),
            None => None,
        };
        let workdir = st
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let dest_is_dir = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = clean_rel(&Path::new(&workdir).join(dest_raw));
        // Where sources come from.
        let from = match ins.flag_value("from") {
            Some(f) => Some(self.expand1(st, ins, f)?),
            None => None,
        };
        let mut from_stage: Option<Stage> = None;
        let mut from_chain: Option<Digest> = None;
        if let Some(f) = &from {
            let lower = f.to_ascii_lowercase();
            let idx = names
                .iter()
                .position(|n| n.as_deref() == Some(lower.as_str()))
                .or_else(|| lower.parse::<usize>().ok().filter(|i| *i < names.len()));
            match idx {
                Some(j) if built.get(j).is_some_and(Option::is_some) => {
                    from_chain = built[j].as_ref().map(|s| s.chain.clone());
                }
                Some(_) => {
                    return Err(self.derr(
                        line,
                        format!("COPY --from={f}: that stage comes later or is the current one"),
                    ));
                }
                None => {
                    let bare = !f.contains(['/', ':', '@', '.']);
                    if f.contains(char::is_whitespace) || f.is_empty() || bare {
                        let stages: Vec<&str> =
                            names.iter().flatten().map(String::as_str).collect();
                        let known = if stages.is_empty() {
                            "this Dockerfile names no stages".to_string()
                        } else {
                            format!("stages: {}", stages.join(", "))
                        };
                        return Err(self.derr(line, format!(
                            "COPY --from={f}: no stage named {f:?} ({known}); to copy from an image, give a full reference such as docker.io/library/{f}:latest"
                        )));
                    }
                    let s = self.image_stage(f, line).await?;
                    from_chain = Some(s.chain.clone());
                    from_stage = Some(s);
                }
            }
        }
        for s in srcs {
            if add
                && (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@"))
            {
                return Err(self.derr(line, format!("ADD {s}: fetching URLs is not supported (builds have no network); download it in an earlier step and COPY it")));
            }
        }
        if srcs.len() > 1 && !dest_is_dir {
            return Err(self.derr(
                line,
                format!(
                    "{} with more than one source needs a destination directory ending in /",
                    ins.keyword
                ),
            ));
        }
        let flags_key = format!(
            "{:?}|{chown:?}|{chmod:?}|{}|{}",
            words, self.opts.compression as u8, self.opts.source_date_epoch
        );

        // COPY --from: the key is the source stage's chain; the rootfs is only unpacked on a miss.
        if let Some(fc) = &from_chain {
            let key = key_of(&[
                st.chain.as_str().as_bytes(),
                b"COPY-FROM",
                fc.as_str().as_bytes(),
                flags_key.as_bytes(),
            ]);
            if !self.opts.no_cache
                && let Some(blob) = self.store.cached(&key)
            {
                self.push_layer(st, ins, &key, blob);
                return Ok(());
            }
            let root = match &mut from_stage {
                Some(s) => self.materialize(s, line)?,
                None => {
                    let lower = from.as_deref().unwrap_or_default().to_ascii_lowercase();
                    let j = names
                        .iter()
                        .position(|n| n.as_deref() == Some(lower.as_str()))
                        .or_else(|| lower.parse::<usize>().ok())
                        .expect("checked above");
                    let mut s = built[j].take().expect("checked above");
                    let r = self.materialize(&mut s, line);
                    built[j] = Some(s);
                    r?
                }
            };
            let mut entries = BTreeMap::new();
            for s in srcs {
                let rel = clean_rel(Path::new(s));
                let matches = if is_glob(s) {
                    glob_in(&root, &rel, None)
                } else {
                    let p = resolve_in_root(&root, &rel);
                    if fs::symlink_metadata(&p).is_err() {
                        return Err(self.derr(
                            line,
                            format!(
                                "COPY --from={}: {s} not found",
                                from.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                    vec![(rel, p)]
                };
                if matches.is_empty() {
                    return Err(self.derr(
                        line,
                        format!(
                            "COPY --from={}: no files match {s}",
                            from.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                let many = matches.len() > 1;
                for (rel, p) in matches {
                    collect(
                        &p,
                        &rel,
                        &dest,
                        dest_is_dir || many,
                        None,
                        Attrs {
                            chown,
                            chmod,
                            normalise: false,
                        },
                        &mut entries,
                        &mut Hasher::new(),
                    )
                    .map_err(|e| self.step(line, format!("reading {}", p.display()), e))?;
                }
            }
            let blob = layer::write_layer(
                &self.store.layout,
                entries.into_values(),
                self.mtime(),
                self.opts.compression,
            )?;
            self.store.remember(&key, &blob);
            self.push_layer(st, ins, &key, blob);
            return Ok(());
        }

        // From the context: the key covers the identity of every source file.
        let mut entries = BTreeMap::new();
        let mut fp = Hasher::new();
        let mut extracted = Vec::new();
        for s in srcs {
            let rel = clean_rel(Path::new(s));
            if escapes(Path::new(s)) {
                return Err(self.derr(
                    line,
                    format!(
                        "{} {s}: the source is outside the build context",
                        ins.keyword
                    ),
                ));
            }
            let matches = if is_glob(s) {
                glob_in(&self.context, &rel, Some(&self.ignore))
            } else {
                let p = self.context.join(&rel);
                let real = resolve_in_root(&self.context, &rel);
                if fs::symlink_metadata(&p).is_err() {
                    return Err(self.derr(
                        line,
                        format!(
                            "{} {s}: not found in the build context {}",
                            ins.keyword,
                            self.opts.context.display()
                        ),
                    ));
                }
                if !rel.as_os_str().is_empty() && self.ignore.is_ignored(&rel) {
                    return Err(self.derr(
                        line,
                        format!("{} {s}: excluded by .dockerignore", ins.keyword),
                    ));
                }
                vec![(rel, real)]
            };
            if matches.is_empty() {
                return Err(self.derr(
                    line,
                    format!("{} {s}: no files in the build context match", ins.keyword),
                ));
            }
            let many = matches.len() > 1;
            for (rel, p) in matches {
                if add && p.is_file() && is_archive(&p) {
                    let dir = self.store.tempdir("add-")?;
                    extract_archive(&p, dir.path())
                        .map_err(|e| self.step(line, format!("extracting {}", p.display()), e))?;
                    fingerprint(&mut fp, &rel, &p);
                    collect(
                        dir.path(),
                        Path::new(""),
                        &dest,
                        true,
                        None,
                        Attrs {
                            chown,
                            chmod,
                            normalise: false,
                        },
                        &mut entries,
                        &mut Hasher::new(),
                    )
                    .map_err(|e| self.step(line, format!("reading {}", p.display()), e))?;
                    extracted.push(dir);
                    continue;
                }
                collect(
                    &p,
                    &rel,
                    &dest,
                    dest_is_dir || many,
                    Some(&self.ignore),
                    Attrs {
                        chown,
                        chmod,
                        normalise: true,
                    },
                    &mut entries,
                    &mut fp,
                )
                .map_err(|e| self.step(line, format!("reading {}", p.display()), e))?;
            }
        }
        let fp = fp.finish();
        let key = key_of(&[
            st.chain.as_str().as_bytes(),
            ins.keyword.as_bytes(),
            fp.as_str().as_bytes(),
            flags_key.as_bytes(),
        ]);
        if !self.opts.no_cache
            && let Some(blob) = self.store.cached(&key)
        {
            self.push_layer(st, ins, &key, blob);
            return Ok(());
        }
        let blob = layer::write_layer(
            &self.store.layout,
            entries.into_values(),
            self.mtime(),
            self.opts.compression,
        )?;
        drop(extracted);
        self.store.remember(&key, &blob);
        self.push_layer(st, ins, &key, blob);
        Ok(())
    }

    fn mtime(&self) -> u64 {
        u64::try_from(self.opts.source_date_epoch).unwrap_or(0)
    }

    fn run_step(&mut self, st: &mut Stage, ins: &Instruction) -> Result<(), BuildError> {
        let line = ins.line;
        if let Some(m) = ins.flag_value("network")
            && m != "none"
            && m != "default"
        {
            return Err(self.derr(line, format!("RUN --network={m}: builds have no network")));
        }
        if ins.flag("mount").is_some() {
            return Err(self.derr(line, "RUN --mount is not supported by slipway's builder"));
        }
        let argv = self.exec_form(st, ins);
        let workdir = st
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in &st.args {
            if st.config.config.env_get(k).is_none() {
                env.push((k.clone(), v.clone()));
            }
        }
        for kv in &st.config.config.env {
            if let Some((k, v)) = kv.split_once('=') {
                env.push((k.into(), v.into()));
            }
        }
        env.sort();
        let user = st.config.config.user.clone().unwrap_or_default();
        let key = key_of(&[
            st.chain.as_str().as_bytes(),
            b"RUN",
            format!(
                "{argv:?}|{env:?}|{workdir}|{user}|{}|{}",
                self.opts.compression as u8, self.opts.source_date_epoch
            )
            .as_bytes(),
        ]);
        if !self.opts.no_cache
            && let Some(blob) = self.store.cached(&key)
        {
            self.push_layer(st, ins, &key, blob);
            return Ok(());
        }
        let Some(bwrap) = sandbox::bwrap() else {
            return Err(BuildError::NoSandbox {
                file: self.df.file.clone(),
                line,
            });
        };
        let root = self.materialize(st, line)?;
        let wd = root.join(clean_rel(Path::new(&workdir)));
        fs::create_dir_all(&wd).map_err(|source| BuildError::Io {
            action: "creating the working directory",
            path: wd,
            source,
        })?;
        let uid_gid = if user.is_empty() || user == "root" || user == "0" || user == "0:0" {
            None
        } else {
            let (u, g) = self.parse_chown(st, ins, &user)?;
            Some((u32::try_from(u).unwrap_or(0), u32::try_from(g).unwrap_or(0)))
        };
        let snap = |r: &Path| {
            sandbox::snapshot(r).map_err(|source| BuildError::Io {
                action: "scanning",
                path: r.to_path_buf(),
                source,
            })
        };
        let before = snap(&root)?;
        let log = self.log;
        let spec = sandbox::RunSpec {
            root: &root,
            argv: &argv,
            env: &env,
            workdir: &workdir,
            user: uid_gid,
        };
        let code = sandbox::run(&bwrap, &spec, &|l| log(&format!("#{line} {l}")))
            .map_err(|e| self.step(line, "starting bwrap", e))?;
        if code != 0 {
            return Err(BuildError::RunFailed {
                file: self.df.file.clone(),
                line,
                command: ins.rest.clone(),
                code,
            });
        }
        let after = snap(&root)?;
        let entries = sandbox::diff(&root, &before, &after);
        let blob = layer::write_layer(
            &self.store.layout,
            entries,
            self.mtime(),
            self.opts.compression,
        )?;
        self.store.remember(&key, &blob);
        self.push_layer(st, ins, &key, blob);
        if let Some((_, applied)) = st.rootfs.as_mut() {
            *applied = st.layers.len();
        }
        Ok(())
    }

    fn finish(&self, st: Stage) -> Result<Built, BuildError> {
        let layout = &self.store.layout;
        let mut image = st.config;
        image.created = Some(self.created.clone());
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "org.opencontainers.image.created".to_string(),
            self.created.clone(),
        );
        if let Some((url, rev)) = git_source(&self.context) {
            if let Some(u) = url {
                annotations.insert("org.opencontainers.image.source".into(), u);
            }
            annotations.insert("org.opencontainers.image.revision".into(), rev);
        }
        for (k, v) in &annotations {
            image.config.labels.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.opts.labels {
            image.config.labels.insert(k.clone(), v.clone());
        }
        if let Some((name, digest)) = &st.base {
            annotations.insert("org.opencontainers.image.base.name".into(), name.clone());
            annotations.insert(
                "org.opencontainers.image.base.digest".into(),
                digest.to_string(),
            );
        }
        let config = layout.write_json(media::OCI_CONFIG, &image)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: config.clone(),
            layers: st.layers.iter().map(|l| l.descriptor.clone()).collect(),
            annotations,
        };
        let mut desc = layout.write_json(media::OCI_MANIFEST, &manifest)?;
        desc.platform = Some(Platform {
            architecture: image.architecture.clone(),
            os: image.os.clone(),
            variant: image.variant.clone(),
        });
        for t in &self.opts.tags {
            layout.set_ref(t, desc.clone(), None)?;
        }
        Ok(Built {
            manifest: desc,
            config,
            image,
            sources: st.sources,
        })
    }
}

/// Splits `DIR[:tag]` (a tag has no `/`).
fn split_layout_ref(s: &str) -> (&str, Option<&str>) {
    match s.rsplit_once(':') {
        Some((d, t)) if !t.contains('/') && !t.is_empty() && !d.is_empty() => (d, Some(t)),
        _ => (s, None),
    }
}

fn have_image(layout: &Layout, desc: &Descriptor) -> bool {
    let Ok(bytes) = layout.read_blob(&desc.digest) else {
        return false;
    };
    let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
        return false;
    };
    layout.has_blob(&m.config.digest) && m.layers.iter().all(|l| layout.has_blob(&l.digest))
}

/// Copies an image (manifest, config, layers) between layouts.
pub fn copy_image(from: &Layout, to: &Layout, desc: &Descriptor) -> Result<(), LayoutError> {
    to.import_blob(from, &desc.digest)?;
    let bytes = from.read_blob(&desc.digest)?;
    if media::is_index(&desc.media_type) {
        if let Ok(idx) = serde_json::from_slice::<Index>(&bytes) {
            for m in &idx.manifests {
                copy_image(from, to, m)?;
            }
        }
        return Ok(());
    }
    if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
        to.import_blob(from, &m.config.digest)?;
        for l in &m.layers {
            to.import_blob(from, &l.digest)?;
        }
    }
    Ok(())
}

fn escapes(p: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[derive(Clone, Copy)]
struct Attrs {
    chown: Option<(u64, u64)>,
    chmod: Option<u32>,
    /// Context files: 0644/0755 by the executable bit, directories 0755.
    normalise: bool,
}

impl Attrs {
    fn apply(&self, md: &fs::Metadata) -> (u32, u64, u64) {
        let raw = md.mode() & 0o7777;
        let mode = match (self.chmod, self.normalise) {
            (Some(m), _) => m,
            (None, true) if md.is_dir() => 0o755,
            (None, true) if raw & 0o111 != 0 => 0o755,
            (None, true) => 0o644,
            (None, false) => raw,
        };
        let (uid, gid) = match (self.chown, self.normalise) {
            (Some(c), _) => c,
            (None, _) => (0, 0),
        };
        (mode, uid, gid)
    }
}

fn fingerprint(fp: &mut Hasher, rel: &Path, p: &Path) {
    if let Ok(md) = fs::symlink_metadata(p) {
        fp.update(rel.as_os_str().as_encoded_bytes());
        fp.update(
            format!(
                "|{}|{}|{}|{}|{}|{}|{}|{}\0",
                md.dev(),
                md.ino(),
                md.size(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec(),
                md.mode()
            )
            .as_bytes(),
        );
    }
}

/// Adds the entries for one source (`path` on disk, `rel` its name in the source root) to
/// `entries`: a directory's contents go into `dest`; a file goes to `dest` or `dest/name`.
#[allow(clippy::too_many_arguments)]
fn collect(
    path: &Path,
    rel: &Path,
    dest: &Path,
    dest_is_dir: bool,
    ignore: Option<&Ignore>,
    attrs: Attrs,
    entries: &mut BTreeMap<PathBuf, Entry>,
    fp: &mut Hasher,
) -> std::io::Result<()> {
    let md = fs::metadata(path)?;
    if !md.is_dir() {
        let target = if dest_is_dir || dest.as_os_str().is_empty() {
            dest.join(rel.file_name().or(path.file_name()).unwrap_or_default())
        } else {
            dest.to_path_buf()
        };
        fingerprint(fp, rel, path);
        let (mode, uid, gid) = attrs.apply(&md);
        entries.insert(
            target.clone(),
            Entry {
                path: target,
                kind: Kind::File {
                    source: path.to_path_buf(),
                },
                mode,
                uid,
                gid,
            },
        );
        return Ok(());
    }
    if !dest.as_os_str().is_empty() {
        let (mode, uid, gid) = attrs.apply(&md);
        entries.insert(
            dest.to_path_buf(),
            Entry {
                path: dest.to_path_buf(),
                kind: Kind::Dir,
                mode,
                uid,
                gid,
            },
        );
    }
    let prune = ignore.is_some_and(|i| !i.has_exceptions());
    let walker = walkdir::WalkDir::new(path)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            !(prune
                && e.file_type().is_dir()
                && ignore.is_some_and(|i| {
                    e.path()
                        .strip_prefix(path)
                        .is_ok_and(|r| i.is_ignored(&rel.join(r)))
                }))
        });
    for e in walker {
        let e = e.map_err(std::io::Error::other)?;
        let sub = e.path().strip_prefix(path).map_err(std::io::Error::other)?;
        if ignore.is_some_and(|i| i.is_ignored(&rel.join(sub))) {
            continue;
        }
        let md = e.path().symlink_metadata()?;
        fingerprint(fp, &rel.join(sub), e.path());
        let target = dest.join(sub);
        let (mode, uid, gid) = attrs.apply(&md);
        let kind = if md.file_type().is_symlink() {
            Kind::Symlink {
                target: fs::read_link(e.path())?,
            }
        } else if md.is_dir() {
            Kind::Dir
        } else if md.is_file() {
            Kind::File {
                source: e.path().to_path_buf(),
            }
        } else {
            continue;
        };
        let mode = if matches!(kind, Kind::Symlink { .. }) {
            0o777
        } else {
            mode
        };
        entries.insert(
            target.clone(),
            Entry {
                path: target,
                kind,
                mode,
                uid,
                gid,
            },
        );
    }
    Ok(())
}

/// Files under `root` whose relative path matches the glob `pattern`.
fn glob_in(root: &Path, pattern: &Path, ignore: Option<&Ignore>) -> Vec<(PathBuf, PathBuf)> {
    let Ok(glob) = globset::GlobBuilder::new(&pattern.to_string_lossy())
        .literal_separator(true)
        .build()
    else {
        return vec![];
    };
    let m = glob.compile_matcher();
    let depth = pattern.components().count();
    let deep = pattern.to_string_lossy().contains("**");
    walkdir::WalkDir::new(root)
        .min_depth(if deep { 1 } else { depth })
        .max_depth(if deep { usize::MAX } else { depth })
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let rel = e.path().strip_prefix(root).ok()?.to_path_buf();
            (m.is_match(&rel) && !ignore.is_some_and(|i| i.is_ignored(&rel)))
                .then(|| (rel, e.path().to_path_buf()))
        })
        .collect()
}

fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        let Ok(f) = fs::File::open(p) else {
            return false;
        };
        let mut gz = flate2::read::GzDecoder::new(f);
        let mut inner = [0u8; 512];
        return gz.read_exact(&mut inner).is_ok() && &inner[257..262] == b"ustar";
    }
    n >= 262 && &head[257..262] == b"ustar"
}

fn extract_archive(p: &Path, dir: &Path) -> Result<(), LayerError> {
    let f = fs::File::open(p).map_err(|source| LayerError::Io {
        action: "opening",
        path: p.to_path_buf(),
        source,
    })?;
    let mut r = std::io::BufReader::new(f);
    let gz = std::io::BufRead::fill_buf(&mut r)
        .map(|b| b.starts_with(&[0x1f, 0x8b]))
        .unwrap_or(false);
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    };
    layer::apply_layer(reader, dir)
}

/// The context's git remote `origin` (credentials stripped) and `HEAD` commit, when the
/// context is inside a git work tree.
fn git_source(context: &Path) -> Option<(Option<String>, String)> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(context)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let rev = git(&["rev-parse", "--verify", "-q", "HEAD"])?;
    let url = git(&["remote", "get-url", "origin"]).map(|u| strip_userinfo(&u));
    Some((url, rev))
}

fn strip_userinfo(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut url)
            if url.scheme() != "file"
                && (!url.username().is_empty() || url.password().is_some()) =>
        {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => u.to_string(),
    }
}

/// Parses a Go-style duration (`30s`, `1m30s`, `500ms`) into nanoseconds.
fn parse_duration(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += (n * mult) as u64;
        rest = &rest[u_end..];
    }
    Some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(
            strip_userinfo("https://u:tok@git.example/a/b.git"),
            "https://git.example/a/b.git"
        );
        assert_eq!(
            strip_userinfo("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
    }

    #[test]
    fn layout_refs() {
        assert_eq!(split_layout_ref("/tmp/x:v1"), ("/tmp/x", Some("v1")));
        assert_eq!(split_layout_ref("/tmp/x"), ("/tmp/x", None));
        assert_eq!(split_layout_ref("./a:b/c"), ("./a:b/c", None));
    }
}
