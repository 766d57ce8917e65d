//! The daemon: wires the pipeline and runs it until SIGINT or SIGTERM.
//!
//! capture (kernel ring buffer -> decoded records, `capture` thread;
//!          fanotify -> scans -> threats, `rtp-*` threads, see [`crate::rtp`])
//!   -> enrich (process table)  \
//!   -> detect (behavioural detections) } `pipeline` thread
//!   -> act (kill in blocking mode)      |
//!   -> publish (sequence numbers, gRPC subscribers, detection store) /
//!
//! Stages are joined by bounded channels, so a slow stage pushes back to the kernel, which
//! counts what it cannot queue. On shutdown the stages stop in order and every program is
//! detached before the process exits.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use sensor_common::EventKind;

use crate::{
    act::Responder,
    antimalware::{Antimalware, AvConfig, default_workers},
    capture,
    decode::Decoded,
    detect::{DetectConfig, DetectionEngine, DetectionStore, sigma::SigmaRules},
    enrich::{Enricher, HashCache},
    grpc,
    health::{HealthSource, Stats},
    probes::{ProbeConfig, Probes},
    process_table::ProcessTable,
    proto,
    publish::{Feed, Publisher},
    rtp::RtpConfig,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Detect and report only.
    Passive,
    /// Also stop what detections and real-time protection mark as preventable.
    Blocking,
}

#[derive(Clone, Debug, clap::Args)]
pub struct DaemonArgs {
    #[arg(long, value_enum, default_value = "passive")]
    pub mode: Mode,
    /// Unix socket of the gRPC API (created 0600).
    #[arg(long, default_value = crate::cli::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Also serve gRPC on this TCP address (e.g. 127.0.0.1:50051).
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Event kinds not to capture, comma-separated (e.g. dns_query,mprotect_exec).
    #[arg(long, value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Size of the kernel ring buffer in MiB (a power of two).
    #[arg(long, default_value_t = 8)]
    pub ring_buffer_mb: u32,
    /// Hard bound on the process table.
    #[arg(long, default_value_t = 32768)]
    pub process_table_capacity: usize,
    /// In blocking mode, stop only this process and its descendants (a staged roll-out;
    /// elsewhere detections are reported as in passive mode).
    #[arg(long)]
    pub blocking_scope_pid: Option<u32>,
    /// Directory of extra Sigma rules (*.yml) on top of the shipped ones.
    #[arg(long)]
    pub sigma_rules: Option<PathBuf>,
    /// Detection settings (JSON: disabled ids, allowlists, windows).
    #[arg(long)]
    pub detections_config: Option<PathBuf>,
    /// Events a stream subscriber may fall behind before it loses the oldest.
    #[arg(long, default_value_t = 4096)]
    pub stream_buffer: usize,
    /// Where definitions, quarantine, threat history and exclusions are kept (0700).
    #[arg(long, default_value = "/var/lib/sensor")]
    pub state_dir: PathBuf,
    /// Real-time protection: scan files on exec (and open) and after they are written.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub real_time_protection: bool,
    /// Scan plain opens too, not only execs (default: on in blocking mode).
    #[arg(long, action = clap::ArgAction::Set)]
    pub scan_on_open: Option<bool>,
    /// Mount points to protect instead of every local filesystem (repeatable).
    #[arg(long)]
    pub rtp_mount: Vec<PathBuf>,
    /// Mount points not to protect (repeatable).
    #[arg(long)]
    pub rtp_exclude_mount: Vec<PathBuf>,
    /// Every open or exec waiting on a scan is answered within this; past it, allowed.
    #[arg(long, default_value_t = crate::antimalware::DEFAULT_DEADLINE.as_millis() as u64)]
    pub scan_deadline_ms: u64,
    /// Parallel scan workers (real-time and on-demand); default: one per CPU, at least 2.
    #[arg(long)]
    pub scan_workers: Option<usize>,
    /// Files larger than this are not scanned (allowed and counted).
    #[arg(long, default_value_t = 64)]
    pub max_scan_size_mb: u64,
    /// Delay added to every scan: proves the deadline, fail-open and cancel paths.
    #[arg(long, default_value_t = 0, hide = true)]
    pub debug_scan_delay_ms: u64,
}

/// What the pipeline thread consumes: kernel records, and detections made elsewhere
/// (real-time protection and scans) that still need a sequence number and the process
/// tree.
pub enum Input {
    Records(Vec<Decoded>),
    Detection(Box<proto::Event>),
}

pub async fn run(args: DaemonArgs) -> Result<()> {
    // Handlers first: a SIGTERM during start-up must still lead to a clean exit.
    let signals = Signals::install()?;
    let disabled = parse_kinds(&args.disable)?;
    let detect_cfg = match &args.detections_config {
        Some(p) => DetectConfig::load(p)?,
        None => DetectConfig::default(),
    };
    let (sigma, sigma_skipped) = SigmaRules::load(args.sigma_rules.as_deref())?;
    for s in &sigma_skipped {
        log::warn!("sigma rule skipped: {s}");
    }
    let detection_info = proto::DetectionInfo {
        builtin: crate::detect::all_rules()
            .iter()
            .filter(|r| !detect_cfg.disabled.iter().any(|d| d == r.id))
            .count() as u32,
        sigma_rules: sigma.len() as u32,
        sigma_skipped,
    };
    if !args.ring_buffer_mb.is_power_of_two() {
        anyhow::bail!(
            "--ring-buffer-mb must be a power of two, got {}",
            args.ring_buffer_mb
        );
    }
    let unix = grpc::bind_unix(&args.socket).await?;

    // Capture: attach first, then read /proc, so no process falls between the two.
    let probes = Probes::load(&ProbeConfig {
        ring_buffer_bytes: args.ring_buffer_mb * 1024 * 1024,
        blocking: args.mode == Mode::Blocking,
        block_scope_tgid: args.blocking_scope_pid.unwrap_or(0),
        disabled,
        ignored_tgids: vec![std::process::id()],
        protected_tgids: std::iter::once(std::process::id())
            .chain(crate::probes::pids_named("auditd"))
            .collect(),
    })?;
    let Probes {
        events: ring,
        counters,
        status,
        enabled,
        dropped,
        exec_denial,
        ebpf,
    } = probes;
    for st in status.iter().filter(|s| !s.attached) {
        log::warn!("{} ({}) not attached: {}", st.name, st.hook, st.error);
    }
    let mut table = ProcessTable::new(args.process_table_capacity, 2048, Duration::from_secs(10));
    table.seed_from_proc();

    let stats = Arc::new(Stats::default());
    *stats.table.lock().unwrap() = table.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let (decoded_tx, decoded_rx) = std::sync::mpsc::sync_channel::<Input>(64);
    let av = Arc::new(Antimalware::start(
        AvConfig {
            state_dir: args.state_dir.clone(),
            blocking: args.mode == Mode::Blocking,
            real_time: args.real_time_protection,
            rtp: RtpConfig {
                scan_on_open: args.scan_on_open.unwrap_or(args.mode == Mode::Blocking),
                mounts: args.rtp_mount.clone(),
                exclude_mounts: args.rtp_exclude_mount.clone(),
                workers: args.scan_workers.unwrap_or_else(default_workers),
                deadline: Duration::from_millis(args.scan_deadline_ms),
                scan_delay: Duration::from_millis(args.debug_scan_delay_ms),
            },
            max_file_size: args.max_scan_size_mb * 1024 * 1024,
            scan_workers: args.scan_workers.unwrap_or_else(default_workers),
        },
        decoded_tx.clone(),
    )?);
    let capture = capture::spawn(ring, decoded_tx, stats.clone(), stop.clone())?;

    // Enrich -> publish.
    let feed = Feed::new(args.stream_buffer);
    let hashes = HashCache::start();
    let enricher = Enricher::new(table, hashes);
    let publisher = Publisher::new(feed.clone(), stats.clone());
    let detections = DetectionStore::default();
    let window_ns = detect_cfg.drop_exec_window().as_nanos() as u64;
    let responder = Responder::new(args.mode == Mode::Blocking, args.blocking_scope_pid)
        .with_dropped_map(dropped, window_ns);
    let prevention = responder.describe(&exec_denial);
    let stages = Stages {
        enricher,
        detector: DetectionEngine::new(detect_cfg).with_sigma(sigma),
        responder,
        publisher,
        detections: detections.clone(),
    };
    let enrich = spawn_pipeline(decoded_rx, stages, stats.clone())?;

    let health = Arc::new(HealthSource {
        stats: stats.clone(),
        counters: Mutex::new(counters),
        programs: status,
        enabled,
        mode: format!("{:?}", args.mode).to_lowercase(),
        prevention,
        exec_denial,
        detection: detection_info,
        started: Instant::now(),
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(grpc::serve(
        grpc::SensorService {
            feed,
            health: health.clone(),
            detections,
            av: av.clone(),
            shutdown: shutdown_rx.clone(),
        },
        unix,
        args.socket.clone(),
        args.grpc_listen,
        shutdown_rx,
    ));
    let attached = health.programs.iter().filter(|p| p.attached).count();
    log::info!(
        "sensor ready: mode {:?}, {attached}/{} hooks attached, serving on {}",
        args.mode,
        health.programs.len(),
        args.socket.display()
    );
    eprintln!("sensor: ready on {}", args.socket.display());

    signals.wait().await;
    log::info!("shutting down");
    let _ = shutdown_tx.send(true);
    stop.store(true, Ordering::Relaxed);
    av.stop();
    let _ = capture.join();
    drop(av);
    let _ = enrich.join();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => log::warn!("gRPC server task: {e}"),
        Err(_) => log::warn!("gRPC server did not stop within 5 s"),
    }
    drop(health);
    let mut ebpf = ebpf;
    crate::probes::detach_all(&mut ebpf);
    drop(ebpf);
    Ok(())
}

fn parse_kinds(names: &[String]) -> Result<HashSet<EventKind>> {
    names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| EventKind::from_name(n).with_context(|| format!("unknown event kind {n:?}")))
        .collect()
}

/// The stages after capture, run in order on each record by one thread.
struct Stages {
    enricher: Enricher,
    detector: DetectionEngine,
    responder: Responder,
    publisher: Publisher,
    detections: DetectionStore,
}

impl Stages {
    fn run(&mut self, d: Decoded) {
        let mut event = self.enricher.enrich(d);
        event.seq = self.publisher.next_seq();
        self.responder.observe(&event);
        let mut found = self.detector.observe(&event);
        for det in &mut found {
            self.responder.respond(&event, det, &self.enricher.table);
        }
        self.publisher.publish(event);
        for det in found {
            self.publish_detection(det);
        }
    }

    fn publish_detection(&mut self, mut det: proto::Event) {
        det.seq = self.publisher.next_seq();
        let det = self.publisher.publish(det);
        self.detections.push(det);
    }

    /// A detection made outside the kernel pipeline: its process gets the ancestry the
    /// process table knows.
    fn run_detection(&mut self, mut det: proto::Event) {
        if let Some(p) = &det.process
            && let Some(known) = self.enricher.process_of(p.pid, p.start_time)
        {
            det.process = Some(known);
        }
        self.publish_detection(det);
    }
}

fn spawn_pipeline(
    rx: Receiver<Input>,
    mut stages: Stages,
    stats: Arc<Stats>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let mut last_stats: Option<Instant> = None;
            loop {
                // Published before the first event too: health shows the seeded table at once.
                if last_stats.is_none_or(|t| t.elapsed() > Duration::from_millis(100)) {
                    last_stats = Some(Instant::now());
                    let e = &stages.enricher;
                    *stats.table.lock().unwrap() = e.table.stats();
                    stats
                        .hash_cache_size
                        .store(e.hash_cache_len() as u64, Ordering::Relaxed);
                    stats
                        .hashes_computed
                        .store(e.hashes_computed(), Ordering::Relaxed);
                }
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(Input::Records(batch)) => batch.into_iter().for_each(|d| stages.run(d)),
                    Ok(Input::Detection(d)) => stages.run_detection(*d),
                    Err(RecvTimeoutError::Timeout) => {
                        stages.enricher.table.evict_exited(Instant::now())
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })
}

/// SIGINT and SIGTERM, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
