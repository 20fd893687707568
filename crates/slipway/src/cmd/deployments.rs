//! `slipway deployments`, `status`, `approve`, `reject`, `rollback`: the delivery side of the
//! server's API (`/api/v1/deployments`, `/api/v1/environments`, `/api/v1/runs/{id}/approve`).

use std::process::ExitCode;

use anyhow::Context;
use server::environments::deployments::{DeploymentDto, RollbackReply, RollbackRequest};
use server::environments::{DecisionReply, DecisionRequest, EnvironmentDto};

use crate::cmd::runs::{ClientArgs, check};

#[derive(clap::Args, Debug)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only deployments to this environment.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Only deployments of this repository (owner/name).
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print the deployments as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The environment.
    pub env: String,
    /// The repository (owner/name), when several deploy to environments of this name.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run that waits.
    pub run: i64,
    /// The environment whose gate to decide.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    pub comment: Option<String>,
    /// Print the decided deployments as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The environment to roll back.
    pub env: String,
    /// The deployment to go back to (default: the last successful one before the current).
    #[arg(long, value_name = "DEPLOYMENT")]
    pub to: Option<i64>,
    /// The repository (owner/name), when several deploy to environments of this name.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
}

fn post(client: &ClientArgs, path: &str) -> reqwest::RequestBuilder {
    let req = reqwest::Client::new().post(format!("{}{path}", client.server.trim_end_matches('/')));
    match &client.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".to_owned() };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn digest_of(d: &DeploymentDto) -> String {
    d.digests
        .first()
        .map_or_else(|| "-".to_owned(), |x| x.digest.chars().take(19).collect())
}

fn print_table(list: &[DeploymentDto]) {
    println!(
        "{:<5} {:<12} {:<12} {:<9} {:<16} {:<19} {:<10} {:<16} {:<6} FINISHED",
        "ID", "ENVIRONMENT", "STATUS", "SHA", "REF", "DIGEST", "PUSHER", "APPROVED BY", "RUN"
    );
    for d in list {
        let git_ref = d.git_ref.strip_prefix("refs/heads/").unwrap_or(&d.git_ref);
        let sha: String = d.sha.chars().take(7).collect();
        let approvers = if d.approvers.is_empty() {
            "-".to_owned()
        } else {
            d.approvers.join(",")
        };
        let status = match d.rollback_of {
            Some(to) => format!("{} (rollback to {to})", d.status),
            None => d.status.clone(),
        };
        println!(
            "{:<5} {:<12} {:<12} {:<9} {:<16} {:<19} {:<10} {:<16} {:<6} {}",
            d.id,
            d.environment,
            status,
            sha,
            git_ref,
            digest_of(d),
            d.pusher,
            approvers,
            d.run_id,
            when(d.finished_at)
        );
        if matches!(
            d.status.as_str(),
            "waiting" | "failure" | "rolled_back" | "rejected"
        ) && let Some(reason) = &d.reason
        {
            println!("      {reason}");
        }
    }
}

pub async fn deployments(args: DeploymentsArgs) -> anyhow::Result<ExitCode> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &args.limit.to_string());
    if let Some(e) = &args.env {
        query.append_pair("environment", e);
    }
    if let Some(r) = &args.repository {
        query.append_pair("repository", r);
    }
    let req = args
        .client
        .get(&format!("/api/v1/deployments?{}", query.finish()));
    let resp = check(
        req.send()
            .await
            .with_context(|| format!("calling {}", args.client.server))?,
    )
    .await?;
    let list: Vec<DeploymentDto> = resp.json().await.context("reading the deployments")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print_table(&list);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut path = format!(
        "/api/v1/environments/{}",
        url::form_urlencoded::byte_serialize(args.env.as_bytes()).collect::<String>()
    );
    if let Some(r) = &args.repository {
        path.push_str(&format!(
            "?repository={}",
            url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
        ));
    }
    let resp = check(
        args.client
            .get(&path)
            .send()
            .await
            .with_context(|| format!("calling {}", args.client.server))?,
    )
    .await?;
    let env: EnvironmentDto = resp.json().await.context("reading the environment")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&env)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("environment {}", env.name);
    if env.reviewers.is_empty() {
        println!("  rules: none (every deployment goes straight through)");
    } else {
        println!(
            "  rules: {} approval(s) by {}{}",
            env.required_approvals,
            env.reviewers.join(", "),
            if env.allow_self_approval {
                " (self-approval allowed)"
            } else {
                ""
            }
        );
    }
    if env.wait_timer_ms > 0 {
        println!("  wait timer: {}s", env.wait_timer_ms / 1000);
    }
    if !env.branches.is_empty() || !env.tags.is_empty() {
        println!(
            "  allowed: branches {:?}, tags {:?}",
            env.branches, env.tags
        );
    }
    if let Some(url) = &env.url {
        println!("  url: {url}");
    }
    if env.current.is_empty() {
        println!("  deployed now: nothing yet");
    }
    for d in &env.current {
        println!(
            "  deployed now: {} {} at {} ({}), deployment {} of run {}",
            d.repository,
            d.digests
                .first()
                .map_or("(no digest recorded)", |x| x.digest.as_str()),
            d.sha.chars().take(12).collect::<String>(),
            d.git_ref,
            d.id,
            d.run_id
        );
        let approvers = if d.approvers.is_empty() {
            "no approval needed".to_owned()
        } else {
            d.approvers.join(", ")
        };
        println!(
            "    pushed by {}, approved by {approvers}, finished {}",
            d.pusher,
            when(d.finished_at)
        );
    }
    for d in &env.pending {
        println!(
            "  {} deployment {} (run {}): {}",
            d.status,
            d.id,
            d.run_id,
            d.reason.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn decide(args: DecideArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let verb = if approve { "approve" } else { "reject" };
    let body = DecisionRequest {
        environment: args.env.clone(),
        comment: args.comment.clone(),
    };
    let resp = post(&args.client, &format!("/api/v1/runs/{}/{verb}", args.run))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("calling {}", args.client.server))?;
    let reply: DecisionReply = check(resp)
        .await?
        .json()
        .await
        .context("reading the reply")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(ExitCode::SUCCESS);
    }
    for d in &reply.deployments {
        let status = match d.status.as_str() {
            "in_progress" => "deploying now".to_owned(),
            other => format!(
                "{other}{}",
                d.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        };
        println!(
            "run {} → {}: deployment {} {}",
            args.run, d.environment, d.id, status
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let body = RollbackRequest {
        environment: args.env.clone(),
        repository: args.repository.clone(),
        to: args.to,
    };
    let resp = post(&args.client, "/api/v1/deployments/rollback")
        .json(&body)
        .send()
        .await
        .with_context(|| format!("calling {}", args.client.server))?;
    let reply: RollbackReply = check(resp)
        .await?
        .json()
        .await
        .context("reading the reply")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "rolling {} back to deployment {} ({} at {}): run {} {}",
        args.env,
        reply.to.id,
        reply
            .to
            .digests
            .first()
            .map_or("no recorded digest", |d| d.digest.as_str()),
        reply.to.sha.chars().take(12).collect::<String>(),
        reply.run_id,
        reply.run_url
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc() {
        assert_eq!(super::when(Some(0)), "1970-01-01 00:00:00Z");
        assert_eq!(super::when(Some(1_796_000_000_000)), "2026-11-30 00:53:20Z");
        assert_eq!(super::when(None), "-");
    }
}
