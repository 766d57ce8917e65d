//! The command-line client: talks to the daemon over its gRPC socket and prints for
//! people (text) or for tools (`--output json`, one object per line).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::proto::{self, sensor_client::SensorClient};

pub mod antimalware;

pub const DEFAULT_SOCKET: &str = "/run/sensor/sensor.sock";

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
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// A client on the daemon's unix socket.
pub async fn connect(socket: &Path) -> Result<SensorClient<Channel>> {
    Ok(SensorClient::new(channel(socket).await?))
}

/// A gRPC channel on the daemon's unix socket (for any service it serves).
pub async fn channel(socket: &Path) -> Result<Channel> {
    let path = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    let channel = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| format!("connecting to the sensor daemon at {}", socket.display()))?;
    Ok(channel)
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
    let mut stream = client.stream_events(request).await?.into_inner();
    while let Some(event) = stream.message().await? {
        let line = match args.output {
            Output::Json => event_json(&event).to_string(),
            Output::Text => event_text(&event),
        };
        println!("{line}");
    }
    Ok(())
}

pub async fn detections_list(args: DetectionsListArgs) -> Result<()> {
    let mut client = connect(&args.socket).await?;
    let list = client
        .list_detections(proto::ListDetectionsRequest { since: args.since })
        .await?
        .into_inner();
    for d in &list.detections {
        let line = match args.output {
            Output::Json => event_json(d).to_string(),
            Output::Text => event_text(d),
        };
        println!("{line}");
    }
    Ok(())
}

pub async fn health(args: HealthArgs) -> Result<()> {
    let mut client = connect(&args.socket).await?;
    let h = client
        .get_health(proto::GetHealthRequest {})
        .await?
        .into_inner();
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&health_json(&h))?),
        Output::Text => print!("{}", health_text(&h)),
    }
    Ok(())
}

/// The event as JSON without the parts that do not apply to its kind.
pub fn event_json(e: &proto::Event) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    v
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
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
        format!(
            "{} [{}] {} ({}) evidence={:?}",
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
    })
}

fn health_text(h: &proto::Health) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let attached = h.programs.iter().filter(|p| p.attached).count();
    let _ = writeln!(s, "version            {}", h.version);
    let _ = writeln!(s, "mode               {}", h.mode);
    let _ = writeln!(s, "uptime             {} s", h.uptime_secs);
    let _ = writeln!(s, "hooks attached     {attached}/{}", h.programs.len());
    for p in h.programs.iter().filter(|p| !p.attached) {
        let _ = writeln!(s, "  FAILED {} {}: {}", p.name, p.hook, p.error);
    }
    if let Some(t) = &h.process_table {
        let _ = writeln!(
            s,
            "process table      {} / {} (evicted: {} exited, {} lru)",
            t.size, t.capacity, t.evicted_exited, t.evicted_lru
        );
    }
    if let Some(p) = &h.pipeline {
        let _ = writeln!(s, "published          {}", p.published);
        let _ = writeln!(s, "decode errors      {}", p.decode_errors);
        let _ = writeln!(s, "stream dropped     {}", p.stream_dropped);
    }
    if let Some(p) = &h.platform {
        let _ = writeln!(s, "kernel             {} (BTF: {})", p.kernel, p.btf);
        let _ = writeln!(s, "bpf lsm            {} ({})", p.bpf_lsm, p.bpf_lsm_reason);
        let _ = writeln!(s, "prevention         {}", p.prevention);
    }
    if let Some(d) = &h.detection {
        let _ = writeln!(
            s,
            "detections         {} built-in, {} sigma rules ({} skipped)",
            d.builtin,
            d.sigma_rules,
            d.sigma_skipped.len()
        );
        for r in &d.sigma_skipped {
            let _ = writeln!(s, "  SKIPPED {r}");
        }
    }
    if let Some(r) = &h.real_time_protection {
        let _ = writeln!(
            s,
            "real-time prot.    {} ({} mounts)",
            r.status,
            r.marks.len()
        );
        if r.enabled {
            let _ = writeln!(
                s,
                "  scan on open {}, deadline {} ms, {} workers",
                r.scan_on_open, r.deadline_ms, r.workers
            );
            let _ = writeln!(
                s,
                "  scanned {}, cache hits {}, threats {}, denied {}, deadline allowed {}, error allowed {}",
                r.scanned, r.cache_hits, r.threats, r.denied, r.deadline_allowed, r.error_allowed
            );
        }
    }
    if let Some(d) = &h.definitions {
        let _ = writeln!(
            s,
            "definitions        {} ({}; {} hashes, {} yara rules)",
            d.version, d.status, d.hash_signatures, d.yara_rules
        );
    }
    let _ = writeln!(
        s,
        "{:<16} {:>8} {:>10} {:>6} {:>7}",
        "kind", "enabled", "received", "lost", "errors"
    );
    for k in &h.events {
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>10} {:>6} {:>7}",
            k.kind, k.enabled, k.received, k.lost, k.kernel_errors
        );
    }
    s
}
