//! A read-only view of what the registry holds, for a web UI: repositories, their tags, and
//! what a tag points at (digest, media type, total size, creation time, platforms of an
//! index). No auth here: the caller decides who may look.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use store::blob::{BlobError, Digest};

use crate::Registry;
use crate::manifest::is_index;

/// What one tag (or digest) points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
    /// Whether it is an index (a multi-platform image or manifest list).
    pub index: bool,
    /// Bytes of the manifest, its config and layers; of an index, with every child image.
    pub size: u64,
    /// The image config's `created`, if the image has one (of an index: its first child's).
    pub created: Option<String>,
    /// `os/architecture[/variant]` of each image of an index; of an image, its config's.
    pub platforms: Vec<String>,
    /// The digests of an index's child manifests.
    pub children: Vec<String>,
}

/// A tag and what it points at (`None`: the manifest is missing or unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    pub manifest: Option<ManifestInfo>,
}

/// A repository with its tag count and stored size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub name: String,
    pub tags: usize,
    /// Bytes of every distinct blob its tags reach (shared layers counted once).
    pub size: u64,
}

/// An error reading the registry's storage.
#[derive(Debug, thiserror::Error)]
#[error("reading the registry's {what}")]
pub struct BrowseError {
    what: &'static str,
    #[source]
    source: BlobError,
}

fn err(what: &'static str) -> impl FnOnce(BlobError) -> BrowseError {
    move |source| BrowseError { what, source }
}

fn platform(p: &Value) -> Option<String> {
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// The blobs a manifest reaches, with their sizes (manifests included).
type Blobs = HashMap<String, u64>;

impl Registry {
    /// Every repository's name, sorted.
    pub async fn repository_names(&self) -> Result<Vec<String>, BrowseError> {
        crate::api::repositories(self.inner.meta.as_ref())
            .await
            .map_err(err("repositories"))
    }

    /// The tags of repository `name`, sorted; `None`: no such repository.
    pub async fn tag_names(&self, name: &str) -> Result<Option<Vec<String>>, BrowseError> {
        if crate::path::validate_name(name).is_err() {
            return Ok(None);
        }
        let meta = &self.inner.meta;
        let repo = meta
            .children(&format!("repositories/{name}/_manifests/"))
            .await
            .map_err(err("repository"))?;
        if repo.prefixes.is_empty() {
            return Ok(None);
        }
        let mut tags = meta
            .list(&format!("repositories/{name}/_manifests/tags/"))
            .await
            .map_err(err("tags"))?;
        tags.sort();
        Ok(Some(tags))
    }

    /// A repository with its tag count and size; `None`: no such repository.
    pub async fn repository_info(&self, name: &str) -> Result<Option<RepositoryInfo>, BrowseError> {
        let Some(tags) = self.tag_names(name).await? else {
            return Ok(None);
        };
        let mut blobs = Blobs::new();
        let mut seen = BTreeSet::new();
        for tag in &tags {
            if let Some(d) = self.tag_digest(name, tag).await?
                && seen.insert(d.clone())
            {
                self.walk(&d, &mut blobs, &mut None, 0).await?;
            }
        }
        Ok(Some(RepositoryInfo {
            name: name.to_owned(),
            tags: tags.len(),
            size: blobs.values().sum(),
        }))
    }

    /// What tag `tag` of repository `name` points at; `None`: no such tag.
    pub async fn tag_info(&self, name: &str, tag: &str) -> Result<Option<TagInfo>, BrowseError> {
        let Some(digest) = self.tag_digest(name, tag).await? else {
            return Ok(None);
        };
        Ok(Some(TagInfo {
            tag: tag.to_owned(),
            manifest: self.manifest_info(&digest).await?,
        }))
    }

    /// Removes tag `tag` of repository `name` (the manifest stays until garbage collection
    /// finds it unreferenced). Returns the digest it pointed at; `None`: no such tag.
    pub async fn delete_tag(&self, name: &str, tag: &str) -> Result<Option<String>, BrowseError> {
        let Some(digest) = self.tag_digest(name, tag).await? else {
            return Ok(None);
        };
        self.inner
            .meta
            .delete(&format!("repositories/{name}/_manifests/tags/{tag}"))
            .await
            .map_err(err("tag"))?;
        Ok(Some(digest))
    }

    async fn tag_digest(&self, name: &str, tag: &str) -> Result<Option<String>, BrowseError> {
        if crate::path::validate_name(name).is_err() {
            return Ok(None);
        }
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_tag {
            return Ok(None);
        }
        let key = format!("repositories/{name}/_manifests/tags/{tag}");
        let Some(value) = self.inner.meta.get(&key).await.map_err(err("tag"))? else {
            return Ok(None);
        };
        Ok(std::str::from_utf8(&value)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| Digest::parse(s).is_ok()))
    }

    /// What the manifest `digest` is; `None`: not stored or not a manifest.
    pub async fn manifest_info(&self, digest: &str) -> Result<Option<ManifestInfo>, BrowseError> {
        let mut blobs = Blobs::new();
        let mut found = Some(Found::default());
        let Some(media_type) = self.walk(digest, &mut blobs, &mut found, 0).await? else {
            return Ok(None);
        };
        let found = found.unwrap_or_default();
        Ok(Some(ManifestInfo {
            digest: digest.to_owned(),
            index: is_index(&media_type),
            media_type,
            size: blobs.values().sum(),
            created: found.created,
            platforms: found.platforms,
            children: found.children,
        }))
    }

    /// Adds the blobs manifest `digest` reaches to `blobs`; returns its media type (`None`:
    /// not a readable manifest). `found` collects the top manifest's details.
    async fn walk(
        &self,
        digest: &str,
        blobs: &mut Blobs,
        found: &mut Option<Found>,
        depth: usize,
    ) -> Result<Option<String>, BrowseError> {
        let Ok(d) = Digest::parse(digest) else {
            return Ok(None);
        };
        let Some(bytes) = self
            .inner
            .blobs
            .read_bytes(&d)
            .await
            .map_err(err("manifest"))?
        else {
            return Ok(None);
        };
        let Ok(m) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(None);
        };
        blobs.insert(digest.to_owned(), bytes.len() as u64);
        let media_type = m
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                if m.get("manifests").is_some() {
                    crate::manifest::OCI_INDEX.to_owned()
                } else {
                    crate::manifest::OCI_MANIFEST.to_owned()
                }
            });
        if let Some(children) = m.get("manifests").and_then(Value::as_array) {
            for child in children {
                let Some(cd) = child.get("digest").and_then(Value::as_str) else {
                    continue;
                };
                if let Some(f) = found.as_mut() {
                    f.children.push(cd.to_owned());
                    if let Some(p) = child.get("platform").and_then(platform) {
                        f.platforms.push(p);
                    }
                }
                // One level of nesting is all an image has; don't follow cycles or deep trees.
                if depth < 2 && !blobs.contains_key(cd) {
                    let mut inner = found
                        .as_ref()
                        .filter(|f| f.created.is_none())
                        .map(|_| Found::default());
                    Box::pin(self.walk(cd, blobs, &mut inner, depth + 1)).await?;
                    if let (Some(f), Some(i)) = (found.as_mut(), inner)
                        && f.created.is_none()
                    {
                        f.created = i.created;
                    }
                }
            }
            return Ok(Some(media_type));
        }
        if let Some(config) = m.get("config") {
            let size = config.get("size").and_then(Value::as_u64).unwrap_or(0);
            if let Some(cd) = config.get("digest").and_then(Value::as_str) {
                blobs.insert(cd.to_owned(), size);
                if let Some(f) = found.as_mut()
                    && size <= 1 << 20
                    && let Ok(cdig) = Digest::parse(cd)
                    && let Some(cbytes) = self
                        .inner
                        .blobs
                        .read_bytes(&cdig)
                        .await
                        .map_err(err("image config"))?
                    && let Ok(c) = serde_json::from_slice::<Value>(&cbytes)
                {
                    f.created = c.get("created").and_then(Value::as_str).map(str::to_owned);
                    if f.platforms.is_empty()
                        && let Some(p) = platform(&c)
                    {
                        f.platforms.push(p);
                    }
                }
            }
        }
        for layer in m
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(ld), Some(size)) = (
                layer.get("digest").and_then(Value::as_str),
                layer.get("size").and_then(Value::as_u64),
            ) {
                blobs.insert(ld.to_owned(), size);
            }
        }
        Ok(Some(media_type))
    }
}

#[derive(Debug, Default)]
struct Found {
    created: Option<String>,
    platforms: Vec<String>,
    children: Vec<String>,
}
