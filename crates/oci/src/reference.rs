//! Image references: `[registry[:port]/]repository[:tag][@sha256:...]`, with Docker's
//! defaults (`docker.io`, `library/`, `latest`).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host as written (`docker.io` when none was given).
    pub registry: String,
    /// Repository path (`library/busybox`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct InvalidReference {
    pub reference: String,
    pub reason: &'static str,
}

pub const DOCKER_HUB: &str = "docker.io";

impl Reference {
    /// The host to talk HTTP to (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The tag or digest to ask the registry for (`latest` when neither was given).
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.into()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at a digest.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Whether the registry is on the loopback interface (plain HTTP by default, as Docker does).
    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    &self.registry
                }
            });
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && c.as_bytes()[0].is_ascii_alphanumeric()
}

impl FromStr for Reference {
    type Err = InvalidReference;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|_| err("bad digest after @"))?),
            ),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path)
            }
            _ => (DOCKER_HUB.to_string(), rest),
        };
        // The tag is after the last ':' of the last path component.
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                && t.as_bytes()[0] != b'.'
                && t.as_bytes()[0] != b'-';
            if !ok {
                return Err(err("bad tag"));
            }
        }
        if !repo.split('/').all(valid_component) {
            return Err(err(
                "repository must be lowercase [a-z0-9._-] components separated by /",
            ));
        }
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo.to_string()
        };
        if registry.is_empty() {
            return Err(err("empty registry"));
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let r: Reference = input.parse().unwrap();
        let got = format!(
            "{} {} {} {}",
            r.registry,
            r.repository,
            r.tag.as_deref().unwrap_or("-"),
            r.target()
        );
        assert_eq!(got, expect, "{input}");
    }

    #[test]
    fn parses() {
        check("busybox", "docker.io library/busybox - latest");
        check("user/app:1.0", "docker.io user/app 1.0 1.0");
        check(
            "127.0.0.1:5000/team/app:v1",
            "127.0.0.1:5000 team/app v1 v1",
        );
        check("localhost/app", "localhost app - latest");
        check(
            "ghcr.io/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "ghcr.io a/b - sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
    }

    #[test]
    fn rejects() {
        for bad in ["", "UPPER/case", "a/b:", "a/b:-x", "a//b", "a@sha256:00"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback() {
        assert!(
            "127.0.0.1:5000/a"
                .parse::<Reference>()
                .unwrap()
                .is_loopback()
        );
        assert!(
            "localhost:5000/a"
                .parse::<Reference>()
                .unwrap()
                .is_loopback()
        );
        assert!(!"ghcr.io/a".parse::<Reference>().unwrap().is_loopback());
    }
}
