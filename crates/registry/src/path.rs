//! Parsing request paths under `/v2/` into routes, and validating repository names,
//! tags and digests (so nothing from a path reaches storage unchecked).

use store::blob::Digest;

use crate::error::{bad_request, Code, Error};

/// Longest repository name accepted.
const MAX_NAME: usize = 255;

/// What a `/v2/...` path addresses. Names are validated; references are raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags { name: String },
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, id: String },
    Referrers { name: String, digest: String },
}

impl Route {
    /// The label used in metrics and access logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "upload",
            Route::Referrers { .. } => "referrers",
        }
    }
}

/// Parse the part of a path after `/v2/` (raw, not percent-decoded: `%` is never valid).
pub fn parse(rest: &str) -> Result<Route, Error> {
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let name_of = |upto: usize| -> Result<String, Error> {
        let name = segments[..upto].join("/");
        validate_name(&name)?;
        Ok(name)
    };
    let unknown = || Error::api(axum::http::StatusCode::NOT_FOUND, Code::NameUnknown, format!("no route for /v2/{}", truncate(rest)));
    if n >= 3 && segments[n - 2] == "tags" && segments[n - 1] == "list" {
        return Ok(Route::Tags { name: name_of(n - 2)? });
    }
    if n >= 3 && segments[n - 2] == "manifests" {
        return Ok(Route::Manifest { name: name_of(n - 2)?, reference: segments[n - 1].to_owned() });
    }
    if n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads" {
        return Ok(Route::UploadStart { name: name_of(n - 2)? });
    }
    if n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
        if segments[n - 1].is_empty() {
            return Ok(Route::UploadStart { name: name_of(n - 3)? });
        }
        return Ok(Route::Upload { name: name_of(n - 3)?, id: segments[n - 1].to_owned() });
    }
    if n >= 3 && segments[n - 2] == "blobs" {
        return Ok(Route::Blob { name: name_of(n - 2)?, digest: segments[n - 1].to_owned() });
    }
    if n >= 3 && segments[n - 2] == "referrers" {
        return Ok(Route::Referrers { name: name_of(n - 2)?, digest: segments[n - 1].to_owned() });
    }
    Err(unknown())
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, ≤ 255 bytes.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let invalid = || bad_request(Code::NameInvalid, format!("invalid repository name {:?}", truncate(name)));
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid());
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(invalid());
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else { return false };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || (!sep.is_empty() && sep.bytes().all(|b| b == b'-'));
        if !ok {
            return false;
        }
    }
    true
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` or a digest.
pub fn parse_reference(reference: &str) -> Result<Reference, Error> {
    if reference.contains(':') {
        return parse_digest(reference).map(Reference::Digest);
    }
    let bytes = reference.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b));
    if ok {
        Ok(Reference::Tag(reference.to_owned()))
    } else {
        Err(bad_request(Code::ManifestInvalid, format!("invalid tag {:?}", truncate(reference))))
    }
}

pub fn parse_digest(digest: &str) -> Result<Digest, Error> {
    Digest::parse(digest).map_err(|e| match e {
        store::blob::DigestError::Unsupported { .. } => bad_request(Code::Unsupported, e.to_string()),
        store::blob::DigestError::Malformed { .. } => bad_request(Code::DigestInvalid, e.to_string()),
    })
}

/// Upload session ids are ours: 32 lowercase hex characters.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expect: &str) {
        let got = match parse(path) {
            Ok(route) => format!("{route:?}"),
            Err(Error::Api { code, .. }) => format!("{code:?}"),
            Err(e) => format!("{e}"),
        };
        assert_eq!(got, expect, "{path}");
    }

    #[test]
    fn routes() {
        check("", "Base");
        check("_catalog", "Catalog");
        check("a/tags/list", r#"Tags { name: "a" }"#);
        check("team/app/web/manifests/v1", r#"Manifest { name: "team/app/web", reference: "v1" }"#);
        check("a/blobs/uploads/", r#"UploadStart { name: "a" }"#);
        check("a/blobs/uploads", r#"UploadStart { name: "a" }"#);
        check("a/b/blobs/uploads/0123", r#"Upload { name: "a/b", id: "0123" }"#);
        check("a/blobs/sha256:00", r#"Blob { name: "a", digest: "sha256:00" }"#);
        check("a/referrers/sha256:00", r#"Referrers { name: "a", digest: "sha256:00" }"#);
        check("../etc/manifests/x", "NameInvalid");
        check("a/../b/manifests/x", "NameInvalid");
        check("a/%2e%2e/manifests/x", "NameInvalid");
        check("A/manifests/x", "NameInvalid");
        check("a//b/manifests/x", "NameInvalid");
        check("a/nothing", "NameUnknown");
    }

    #[test]
    fn names() {
        for good in ["a", "a0", "a.b", "a_b", "a__b", "a---b", "x/y/z", "library/busybox"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a___b", "a._b", "a/", "/a", "A", "a b", "..", "."] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn references() {
        assert_eq!(parse_reference("v1.0_rc-1").ok(), Some(Reference::Tag("v1.0_rc-1".into())));
        assert!(parse_reference("..").is_err());
        assert!(parse_reference(".hidden").is_err());
        assert!(parse_reference(&"t".repeat(129)).is_err());
        assert!(parse_reference("sha256:abc").is_err());
    }
}
