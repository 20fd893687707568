//! `slipway logs RUN [--follow]`: print a run's logs; with `--follow`, stream them live
//! (Server-Sent Events) until the run ends, and exit 1 unless it succeeded.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use futures::StreamExt;

use super::runs::{ClientArgs, check};

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The run id.
    pub run: i64,
    /// Keep streaming until the run finishes.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One JSON object per log chunk (job, attempt, seq, text).
    #[arg(long)]
    pub json: bool,
}

pub async fn main(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/runs/{}/logs", args.run);
    if !args.follow {
        let req = args.client.get(&path).header("accept", if args.json { "application/json" } else { "text/plain" });
        let resp = check(req.send().await.with_context(|| format!("calling {}", args.client.server))?).await?;
        if args.json {
            let chunks: Vec<protocol::LogText> = resp.json().await.context("reading the logs")?;
            for c in chunks {
                println!("{}", serde_json::to_string(&c)?);
            }
        } else {
            print!("{}", resp.text().await.context("reading the logs")?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let req = args.client.get(&format!("{path}?follow=true"));
    let resp = check(req.send().await.with_context(|| format!("calling {}", args.client.server))?).await?;
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut last_job = None;
    let mut stdout = std::io::stdout().lock();
    while let Some(bytes) = stream.next().await {
        buf.extend_from_slice(&bytes.context("reading the log stream")?);
        while let Some(end) = find_event_end(&buf) {
            let raw: Vec<u8> = buf.drain(..end).collect();
            let (event, data) = parse_event(&String::from_utf8_lossy(&raw));
            match event.as_str() {
                "log" => {
                    let chunk: protocol::LogText = serde_json::from_str(&data).context("a log event")?;
                    if args.json {
                        writeln!(stdout, "{}", serde_json::to_string(&chunk)?)?;
                    } else {
                        if last_job != Some(chunk.job_id) {
                            writeln!(stdout, "=== {} ===", chunk.job_key)?;
                            last_job = Some(chunk.job_id);
                        }
                        write!(stdout, "{}", chunk.text)?;
                    }
                    stdout.flush()?;
                }
                "end" => {
                    let run: Option<protocol::Run> = serde_json::from_str(&data).ok().flatten();
                    let ok = run.as_ref().is_some_and(|r| r.conclusion == Some(protocol::Conclusion::Success));
                    if args.json {
                        writeln!(stdout, "{data}")?;
                    } else if let Some(r) = run {
                        writeln!(stdout, "=== run {} {} ===", r.id, r.conclusion.map_or("unknown", |c| c.as_str()))?;
                    }
                    return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
                }
                "error" => anyhow::bail!("the server stopped the stream: {data}"),
                _ => {}
            }
        }
    }
    anyhow::bail!("the log stream ended before the run did")
}

/// The end (exclusive, including the blank line) of the first complete SSE event.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

/// `(event name, data)` of one SSE event (multi-line data joined with `\n`).
fn parse_event(raw: &str) -> (String, String) {
    let mut event = "message".to_owned();
    let mut data: Vec<&str> = Vec::new();
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim_start().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (event, data.join("\n"))
}
