//! The release-directory scheme shared by the `local` and `ssh` targets.
//!
//! ```text
//! <root>/releases.json          this module's [`Releases`]: every release, in deploy order
//! <root>/releases/<id>/         one unpacked release (never modified after it is installed)
//! <root>/current -> releases/<id>   switched atomically (write `current.tmp`, then rename)
//! <root>/service.pid            the supervised service (see `supervisor`)
//! ```
//!
//! A release id is `<counter>-<short digest>` (`0007-3f2a9c01d4e5`): no clock is read, and the
//! counter gives a deterministic order. This module is pure: it decides, the host applies.

use serde::{Deserialize, Serialize};

/// How many releases are kept when the `keep` input is not given.
pub const DEFAULT_KEEP: usize = 5;

/// What happened to a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Installed; not (yet) serving. A deploy that died half-way leaves this behind.
    Pending,
    /// Serving now (`current` points at it).
    Active,
    /// Served before; replaced by a newer release.
    Superseded,
    /// Failed its checks; `current` was switched back.
    Failed,
}

/// One release directory and how to run it (kept so a rollback restarts it the same way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub seq: u64,
    /// `sha256:...` of what was deployed (image manifest, or the artifact's content).
    pub digest: String,
    /// What the deploy was given (`oci:DIR`, an artifact path...), for people reading the file.
    pub source: String,
    /// The service command, run from the release directory; `None`: no supervised service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    /// The health check it was deployed with (checked again when a rollback restores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_cmd: Option<String>,
    pub status: Status,
}

/// The content of `releases.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    /// The next release's sequence number.
    pub next: u64,
    /// The id `current` points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Oldest first.
    pub releases: Vec<Release>,
}

impl Releases {
    /// Parses `releases.json`; `None` (no file yet) is the empty state.
    pub fn parse(bytes: Option<&[u8]>) -> Result<Releases, serde_json::Error> {
        match bytes {
            None => Ok(Releases::default()),
            Some(b) => serde_json::from_slice(b),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("releases always serialise");
        v.push(b'\n');
        v
    }

    /// The id the next release of `digest` gets.
    pub fn next_id(&self, digest: &str) -> String {
        let hex = digest.rsplit(':').next().unwrap_or(digest);
        let short: String = hex
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("{:04}-{short}", self.next)
    }

    /// Records a new pending release and returns its id.
    pub fn begin(
        &mut self,
        digest: &str,
        source: &str,
        command: Option<String>,
        env: Vec<(String, String)>,
    ) -> String {
        let id = self.next_id(digest);
        self.releases.push(Release {
            id: id.clone(),
            seq: self.next,
            digest: digest.to_owned(),
            source: source.to_owned(),
            command,
            env,
            health_url: None,
            health_cmd: None,
            status: Status::Pending,
        });
        self.next += 1;
        id
    }

    pub fn get(&self, id: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.id == id)
    }

    pub fn current(&self) -> Option<&Release> {
        self.current.as_deref().and_then(|id| self.get(id))
    }

    fn set_status(&mut self, id: &str, status: Status) {
        if let Some(r) = self.releases.iter_mut().find(|r| r.id == id) {
            r.status = status;
        }
    }

    /// `id` now serves; the release that served before is superseded.
    pub fn activate(&mut self, id: &str) {
        if let Some(old) = self.current.take()
            && old != id
        {
            self.set_status(&old, Status::Superseded);
        }
        self.set_status(id, Status::Active);
        self.current = Some(id.to_owned());
    }

    /// `id` failed; `current` stays at (or goes back to) `previous`.
    pub fn fail(&mut self, id: &str, previous: Option<&str>) {
        self.set_status(id, Status::Failed);
        self.current = previous.map(str::to_owned);
        if let Some(p) = previous {
            self.set_status(p, Status::Active);
        }
    }

    /// Forgets all but the newest `keep` releases (the current one is always kept, and
    /// `keep` is at least 1) and returns the ids whose directories must be removed.
    pub fn prune(&mut self, keep: usize) -> Vec<String> {
        let keep = keep.max(1);
        let mut removed = Vec::new();
        let is_current = |r: &Release| self.current.as_deref() == Some(r.id.as_str());
        let mut kept = usize::from(self.releases.iter().any(is_current));
        let mut keep_flags = vec![false; self.releases.len()];
        for (i, r) in self.releases.iter().enumerate().rev() {
            if is_current(r) {
                keep_flags[i] = true;
            } else if kept < keep {
                keep_flags[i] = true;
                kept += 1;
            }
        }
        let mut i = 0;
        self.releases.retain(|r| {
            let k = keep_flags[i];
            i += 1;
            if !k {
                removed.push(r.id.clone());
            }
            k
        });
        removed
    }
}

/// Refuses ids that could name anything outside `releases/` (they come from `releases.json`,
/// which a person may have edited).
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with('.')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn deploy(r: &mut Releases, digest: &str) -> String {
        let id = r.begin(digest, "test", None, vec![]);
        r.activate(&id);
        id
    }

    #[test]
    fn ids_are_counter_and_short_digest() {
        let mut r = Releases::default();
        assert_eq!(r.next_id("sha256:3f2a9c01d4e5ffff"), "0000-3f2a9c01d4e5");
        deploy(&mut r, "sha256:aa");
        assert_eq!(r.next_id("sha256:bb"), "0001-bb");
        assert!(is_safe_id(&r.next_id("sha256:../../x")));
    }

    #[test]
    fn activate_supersedes_and_fail_switches_back() {
        let mut r = Releases::default();
        let a = deploy(&mut r, "sha256:aa");
        let b = r.begin("sha256:bb", "t", None, vec![]);
        r.activate(&b);
        assert_eq!(r.get(&a).map(|x| x.status), Some(Status::Superseded));
        r.fail(&b, Some(&a));
        assert_eq!(r.current.as_deref(), Some(a.as_str()));
        assert_eq!(r.get(&a).map(|x| x.status), Some(Status::Active));
        assert_eq!(r.get(&b).map(|x| x.status), Some(Status::Failed));
    }

    #[test]
    fn prune_keeps_newest_and_current() {
        let mut r = Releases::default();
        let ids: Vec<String> = (0..6)
            .map(|i| deploy(&mut r, &format!("sha256:{i}")))
            .collect();
        assert_eq!(r.prune(3), ids[..3].to_vec());
        assert_eq!(r.releases.len(), 3);
        // A rollback made an old release current: it survives pruning.
        let mut r = Releases::default();
        let ids: Vec<String> = (0..4)
            .map(|i| deploy(&mut r, &format!("sha256:{i}")))
            .collect();
        r.activate(&ids[0]);
        assert_eq!(r.prune(2), vec![ids[1].clone(), ids[2].clone()]);
        assert_eq!(
            r.prune(0),
            vec![ids[3].clone()],
            "keep 0 still keeps the current release"
        );
        assert_eq!(r.current.as_deref(), Some(ids[0].as_str()));
    }

    #[test]
    fn round_trips_through_json() {
        let mut r = Releases::default();
        let id = r.begin(
            "sha256:aa",
            "oci:x",
            Some("httpd".into()),
            vec![("A".into(), "1".into())],
        );
        r.activate(&id);
        assert_eq!(Releases::parse(Some(&r.to_json())).unwrap(), r);
        assert_eq!(Releases::parse(None).unwrap(), Releases::default());
        assert!(Releases::parse(Some(b"{")).is_err());
    }
}
