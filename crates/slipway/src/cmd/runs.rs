//! `slipway runs`: list runs on a server.

use std::process::ExitCode;

use anyhow::Context;

/// How client commands reach the server.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(long, value_name = "URL", env = "SLIPWAY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API token (`[[user]] token`).
    #[arg(long, value_name = "TOKEN", env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ClientArgs {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let req = reqwest::Client::new().get(format!("{}{path}", self.server.trim_end_matches('/')));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }
}

/// Fails with the server's error message unless the reply is a success.
pub async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<protocol::ErrorBody>(&body).map(|e| e.error).unwrap_or(body);
    anyhow::bail!("the server answered {status}: {message}")
}

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only runs of this repository (owner/name).
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// At most this many runs (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print the runs as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn main(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &args.limit.to_string());
    if let Some(r) = &args.repository {
        query.append_pair("repository", r);
    }
    let req = args.client.get(&format!("{}?{}", protocol::paths::RUNS, query.finish()));
    let resp = check(req.send().await.with_context(|| format!("calling {}", args.client.server))?).await?;
    let runs: Vec<protocol::Run> = resp.json().await.context("reading the runs")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<6} {:<8} {:<10} {:<24} {:<20} {:<16} SHA", "ID", "STATUS", "RESULT", "REPOSITORY", "WORKFLOW", "REF");
    for r in runs {
        let result = r.conclusion.map_or("-", |c| c.as_str());
        let git_ref = r.git_ref.strip_prefix("refs/heads/").unwrap_or(&r.git_ref);
        let sha: String = r.sha.chars().take(7).collect();
        println!("{:<6} {:<8} {:<10} {:<24} {:<20} {:<16} {sha}", r.id, r.status, result, r.repository, r.workflow_name, git_ref);
    }
    Ok(ExitCode::SUCCESS)
}
