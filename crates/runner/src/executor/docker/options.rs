//! The `options:` string of `container:`/`services:` (docker-create flags such as
//! `--health-cmd "pg_isready" --cpus 2 -e A=B`), `ports:` (`-p` specs) and `volumes:`
//! (`-v` specs), parsed into engine settings.
//!
//! Only the docker-create flags that make sense for a job or service container are accepted;
//! any other flag is an error that names it. Pure: no I/O, no environment lookups (`-e NAME`
//! without a value is rejected rather than read from this process's environment).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{HealthConfig, HostConfig, PortBinding};

/// A bad `options:`, `ports:` or `volumes:` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("unsupported container option `{flag}`")]
    UnknownFlag { flag: String },
    #[error("container option `{flag}` needs a value")]
    MissingValue { flag: String },
    #[error("container option `{flag}`: invalid value `{value}`: {reason}")]
    InvalidValue { flag: String, value: String, reason: String },
    #[error("container options: unterminated quote in `{options}`")]
    UnterminatedQuote { options: String },
    #[error("invalid port spec `{spec}`: {reason}")]
    Port { spec: String, reason: String },
    #[error("invalid volume spec `{spec}`: {reason}")]
    Volume { spec: String, reason: String },
}

/// Health-check settings (`--health-*`, `--no-healthcheck`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthOptions {
    pub cmd: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<i64>,
    pub start_period: Option<Duration>,
    pub disabled: bool,
}

impl HealthOptions {
    fn is_set(&self) -> bool {
        *self != HealthOptions::default()
    }

    /// The engine's health config, or `None` to keep the image's `HEALTHCHECK`.
    pub fn to_config(&self) -> Option<HealthConfig> {
        if !self.is_set() {
            return None;
        }
        let test = if self.disabled {
            Some(vec!["NONE".to_owned()])
        } else {
            self.cmd.as_ref().map(|cmd| vec!["CMD-SHELL".to_owned(), cmd.clone()])
        };
        Some(HealthConfig {
            test,
            interval: self.interval.map(nanos),
            timeout: self.timeout.map(nanos),
            retries: self.retries,
            start_period: self.start_period.map(nanos),
            start_interval: None,
        })
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The parsed `options:` string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    pub health: HealthOptions,
    pub env: Vec<(String, String)>,
    pub nano_cpus: Option<i64>,
    pub memory: Option<i64>,
    pub shm_size: Option<i64>,
    pub user: Option<String>,
    /// `--entrypoint` (one string, as docker takes it; not split).
    pub entrypoint: Option<String>,
    pub workdir: Option<String>,
    pub privileged: bool,
    pub init: bool,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub network_aliases: Vec<String>,
    pub hostname: Option<String>,
    pub labels: Vec<(String, String)>,
    pub add_hosts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub volumes: Vec<String>,
    pub ports: Vec<String>,
}

impl CreateOptions {
    /// Parses an `options:` string.
    pub fn parse(options: &str) -> Result<CreateOptions, OptionsError> {
        let words = split_words(options)?;
        let mut out = CreateOptions::default();
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            let (flag, inline) = split_flag(word)?;
            let kind = flag_kind(&flag).ok_or_else(|| OptionsError::UnknownFlag { flag: flag.clone() })?;
            if kind == Kind::Bool {
                let on = match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => {
                        return Err(invalid(&flag, other, "expected true or false"));
                    }
                };
                out.set_bool(&flag, on);
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    let Some(v) = words.get(i) else {
                        return Err(OptionsError::MissingValue { flag });
                    };
                    i += 1;
                    v.clone()
                }
            };
            out.set_value(&flag, value)?;
        }
        Ok(out)
    }

    fn set_bool(&mut self, flag: &str, on: bool) {
        match flag {
            "--privileged" => self.privileged = on,
            "--init" => self.init = on,
            "--read-only" => self.read_only = on,
            "--no-healthcheck" => self.health.disabled = on,
            // `--rm`, `-d`, `-t`, `-i` are meaningless for containers the executor manages.
            _ => {}
        }
    }

    fn set_value(&mut self, flag: &str, value: String) -> Result<(), OptionsError> {
        match flag {
            "--health-cmd" => self.health.cmd = Some(value),
            "--health-interval" => self.health.interval = Some(duration(flag, &value)?),
            "--health-timeout" => self.health.timeout = Some(duration(flag, &value)?),
            "--health-start-period" => self.health.start_period = Some(duration(flag, &value)?),
            "--health-retries" => {
                let n: i64 = value.parse().map_err(|_| invalid(flag, &value, "expected a whole number"))?;
                if n < 0 {
                    return Err(invalid(flag, &value, "must not be negative"));
                }
                self.health.retries = Some(n);
            }
            "-e" | "--env" => {
                let Some((k, v)) = value.split_once('=') else {
                    return Err(invalid(flag, &value, "expected NAME=VALUE"));
                };
                if k.is_empty() {
                    return Err(invalid(flag, &value, "empty variable name"));
                }
                self.env.push((k.to_owned(), v.to_owned()));
            }
            "--cpus" => {
                let cpus: f64 = value.parse().map_err(|_| invalid(flag, &value, "expected a number"))?;
                if !cpus.is_finite() || cpus <= 0.0 {
                    return Err(invalid(flag, &value, "must be greater than 0"));
                }
                // Saturating float-to-int conversion; `as` never panics.
                self.nano_cpus = Some((cpus * 1e9).round() as i64);
            }
            "-m" | "--memory" => self.memory = Some(ram_bytes(flag, &value)?),
            "--shm-size" => self.shm_size = Some(ram_bytes(flag, &value)?),
            "-u" | "--user" => self.user = Some(value),
            "--entrypoint" => self.entrypoint = Some(value),
            "-w" | "--workdir" => self.workdir = Some(value),
            "--cap-add" => self.cap_add.push(value),
            "--cap-drop" => self.cap_drop.push(value),
            "--security-opt" => self.security_opt.push(value),
            "--network-alias" => self.network_aliases.push(value),
            "-h" | "--hostname" => self.hostname = Some(value),
            "-l" | "--label" => {
                let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                self.labels.push((k.to_owned(), v.to_owned()));
            }
            "--add-host" => self.add_hosts.push(value),
            "--tmpfs" => self.tmpfs.push(value),
            "-v" | "--volume" => self.volumes.push(value),
            "-p" | "--publish" => self.ports.push(value),
            _ => return Err(OptionsError::UnknownFlag { flag: flag.to_owned() }),
        }
        Ok(())
    }

    /// Applies the host-side settings to `host`.
    pub fn apply_host_config(&self, host: &mut HostConfig) -> Result<(), OptionsError> {
        if let Some(n) = self.nano_cpus {
            host.nano_cpus = Some(n);
        }
        if let Some(m) = self.memory {
            host.memory = Some(m);
        }
        if let Some(s) = self.shm_size {
            host.shm_size = Some(s);
        }
        if self.privileged {
            host.privileged = Some(true);
        }
        if self.init {
            host.init = Some(true);
        }
        if self.read_only {
            host.readonly_rootfs = Some(true);
        }
        extend(&mut host.cap_add, &self.cap_add);
        extend(&mut host.cap_drop, &self.cap_drop);
        extend(&mut host.security_opt, &self.security_opt);
        extend(&mut host.extra_hosts, &self.add_hosts);
        for t in &self.tmpfs {
            let (path, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
            host.tmpfs.get_or_insert_with(HashMap::new).insert(path.to_owned(), opts.to_owned());
        }
        Ok(())
    }
}

fn extend(target: &mut Option<Vec<String>>, items: &[String]) {
    if !items.is_empty() {
        target.get_or_insert_with(Vec::new).extend(items.iter().cloned());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

fn flag_kind(flag: &str) -> Option<Kind> {
    Some(match flag {
        "--privileged" | "--init" | "--read-only" | "--no-healthcheck" | "--rm" | "-d" | "--detach" | "-t"
        | "--tty" | "-i" | "--interactive" => Kind::Bool,
        "--health-cmd"
        | "--health-interval"
        | "--health-timeout"
        | "--health-start-period"
        | "--health-retries"
        | "-e"
        | "--env"
        | "--cpus"
        | "-m"
        | "--memory"
        | "--shm-size"
        | "-u"
        | "--user"
        | "--entrypoint"
        | "-w"
        | "--workdir"
        | "--cap-add"
        | "--cap-drop"
        | "--security-opt"
        | "--network-alias"
        | "-h"
        | "--hostname"
        | "-l"
        | "--label"
        | "--add-host"
        | "--tmpfs"
        | "-v"
        | "--volume"
        | "-p"
        | "--publish" => Kind::Value,
        _ => return None,
    })
}

/// `--flag=value` → (`--flag`, Some(value)); `-eA=B` → (`-e`, Some(`A=B`)); `-e=A` → (`-e`, Some(`A`)).
fn split_flag(word: &str) -> Result<(String, Option<String>), OptionsError> {
    if let Some(long) = word.strip_prefix("--") {
        if long.is_empty() {
            return Err(OptionsError::UnknownFlag { flag: word.to_owned() });
        }
        return Ok(match word.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (word.to_owned(), None),
        });
    }
    if let Some(short) = word.strip_prefix('-') {
        let mut chars = short.chars();
        let Some(c) = chars.next() else {
            return Err(OptionsError::UnknownFlag { flag: word.to_owned() });
        };
        let flag = format!("-{c}");
        let rest = chars.as_str();
        if rest.is_empty() {
            return Ok((flag, None));
        }
        let rest = rest.strip_prefix('=').unwrap_or(rest);
        return Ok((flag, Some(rest.to_owned())));
    }
    Err(OptionsError::UnknownFlag { flag: word.to_owned() })
}

fn invalid(flag: &str, value: &str, reason: &str) -> OptionsError {
    OptionsError::InvalidValue { flag: flag.to_owned(), value: value.to_owned(), reason: reason.to_owned() }
}

/// Splits like a POSIX shell: whitespace separates words; single quotes, double quotes and
/// backslashes quote.
pub fn split_words(s: &str) -> Result<Vec<String>, OptionsError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(OptionsError::UnterminatedQuote { options: s.to_owned() }),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(OptionsError::UnterminatedQuote { options: s.to_owned() }),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(OptionsError::UnterminatedQuote { options: s.to_owned() }),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => cur.push(c),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A Go duration (`1m30s`, `500ms`, `1.5h`, `0`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

fn duration(flag: &str, value: &str) -> Result<Duration, OptionsError> {
    parse_duration(value).ok_or_else(|| invalid(flag, value, "expected a duration such as 10s, 500ms or 1m30s"))
}

/// docker's `RAMInBytes`: `512`, `512k`, `64m`, `1.5g`, `2GiB` (binary multiples).
pub fn parse_ram(s: &str) -> Option<i64> {
    let s = s.trim();
    let num_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    if num_len == 0 {
        return None;
    }
    let value: f64 = s[..num_len].parse().ok()?;
    let unit = s[num_len..].trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return None;
    }
    Some(bytes as i64)
}

fn ram_bytes(flag: &str, value: &str) -> Result<i64, OptionsError> {
    parse_ram(value).ok_or_else(|| invalid(flag, value, "expected a size such as 512m or 2g"))
}

/// A parsed `-p` spec: the container port key (`80/tcp`) and its host binding.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    pub container: String,
    pub binding: PortBinding,
}

/// Parses `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `8080:80/udp`.
pub fn parse_port(spec: &str) -> Result<PortSpec, OptionsError> {
    let err = |reason: &str| OptionsError::Port { spec: spec.to_owned(), reason: reason.to_owned() };
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (spec, "tcp"),
    };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(err("protocol must be tcp, udp or sctp"));
    }
    // IPv6 host addresses come bracketed: [::1]:8080:80.
    let (host_ip, rest) = if let Some(after) = addr.strip_prefix('[') {
        let (ip, rest) = after.split_once("]:").ok_or_else(|| err("unterminated [ipv6] address"))?;
        (Some(ip.to_owned()), rest)
    } else {
        (None, addr)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host_port, container_port) = match (host_ip, parts.as_slice()) {
        (None, [c]) => (None, "", *c),
        (None, [h, c]) => (None, *h, *c),
        (None, [ip, h, c]) => (Some((*ip).to_owned()), *h, *c),
        (Some(ip), [h, c]) => (Some(ip), *h, *c),
        _ => return Err(err("expected [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")),
    };
    let valid_port = |p: &str| p.parse::<u16>().map(|n| n > 0).unwrap_or(false);
    if !valid_port(container_port) {
        return Err(err("the container port must be a number from 1 to 65535 (ranges are not supported)"));
    }
    if !host_port.is_empty() && !valid_port(host_port) {
        return Err(err("the host port must be a number from 1 to 65535 (ranges are not supported)"));
    }
    Ok(PortSpec {
        container: format!("{container_port}/{proto}"),
        binding: PortBinding { host_ip: ip.filter(|s| !s.is_empty()), host_port: Some(host_port.to_owned()) },
    })
}

/// A parsed `-v` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `/path`: an anonymous volume, removed with the container.
    Anonymous(String),
    /// `name:/path[:opts]` or `/host:/path[:opts]`: passed to the engine as a bind string.
    Bind(String),
}

pub fn parse_volume(spec: &str) -> Result<VolumeSpec, OptionsError> {
    let err = |reason: &str| OptionsError::Volume { spec: spec.to_owned(), reason: reason.to_owned() };
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [target] => {
            if !target.starts_with('/') {
                return Err(err("the container path must be absolute"));
            }
            Ok(VolumeSpec::Anonymous((*target).to_owned()))
        }
        [source, target] | [source, target, _] => {
            if source.is_empty() {
                return Err(err("empty source"));
            }
            if !target.starts_with('/') {
                return Err(err("the container path must be absolute"));
            }
            Ok(VolumeSpec::Bind(spec.to_owned()))
        }
        _ => Err(err("expected [SOURCE:]CONTAINER_PATH[:OPTIONS]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(options: &str, expect: CreateOptions) {
        assert_eq!(CreateOptions::parse(options), Ok(expect), "{options}");
    }

    fn check_err(options: &str, expect: &str) {
        match CreateOptions::parse(options) {
            Ok(o) => panic!("{options}: expected an error, got {o:?}"),
            Err(e) => assert_eq!(e.to_string(), expect, "{options}"),
        }
    }

    #[test]
    fn health_flags() {
        check(
            r#"--health-cmd "pg_isready -U postgres" --health-interval=10s --health-timeout 5s --health-retries 5 --health-start-period 1m30s"#,
            CreateOptions {
                health: HealthOptions {
                    cmd: Some("pg_isready -U postgres".into()),
                    interval: Some(Duration::from_secs(10)),
                    timeout: Some(Duration::from_secs(5)),
                    retries: Some(5),
                    start_period: Some(Duration::from_secs(90)),
                    disabled: false,
                },
                ..Default::default()
            },
        );
        check(
            "--health-cmd='redis-cli ping'",
            CreateOptions {
                health: HealthOptions { cmd: Some("redis-cli ping".into()), ..Default::default() },
                ..Default::default()
            },
        );
        check(
            "--no-healthcheck",
            CreateOptions { health: HealthOptions { disabled: true, ..Default::default() }, ..Default::default() },
        );
    }

    #[test]
    fn health_config() {
        let o = CreateOptions::parse("--health-cmd 'exit 0' --health-interval 100ms").expect("parses");
        let c = o.health.to_config().expect("set");
        assert_eq!(c.test, Some(vec!["CMD-SHELL".to_owned(), "exit 0".to_owned()]));
        assert_eq!(c.interval, Some(100_000_000));
        assert_eq!(CreateOptions::default().health.to_config(), None);
    }

    #[test]
    fn common_flags() {
        check(
            "-e A=1 --env=B=x=y -eC=3 --cpus 1.5 --memory 512m --user 1000:1000 --entrypoint /bin/sh \
             --workdir /w --privileged --cap-add NET_ADMIN --network-alias db2 --hostname db -m=1g",
            CreateOptions {
                env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into()), ("C".into(), "3".into())],
                nano_cpus: Some(1_500_000_000),
                memory: Some(1024 * 1024 * 1024),
                user: Some("1000:1000".into()),
                entrypoint: Some("/bin/sh".into()),
                workdir: Some("/w".into()),
                privileged: true,
                cap_add: vec!["NET_ADMIN".into()],
                network_aliases: vec!["db2".into()],
                hostname: Some("db".into()),
                ..Default::default()
            },
        );
        check("", CreateOptions::default());
        check("  --privileged=false --rm ", CreateOptions::default());
    }

    #[test]
    fn bad_options() {
        check_err("--volumes-from x", "unsupported container option `--volumes-from`");
        check_err("--cpus", "container option `--cpus` needs a value");
        check_err("--cpus lots", "container option `--cpus`: invalid value `lots`: expected a number");
        check_err("--cpus 0", "container option `--cpus`: invalid value `0`: must be greater than 0");
        check_err(
            "--health-interval 10",
            "container option `--health-interval`: invalid value `10`: expected a duration such as 10s, 500ms or 1m30s",
        );
        check_err("-e NOVALUE", "container option `-e`: invalid value `NOVALUE`: expected NAME=VALUE");
        check_err(
            "--health-cmd 'unterminated",
            "container options: unterminated quote in `--health-cmd 'unterminated`",
        );
        check_err("postgres", "unsupported container option `postgres`");
        check_err(
            "--privileged=maybe",
            "container option `--privileged`: invalid value `maybe`: expected true or false",
        );
        check_err(
            "--health-retries -1",
            "container option `--health-retries`: invalid value `-1`: must not be negative",
        );
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"a "b c" 'd e' f\ g "h\"i""#),
            Ok(vec!["a".to_owned(), "b c".into(), "d e".into(), "f g".into(), "h\"i".into()])
        );
        assert_eq!(split_words(r#"x="" y"#), Ok(vec!["x=".to_owned(), "y".into()]));
        assert_eq!(split_words("''"), Ok(vec![String::new()]));
    }

    #[test]
    fn durations() {
        let cases = [
            ("10s", Some(10_000)),
            ("500ms", Some(500)),
            ("1m30s", Some(90_000)),
            ("1.5h", Some(5_400_000)),
            ("0", Some(0)),
            ("10", None),
            ("", None),
            ("s", None),
            ("5d", None),
        ];
        for (input, ms) in cases {
            assert_eq!(parse_duration(input).map(|d| d.as_millis()), ms, "{input}");
        }
    }

    #[test]
    fn ram() {
        let cases = [
            ("512", Some(512)),
            ("1k", Some(1024)),
            ("64m", Some(64 << 20)),
            ("1.5g", Some(3 << 29)),
            ("2GiB", Some(2 << 30)),
            ("2 MB", Some(2 << 20)),
            ("x", None),
            ("5q", None),
        ];
        for (input, bytes) in cases {
            assert_eq!(parse_ram(input), bytes, "{input}");
        }
    }

    #[test]
    fn ports() {
        let p = |container: &str, ip: Option<&str>, host: &str| PortSpec {
            container: container.into(),
            binding: PortBinding { host_ip: ip.map(Into::into), host_port: Some(host.into()) },
        };
        assert_eq!(parse_port("80"), Ok(p("80/tcp", None, "")));
        assert_eq!(parse_port("8080:80"), Ok(p("80/tcp", None, "8080")));
        assert_eq!(parse_port("127.0.0.1:8080:80/udp"), Ok(p("80/udp", Some("127.0.0.1"), "8080")));
        assert_eq!(parse_port("127.0.0.1::80"), Ok(p("80/tcp", Some("127.0.0.1"), "")));
        assert_eq!(parse_port("[::1]:8080:80"), Ok(p("80/tcp", Some("::1"), "8080")));
        assert!(parse_port("80/icmp").is_err());
        assert!(parse_port("8000-8010:8000-8010").is_err());
        assert!(parse_port("a:b:c:d").is_err());
        assert!(parse_port("0").is_err());
    }

    #[test]
    fn volumes() {
        assert_eq!(parse_volume("/data"), Ok(VolumeSpec::Anonymous("/data".into())));
        assert_eq!(parse_volume("cache:/cache"), Ok(VolumeSpec::Bind("cache:/cache".into())));
        assert_eq!(parse_volume("/h:/c:ro"), Ok(VolumeSpec::Bind("/h:/c:ro".into())));
        assert!(parse_volume("data").is_err());
        assert!(parse_volume("a:rel").is_err());
        assert!(parse_volume(":/x").is_err());
    }
}
