//! The command-line client: talks to the daemon over its gRPC socket and prints for
//! people (text) or for tools (`--output json`, one object per line).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::proto;

pub mod antimalware;
pub mod diagnostic;
pub mod errors;
pub mod output;
pub mod rules;

pub use errors::status_error;
/// The connection and the JSON form of events are the protocol crate's, shared with every
/// other client.
pub use proto::{
    client::{channel, connect},
    event_json,
};

pub const DEFAULT_SOCKET: &str = "/run/sensor/sensor.sock";

/// A directory for the daemon to read, as a path that means the same there (absolute,
/// links resolved).
pub fn daemon_path(dir: &Path) -> Result<String> {
    let p = dir
        .canonicalize()
        .with_context(|| format!("{}", dir.display()))?;
    Ok(p.to_string_lossy().into_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Debug, clap::Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen.
    #[arg(long, short)]
    pub follow: bool,
    /// Event kinds to show, comma-separated (e.g. process_exec,net_connect).
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only events of this process (and, with --descendants, its descendants).
    #[arg(long)]
    pub pid: Vec<u32>,
    #[arg(long)]
    pub descendants: bool,
    /// How many recent events to print first (default: 100 without --follow, 0 with it).
    #[arg(long)]
    pub last: Option<u32>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Clone, Debug, clap::Args)]
pub struct DetectionsListArgs {
    /// Only detections with a sequence number above this one.
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Clone, Debug, clap::Args)]
pub struct HealthArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Print one value: a key of `--output json`, nested keys joined by dots (e.g. `mode`,
    /// `real_time_protection.enabled`, `events.lost.file_create`).
    #[arg(long, value_name = "NAME")]
    pub field: Option<String>,
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

pub async fn events(args: EventsArgs) -> Result<()> {
    let mut client = connect(&args.socket).await?;
    let request = proto::StreamEventsRequest {
        kinds: args.kind.clone(),
        pids: args.pid.clone(),
        include_descendants: args.descendants,
        backlog: args.last.unwrap_or(if args.follow { 0 } else { 100 }),
        snapshot_only: !args.follow,
    };
    let mut stream = client
        .stream_events(request)
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(event) = stream.message().await.map_err(status_error)? {
        print_event(&event, args.output)?;
    }
    // A followed stream has no end of its own: it ends only when the daemon stops.
    if args.follow {
        bail!("the sensor daemon went away (the event stream ended)");
    }
    Ok(())
}

fn print_event(e: &proto::Event, output: Output) -> Result<()> {
    match output {
        Output::Json => output::json_line(&event_json(e)),
        Output::Text => output::text_line(&event_text(e)),
    }
}

pub async fn detections_list(args: DetectionsListArgs) -> Result<()> {
    let mut client = connect(&args.socket).await?;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_detections(proto::ListDetectionsRequest {
                since: args.since,
                page_size: 0,
                page_token,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        for d in &page.detections {
            print_event(d, args.output)?;
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// The daemon's health answer, for every command that shows part of it.
pub(crate) async fn daemon_health(socket: &Path) -> Result<proto::Health> {
    let mut client = connect(socket).await?;
    Ok(client
        .get_health(proto::GetHealthRequest {})
        .await
        .map_err(status_error)?
        .into_inner())
}

pub async fn health(args: HealthArgs) -> Result<()> {
    let h = daemon_health(&args.socket).await?;
    if let Some(name) = &args.field {
        let v = health_field(&health_json(&h), name)?;
        return match (args.output, v) {
            (Output::Text, Value::String(s)) => output::text_line(&s),
            (Output::Text, v) => output::text_line(&v.to_string()),
            (Output::Json, v) => output::json_pretty(&v),
        };
    }
    match args.output {
        Output::Json => output::json_pretty(&health_json(&h)),
        Output::Text => {
            for line in health_text(&h) {
                output::text_line(&line)?;
            }
            Ok(())
        }
    }
}

fn event_text(e: &proto::Event) -> String {
    let p = e.process.clone().unwrap_or_default();
    let detail = if let Some(x) = e.exec.as_ref().filter(|x| !x.denied.is_empty()) {
        format!("{} denied: {}", x.filename, x.denied)
    } else if let Some(x) = &e.exec {
        format!("{} {}", x.filename, p.args.join(" "))
    } else if let Some(x) = &e.exit {
        format!("code={} signal={}", x.exit_code, x.signal)
    } else if let Some(f) = &e.file {
        if f.new_path.is_empty() {
            f.path.clone()
        } else {
            format!("{} -> {}", f.path, f.new_path)
        }
    } else if let Some(n) = &e.net {
        format!(
            "{}:{} -> {}:{} ({}) = {}",
            n.src_addr, n.src_port, n.dst_addr, n.dst_port, n.protocol, n.result
        )
    } else if let Some(d) = &e.dns {
        format!("{} type {} via {}", d.query, d.qtype, d.server)
    } else if let Some(x) = &e.ptrace {
        format!("{} pid {} = {}", x.request, x.target_pid, x.result)
    } else if let Some(x) = &e.fd_dup {
        format!("{} -> {} socket={}", x.oldfd, x.newfd, x.socket.is_some())
    } else if let Some(x) = &e.memfd {
        format!("{} = {}", x.name, x.result)
    } else if let Some(d) = &e.detection {
        let repeats = if d.count > 1 {
            format!(" x{} since seq {}", d.count, d.first_seq)
        } else {
            String::new()
        };
        format!(
            "{} [{}] {} ({}){repeats} evidence={:?}",
            d.id, d.severity, d.title, d.action, d.evidence
        )
    } else if let Some(g) = &e.gap {
        format!("missed {} events", g.missed)
    } else {
        String::new()
    };
    format!(
        "{:>8} {:<14} pid={} exe={} {}",
        e.seq, e.kind, p.pid, p.exe, detail
    )
}

/// Health as JSON: counters keyed by event kind so tools can index them.
pub fn health_json(h: &proto::Health) -> Value {
    let per_kind = |f: fn(&proto::KindCounters) -> u64| -> Map<String, Value> {
        h.events
            .iter()
            .map(|k| (k.kind.clone(), json!(f(k))))
            .collect()
    };
    let attached = h.programs.iter().filter(|p| p.attached).count();
    json!({
        "version": h.version,
        "mode": h.mode,
        "uptime_secs": h.uptime_secs,
        "programs": h.programs,
        "programs_attached": attached,
        "programs_failed": h.programs.len() - attached,
        "events": {
            "received": per_kind(|k| k.received),
            "lost": per_kind(|k| k.lost),
            "kernel_errors": per_kind(|k| k.kernel_errors),
            "enabled": h.events.iter().filter(|k| k.enabled).map(|k| k.kind.clone()).collect::<Vec<_>>(),
        },
        "process_table": h.process_table,
        "pipeline": h.pipeline,
        "platform": h.platform,
        "detection": h.detection,
        "real_time_protection": h.real_time_protection,
        "definitions": h.definitions,
        "issues": h.issues,
    })
}

/// The value at `name` (keys joined by dots) in the JSON health, or an error that lists
/// the keys there are at the level where the name stopped matching.
fn health_field(health: &Value, name: &str) -> Result<Value> {
    let mut at = health;
    let mut path = Vec::new();
    for key in name.split('.') {
        let Some(next) = at.get(key) else {
            let known = at
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let place = if path.is_empty() {
                String::new()
            } else {
                format!(" in {}", path.join("."))
            };
            bail!("no health field {name:?}: no {key:?}{place} (there: {known})");
        };
        path.push(key);
        at = next;
    }
    Ok(at.clone())
}

/// Health for people, one entry per line (escaped when printed).
fn health_text(h: &proto::Health) -> Vec<String> {
    let mut s = Vec::new();
    let attached = h.programs.iter().filter(|p| p.attached).count();
    s.push(format!("version            {}", h.version));
    s.push(format!("mode               {}", h.mode));
    s.push(format!("uptime             {} s", h.uptime_secs));
    for issue in &h.issues {
        s.push(format!("ISSUE              {issue}"));
    }
    s.push(format!(
        "hooks attached     {attached}/{}",
        h.programs.len()
    ));
    for p in h.programs.iter().filter(|p| !p.attached) {
        s.push(format!("  FAILED {} {}: {}", p.name, p.hook, p.error));
    }
    if let Some(t) = &h.process_table {
        s.push(format!(
            "process table      {} / {} (evicted: {} exited, {} lru)",
            t.size, t.capacity, t.evicted_exited, t.evicted_lru
        ));
    }
    if let Some(p) = &h.pipeline {
        s.push(format!("published          {}", p.published));
        s.push(format!("decode errors      {}", p.decode_errors));
        s.push(format!("stream dropped     {}", p.stream_dropped));
        s.push(format!("repeats merged     {}", p.detections_merged));
    }
    if let Some(p) = &h.platform {
        s.push(format!("kernel             {} (BTF: {})", p.kernel, p.btf));
        s.push(format!(
            "bpf lsm            {} ({})",
            p.bpf_lsm, p.bpf_lsm_reason
        ));
        s.push(format!("prevention         {}", p.prevention));
    }
    if let Some(d) = &h.detection {
        s.push(format!(
            "detections         {} built-in, {} sigma rules ({} filtered out, {} skipped)",
            d.builtin,
            d.sigma_rules,
            d.sigma_filtered,
            d.sigma_skipped.len()
        ));
        if !d.sigma_installed_version.is_empty() {
            s.push(format!("sigma rule set     {}", d.sigma_installed_version));
        }
        for r in &d.sigma_skipped {
            s.push(format!("  SKIPPED {r}"));
        }
    }
    if let Some(r) = &h.real_time_protection {
        s.push(format!(
            "real-time prot.    {} ({} mounts)",
            r.status,
            r.marks.len()
        ));
        s.extend(every_field(r, &["status"]));
    }
    if let Some(d) = &h.definitions {
        s.push(format!(
            "definitions        {} ({}; {} hashes, {} yara rules)",
            d.version, d.status, d.hash_signatures, d.yara_rules
        ));
    }
    s.push(format!(
        "{:<16} {:>8} {:>10} {:>6} {:>7}",
        "kind", "enabled", "received", "lost", "errors"
    ));
    for k in &h.events {
        s.push(format!(
            "{:<16} {:>8} {:>10} {:>6} {:>7}",
            k.kind, k.enabled, k.received, k.lost, k.kernel_errors
        ));
    }
    s
}

/// Every field of a health message, one indented `name value` line each, from its JSON
/// form: a counter added to the message shows up here without an edit.
fn every_field<T: serde::Serialize>(message: &T, shown_already: &[&str]) -> Vec<String> {
    let Ok(Value::Object(fields)) = serde_json::to_value(message) else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(name, _)| !shown_already.contains(&name.as_str()))
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            format!("  {:<22} {value}", name.replace('_', " "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_fields_by_dotted_name() {
        let h = json!({"mode": "passive", "events": {"lost": {"file_create": 3}}});
        assert_eq!(health_field(&h, "mode").unwrap(), "passive");
        assert_eq!(health_field(&h, "events.lost.file_create").unwrap(), 3);
        let e = health_field(&h, "events.lostt").unwrap_err().to_string();
        assert!(e.contains("no \"lostt\" in events (there: lost)"), "{e}");
        let e = health_field(&h, "mode.x").unwrap_err().to_string();
        assert!(e.contains("no \"x\" in mode"), "{e}");
    }

    #[test]
    fn health_text_shows_every_real_time_protection_counter() {
        let rtp = proto::RealTimeProtection {
            write_scans_dropped: 15_477,
            queue_full: 3,
            overflows: 2,
            too_large: 7,
            marks: vec!["/a".into(), "/b".into()],
            ..Default::default()
        };
        let h = proto::Health {
            real_time_protection: Some(rtp.clone()),
            issues: vec!["exclusions file broken".into()],
            ..Default::default()
        };
        let text = health_text(&h).join("\n");
        let Value::Object(fields) = serde_json::to_value(&rtp).unwrap() else {
            panic!("not an object")
        };
        for name in fields.keys().filter(|n| *n != "status") {
            assert!(
                text.contains(&name.replace('_', " ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("write scans dropped    15477"), "{text}");
        assert!(text.contains("marks                  /a, /b"), "{text}");
        assert!(text.contains("ISSUE              exclusions file broken"));
    }
}
