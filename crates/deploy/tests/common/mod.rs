//! Helpers shared by the deploy integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An artifact directory serving `body` at `/` with busybox httpd.
pub fn site(parent: &Path, name: &str, body: &str) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::write(dir.join("www/index.html"), body).unwrap();
    dir
}

pub fn httpd_command(port: u16) -> String {
    let busybox = test_support::require_command("busybox", "busybox-static");
    format!(
        "exec {} httpd -f -p 127.0.0.1:{port} -h www",
        busybox.display()
    )
}

/// GET http://127.0.0.1:port/ once.
pub async fn get(port: u16) -> Result<String, String> {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(r.status().to_string());
    }
    r.text().await.map_err(|e| e.to_string())
}

pub fn inputs(pairs: &[(&str, String)]) -> IndexMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Collects log lines.
#[derive(Clone, Default)]
pub struct Lines(pub Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn sink(&self) -> impl Fn(&str) + Send + Sync + use<> {
        let l = self.0.clone();
        move |s: &str| l.lock().unwrap().push(s.to_owned())
    }
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Kills the service recorded under `root` when the test ends, even when it fails.
pub struct StopService(pub PathBuf);

impl Drop for StopService {
    fn drop(&mut self) {
        if let Ok(t) = fs::read_to_string(self.0.join("service.pid"))
            && let Some(pid) = t
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub fn read_link(p: &Path) -> String {
    fs::read_link(p).unwrap().display().to_string()
}
