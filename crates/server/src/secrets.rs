//! Encryption at rest of what the server stores that must stay secret: secrets' values, and
//! repositories' forge tokens and webhook secrets.
//!
//! A [`ServerKey`] is 32 random bytes: `[server] secret_key` in the configuration (64 hex
//! digits or base64, usually `env:NAME`), else the file `{data}/secret.key` (created with
//! mode 0600 on the first start). Values are sealed with AES-256-GCM under a fresh random
//! 96-bit nonce, with the row's identity (`scope` and `name`) as associated data, so a sealed
//! value copied into another row does not open. Stored form: `0x01 || nonce || ciphertext+tag`.
//!
//! Losing the key loses the stored secrets (they must be set again); a wrong key is reported
//! at start, when the repositories' settings are loaded.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The key sealing secrets at rest.
#[derive(Clone)]
pub struct ServerKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what}: expected 32 bytes as 64 hex digits or base64")]
    Format { what: String },
    #[error("reading the server key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the server key {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "a stored secret ({what}) does not open with the server key: the key changed (restore the old \
         `secret_key` or {{data}}/secret.key) or the value was tampered with"
    )]
    Open { what: String },
}

impl ServerKey {
    /// A key from its text form (64 hex digits, or base64 of 32 bytes); `what` names where
    /// it came from, for the error.
    pub fn parse(text: &str, what: &str) -> Result<ServerKey, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        match bytes {
            Some(b) if b.len() == 32 => Ok(ServerKey::from_bytes(&b)),
            _ => Err(KeyError::Format { what: what.to_owned() }),
        }
    }

    fn from_bytes(bytes: &[u8]) -> ServerKey {
        let key = Key::<Aes256Gcm>::try_from(bytes).expect("32 bytes is an AES-256 key");
        ServerKey { cipher: Aes256Gcm::new(&key) }
    }

    /// The key in `path`, created (32 random bytes as hex, mode 0600) when the file does not
    /// exist.
    pub fn load_or_create(path: &Path) -> Result<ServerKey, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => ServerKey::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Key::<Aes256Gcm>::generate();
                let text = format!("{}\n", hex::encode(key.as_slice()));
                write_private(path, text.as_bytes()).map_err(|source| KeyError::Write { path: path.to_owned(), source })?;
                tracing::info!(path = %path.display(), "Created the server key (keep it: stored secrets need it).");
                Ok(ServerKey { cipher: Aes256Gcm::new(&key) })
            }
            Err(source) => Err(KeyError::Read { path: path.to_owned(), source }),
        }
    }

    /// Seals `plaintext`; `aad` names the row it belongs to.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: aad.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`seal`](Self::seal) produced with the same `aad`.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let err = || KeyError::Open { what: aad.to_owned() };
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(err());
        }
        let nonce = Nonce::try_from(&sealed[1..=NONCE_LEN]).map_err(|_| err())?;
        self.cipher.decrypt(&nonce, Payload { msg: &sealed[1 + NONCE_LEN..], aad: aad.as_bytes() }).map_err(|_| err())
    }

    /// [`open`](Self::open) for text.
    pub fn open_string(&self, aad: &str, sealed: &[u8]) -> Result<String, KeyError> {
        String::from_utf8(self.open(aad, sealed)?).map_err(|_| KeyError::Open { what: aad.to_owned() })
    }
}

/// Writes a new file readable only by its owner (create, write, fsync, rename).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_row() {
        let key = ServerKey::parse(&"ab".repeat(32), "test").expect("hex key");
        let sealed = key.seal("repo:team/app/TOKEN", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_ne!(sealed, key.seal("repo:team/app/TOKEN", b"hunter2"), "a fresh nonce each time");
        assert_eq!(key.open("repo:team/app/TOKEN", &sealed).expect("opens"), b"hunter2");
        assert!(key.open("repo:team/other/TOKEN", &sealed).is_err(), "bound to its row");
        let other = ServerKey::parse(&"cd".repeat(32), "test").expect("hex key");
        assert!(other.open("repo:team/app/TOKEN", &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        *tampered.last_mut().expect("non-empty") ^= 1;
        assert!(key.open("repo:team/app/TOKEN", &tampered).is_err());
        assert!(key.open("x", b"").is_err());
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_are_created_private() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(ServerKey::parse(&b64, "env").is_ok());
        let err = ServerKey::parse("short", "server.secret_key").expect_err("bad").to_string();
        assert!(err.contains("server.secret_key") && err.contains("32 bytes"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let first = ServerKey::load_or_create(&path).expect("created");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.seal("a", b"v");
        let again = ServerKey::load_or_create(&path).expect("read back");
        assert_eq!(again.open("a", &sealed).expect("same key"), b"v");
    }
}
