//! The daemon: wires the pipeline and runs it until SIGINT or SIGTERM.
//!
//! capture (kernel ring buffer -> decoded records, `capture` thread)
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
    let (decoded_tx, decoded_rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(64);
    let capture = capture::spawn(ring, decoded_tx, stats.clone(), stop.clone())?;

    // Enrich -> publish.
    let feed = Feed::new(args.stream_buffer);
    let hashes = HashCache::start();
    let enricher = Enricher::new(table, hashes);
    let publisher = Publisher::new(feed.clone(), stats.clone());
    let detections = DetectionStore::default();
    let responder = Responder::new(args.mode == Mode::Blocking, args.blocking_scope_pid);
    let prevention = responder.describe(&crate::probes::bpf_lsm_status().1);
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
        detection: detection_info,
        started: Instant::now(),
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(grpc::serve(
        grpc::SensorService {
            feed,
            health: health.clone(),
            detections,
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
    let _ = capture.join();
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
        let mut found = self.detector.observe(&event);
        for det in &mut found {
            self.responder.respond(&event, det, &self.enricher.table);
        }
        self.publisher.publish(event);
        for mut det in found {
            det.seq = self.publisher.next_seq();
            let det = self.publisher.publish(det);
            self.detections.push(det);
        }
    }
}

fn spawn_pipeline(
    rx: Receiver<Vec<Decoded>>,
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
                    Ok(batch) => batch.into_iter().for_each(|d| stages.run(d)),
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
