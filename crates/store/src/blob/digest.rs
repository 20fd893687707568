//! [`Digest`]: a validated content address.

use std::{fmt, str::FromStr};

use sha2::{Digest as _, Sha256};

/// A content address `sha256:<64 lowercase hex>`. Other algorithms are refused
/// ([`DigestError::Unsupported`]) rather than stored unverified.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {input:?}: expected algorithm:hex")]
    Malformed { input: String },
    #[error("unsupported digest algorithm {algorithm:?} (only sha256)")]
    Unsupported { algorithm: String },
}

impl Digest {
    pub fn parse(input: &str) -> Result<Self, DigestError> {
        let malformed = || DigestError::Malformed { input: input.chars().take(200).collect() };
        let (algorithm, hex) = input.split_once(':').ok_or_else(malformed)?;
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        if !algorithm_ok || hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b)) {
            return Err(malformed());
        }
        if algorithm != "sha256" {
            return Err(DigestError::Unsupported { algorithm: algorithm.to_owned() });
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(malformed());
        }
        Ok(Digest(input.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).as_slice())
    }

    /// From a finished SHA-256 hash.
    pub fn from_sha256(hash: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(hash)))
    }

    /// `sha256`.
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<(), &str>) {
        match (Digest::parse(input), expect) {
            (Ok(d), Ok(())) => assert_eq!(d.as_str(), input),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        check(&format!("sha256:{hex}"), Ok(()));
        check(&format!("sha256:{}", hex.to_uppercase()), Err("invalid digest"));
        check("sha256:abc", Err("invalid digest"));
        check(&format!("sha512:{hex}"), Err("unsupported"));
        check("sha256", Err("invalid digest"));
        check("sha256:../../etc", Err("invalid digest"));
        check("", Err("invalid digest"));
        assert_eq!(Digest::of(b"").hex(), hex);
    }
}
