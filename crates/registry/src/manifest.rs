//! Just enough of the manifest formats to validate pushes and follow references:
//! OCI image manifest and index, Docker schema-2 manifest and manifest list.

use serde::{Deserialize, Serialize};
use store::blob::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: Option<i64>,
    pub media_type: Option<String>,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Option<Vec<Descriptor>>,
    pub manifests: Option<Vec<Descriptor>>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a manifest points at.
#[derive(Debug, Default)]
pub struct References {
    /// Blobs that must be stored (config and layers without `urls`).
    pub blobs: Vec<Digest>,
    /// Manifests that must be in the repository (children of an index).
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
}

/// A manifest failed validation.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("malformed JSON: {0}")]
    Json(serde_json::Error),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("Content-Type {header} does not match mediaType {body} in the manifest")]
    Mismatch { header: String, body: String },
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("{field} is missing")]
    Missing { field: &'static str },
    #[error("invalid digest {digest:?} in {field}")]
    Digest { field: &'static str, digest: String },
}

impl Manifest {
    /// Parse and check a pushed manifest; `content_type` is the request's Content-Type.
    /// Returns the manifest and its media type.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(Manifest, String), Invalid> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(Invalid::Json)?;
        let header = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()).filter(|c| !c.is_empty());
        let media_type = match (&header, &manifest.media_type) {
            (Some(h), Some(b)) if h != b && h != "application/json" => return Err(Invalid::Mismatch { header: h.clone(), body: b.clone() }),
            (_, Some(b)) => b.clone(),
            (Some(h), None) if h != "application/json" => h.clone(),
            _ if manifest.manifests.is_some() => OCI_INDEX.to_owned(),
            _ => OCI_MANIFEST.to_owned(),
        };
        if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&media_type.as_str()) {
            return Err(Invalid::MediaType(media_type));
        }
        if manifest.schema_version != Some(2) {
            return Err(Invalid::SchemaVersion);
        }
        if is_index(&media_type) {
            if manifest.manifests.is_none() {
                return Err(Invalid::Missing { field: "manifests" });
            }
        } else {
            if manifest.config.is_none() {
                return Err(Invalid::Missing { field: "config" });
            }
            if manifest.layers.is_none() && media_type == DOCKER_MANIFEST {
                return Err(Invalid::Missing { field: "layers" });
            }
        }
        Ok((manifest, media_type))
    }

    pub fn references(&self) -> Result<References, Invalid> {
        let digest = |field: &'static str, d: &Descriptor| Digest::parse(&d.digest).map_err(|_| Invalid::Digest { field, digest: d.digest.clone() });
        let mut refs = References::default();
        if let Some(config) = &self.config {
            refs.blobs.push(digest("config", config)?);
        }
        for layer in self.layers.iter().flatten() {
            let d = digest("layers", layer)?;
            if layer.urls.as_ref().is_none_or(|u| u.is_empty()) {
                refs.blobs.push(d);
            }
        }
        for m in self.manifests.iter().flatten() {
            refs.manifests.push(digest("manifests", m)?);
        }
        if let Some(subject) = &self.subject {
            refs.subject = Some(digest("subject", subject)?);
        }
        Ok(refs)
    }

    /// The artifact type a referrers listing reports for this manifest.
    pub fn artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| self.config.as_ref().and_then(|c| c.media_type.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, content_type: Option<&str>, expect: &str) {
        let got = match Manifest::parse(body.as_bytes(), content_type) {
            Ok((_, media_type)) => media_type,
            Err(e) => format!("error: {e}"),
        };
        assert!(got.starts_with(expect), "{body}: {got}");
    }

    #[test]
    fn media_types() {
        let cfg = r#""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]"#;
        check(&format!(r#"{{"schemaVersion":2,{cfg}}}"#), Some(OCI_MANIFEST), OCI_MANIFEST);
        check(&format!(r#"{{"schemaVersion":2,{cfg}}}"#), None, OCI_MANIFEST);
        check(&format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",{cfg}}}"#), None, DOCKER_MANIFEST);
        check(&format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",{cfg}}}"#), Some(OCI_MANIFEST), "error: Content-Type");
        check(r#"{"schemaVersion":2,"manifests":[]}"#, None, OCI_INDEX);
        check(r#"{"schemaVersion":1,"manifests":[]}"#, None, "error: schemaVersion");
        check(r#"{"schemaVersion":2,"#, None, "error: malformed JSON");
        check(r#"{"schemaVersion":2}"#, Some(OCI_MANIFEST), "error: config is missing");
        check(r#"{"schemaVersion":2}"#, Some("application/vnd.docker.distribution.manifest.v1+prettyjws"), "error: unsupported");
    }
}
