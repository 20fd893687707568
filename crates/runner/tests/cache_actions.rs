//! `actions/cache/restore` and `actions/cache/save` (the split actions), and the
//! `RunOptions::cache` seam: a backend given there is used instead of the local directory, and
//! a backend that fails is a warning and a miss, never a failed step.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use runner::{CacheBackend, CacheError, CacheHit, CacheSaved, JobResult};

#[tokio::test]
async fn restore_and_save_actions_split_the_cache_step() {
    let f = Fixture::new();
    let o = f.options();
    let wf = r#"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: r
        uses: actions/cache/restore@v4
        with:
          path: deps
          key: deps-2
          restore-keys: deps-
      - run: |
          echo "hit=${{ steps.r.outputs.cache-hit }} primary=${{ steps.r.outputs.cache-primary-key }} matched=${{ steps.r.outputs.cache-matched-key }}"
          if [ -f deps/v.txt ]; then echo "restored $(cat deps/v.txt)"; else mkdir -p deps && echo v1 > deps/v.txt; fi
      - if: steps.r.outputs.cache-hit != 'true'
        uses: actions/cache/save@v4
        with:
          path: deps
          key: ${{ steps.r.outputs.cache-primary-key }}
"#;
    let first = run(wf, o.clone()).await;
    assert_eq!(first.job("j"), JobResult::Success, "{}", first.dump());
    let logs = first.logs("j");
    assert!(logs.contains(&"hit=false primary=deps-2 matched=".to_owned()), "{logs:?}");
    assert!(logs.iter().any(|l| l == "Cache saved with key: deps-2"), "saved by the save step: {logs:?}");
    assert!(!first.steps("j").iter().any(|(n, _, _)| n.starts_with("Post")), "no post step: {:?}", first.steps("j"));
    let second = run(wf, o.clone()).await;
    let logs = second.logs("j");
    assert!(logs.contains(&"hit=true primary=deps-2 matched=deps-2".to_owned()), "{logs:?}");
    assert!(logs.contains(&"restored v1".to_owned()), "{logs:?}");
    assert!(!logs.iter().any(|l| l.starts_with("Cache saved")), "{logs:?}");

    let bogus = run(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/cache/bogus@v4\n        with:\n          path: x\n          key: k\n",
        o,
    )
    .await;
    assert_eq!(bogus.job("j"), JobResult::Failure);
    assert!(bogus.dump().contains("actions/cache/bogus does not exist"), "{}", bogus.dump());
}

/// Entries in memory: (key, version) -> archive bytes, newest last.
#[derive(Debug, Default)]
struct Memory {
    entries: Mutex<Vec<(String, String, Vec<u8>)>>,
    fail: bool,
}

impl Memory {
    fn find(&self, keys: &[String], version: &str) -> Option<(String, Vec<u8>)> {
        let entries = self.entries.lock().expect("lock");
        let newest = entries.iter().rev().filter(|(_, v, _)| v == version);
        let exact = newest.clone().find(|(k, _, _)| Some(k) == keys.first());
        exact
            .or_else(|| keys.iter().find_map(|p| newest.clone().find(|(k, _, _)| k.starts_with(p.as_str()))))
            .map(|(k, _, b)| (k.clone(), b.clone()))
    }
}

#[async_trait::async_trait]
impl CacheBackend for Memory {
    async fn lookup(&self, keys: &[String], version: &str) -> Result<Option<String>, CacheError> {
        if self.fail {
            return Err(CacheError("the cache service is down".into()));
        }
        Ok(self.find(keys, version).map(|(k, _)| k))
    }

    async fn restore(&self, keys: &[String], version: &str, scratch: &Path) -> Result<Option<CacheHit>, CacheError> {
        if self.fail {
            return Err(CacheError("the cache service is down".into()));
        }
        let Some((key, bytes)) = self.find(keys, version) else { return Ok(None) };
        let tar = scratch.join("in.tar");
        std::fs::write(&tar, bytes).map_err(|e| CacheError(e.to_string()))?;
        Ok(Some(CacheHit { key, tar }))
    }

    async fn save(&self, key: &str, version: &str, tar: &Path) -> Result<CacheSaved, CacheError> {
        if self.fail {
            return Err(CacheError("the cache service is down".into()));
        }
        let bytes = std::fs::read(tar).map_err(|e| CacheError(e.to_string()))?;
        let mut entries = self.entries.lock().expect("lock");
        if entries.iter().any(|(k, v, _)| k == key && v == version) {
            return Ok(CacheSaved::Exists);
        }
        entries.push((key.to_owned(), version.to_owned(), bytes));
        Ok(CacheSaved::Saved)
    }
}

const CACHED: &str = r#"
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: c
        uses: actions/cache@v4
        with:
          path: deps
          key: k-1
      - run: |
          echo "hit=${{ steps.c.outputs.cache-hit }}"
          mkdir -p deps && echo built > deps/v.txt
"#;

#[tokio::test]
async fn a_backend_in_run_options_replaces_the_local_directory() {
    let f = Fixture::new();
    let memory = Arc::new(Memory::default());
    let mut o = f.options();
    o.cache = Some(memory.clone());
    let first = run(CACHED, o.clone()).await;
    assert_eq!(first.job("j"), JobResult::Success, "{}", first.dump());
    assert!(first.logs("j").contains(&"hit=false".to_owned()));
    let saved = memory.entries.lock().expect("lock").clone();
    assert_eq!(saved.len(), 1);
    assert_eq!((saved[0].0.as_str(), saved[0].1.as_str()), ("k-1", runner::cache_version(&["deps".to_owned()]).as_str()));
    assert!(!o.cache_dir.join("cache").exists(), "nothing in the local cache directory");
    let second = run(CACHED, o).await;
    assert!(second.logs("j").contains(&"hit=true".to_owned()), "{:?}", second.logs("j"));
}

#[tokio::test]
async fn a_failing_backend_is_a_warning_and_a_miss() {
    let f = Fixture::new();
    let mut o = f.options();
    o.cache = Some(Arc::new(Memory { fail: true, ..Memory::default() }));
    let out = run(CACHED, o).await;
    assert_eq!(out.job("j"), JobResult::Success, "{}", out.dump());
    assert!(out.logs("j").contains(&"hit=false".to_owned()));
    let warnings: Vec<String> = out.annotations().into_iter().filter(|(l, _)| l == "warning").map(|(_, m)| m).collect();
    assert!(warnings.iter().any(|m| m == "Failed to restore: the cache service is down"), "{warnings:?}");
    assert!(warnings.iter().any(|m| m == "Failed to save: the cache service is down"), "{warnings:?}");
}
