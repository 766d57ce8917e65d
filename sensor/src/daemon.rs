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
    listen::{StateDir, TcpApi},
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
    /// Unix socket of the gRPC API (0600, in a root-owned directory nobody else can write).
    #[arg(long, default_value = crate::cli::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Also serve gRPC on this TCP address (e.g. 127.0.0.1:50051), over mutual TLS only:
    /// needs --grpc-tls-cert, --grpc-tls-key and --grpc-tls-client-ca.
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Certificate chain (PEM) the TCP listener presents.
    #[arg(long, requires = "grpc_listen")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --grpc-tls-cert; must be readable by root only.
    #[arg(long, requires = "grpc_listen")]
    pub grpc_tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) a TCP client's certificate must chain to.
    #[arg(long, requires = "grpc_listen")]
    pub grpc_tls_client_ca: Option<PathBuf>,
    /// Event kinds not to capture, comma-separated (e.g. dns_query,mprotect_exec).
    #[arg(long, value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Size of the kernel ring buffer in MiB: a power of two, 1 to 1024.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ring_buffer_mb: u32,
    /// Hard bound on the process table: 256 to 4194304 processes.
    #[arg(long, default_value_t = 32768, value_parser = ranged::<usize>(256, 4_194_304))]
    pub process_table_capacity: usize,
    /// In blocking mode, stop only this process and its descendants (a staged roll-out;
    /// elsewhere detections are reported as in passive mode). A pid from 1 to 4194304.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub blocking_scope_pid: Option<u32>,
    /// Directory of extra Sigma rules (*.yml) on top of the shipped ones.
    #[arg(long)]
    pub sigma_rules: Option<PathBuf>,
    /// Detection settings (JSON: disabled ids, allowlists, windows).
    #[arg(long)]
    pub detections_config: Option<PathBuf>,
    /// Events a stream subscriber may fall behind before it loses the oldest: 16 to 1048576.
    #[arg(long, default_value_t = 4096, value_parser = ranged::<usize>(16, 1 << 20))]
    pub stream_buffer: usize,
    /// Where definitions, quarantine, threat history and exclusions are kept. Created 0700
    /// if absent; an existing one must be owned by root and writable by nobody else.
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
    /// 100 to 600000 ms.
    #[arg(
        long,
        default_value_t = crate::antimalware::DEFAULT_DEADLINE.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(100..=600_000)
    )]
    pub scan_deadline_ms: u64,
    /// Parallel scan workers (real-time and on-demand), 1 to 256; default: one per CPU, at
    /// least 2.
    #[arg(long, value_parser = ranged::<usize>(1, 256))]
    pub scan_workers: Option<usize>,
    /// Files larger than this are not scanned (allowed and counted): 1 to 4096 MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_scan_size_mb: u64,
    /// Delay added to every scan: proves the deadline, fail-open and cancel paths.
    #[arg(long, default_value_t = 0, hide = true,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub debug_scan_delay_ms: u64,
}

/// A clap parser for an integer flag within `min..=max`, so a typo is refused with the range
/// instead of silently becoming something else.
fn ranged<T>(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::fmt::Display + Send + Sync + 'static,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(min..=max)
}

/// What the pipeline thread consumes: kernel records, and detections made elsewhere
/// (real-time protection and scans) that still need a sequence number and the process
/// tree.
pub enum Input {
    Records(Vec<Decoded>),
    Detection(Box<proto::Event>),
}

pub async fn run(args: DaemonArgs) -> Result<()> {
    // First: a SIGTERM during start-up (a slow disk, a rule file that never ends) must end
    // the daemon, not wait for start-up to finish.
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
    let state = StateDir::open(&args.state_dir)?;
    let tcp = TcpApi::from_flags(
        args.grpc_listen,
        args.grpc_tls_cert.as_deref(),
        args.grpc_tls_key.as_deref(),
        args.grpc_tls_client_ca.as_deref(),
    )?;
    let tcp = match tcp {
        Some(api) => Some((api.bind()?, api.tls)),
        None => None,
    };
    let unix = crate::listen::bind_unix(&args.socket).await?;

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
    let scope = crate::scope::BlockingScope::new(args.blocking_scope_pid)?;
    let av = Arc::new(Antimalware::start(
        AvConfig {
            state_dir: state.path.clone(),
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
            scope,
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
    let responder =
        Responder::new(args.mode == Mode::Blocking, scope).with_dropped_map(dropped, window_ns);
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
        tcp,
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

    signals.ready();
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
    drop(state);
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

/// SIGINT and SIGTERM, caught from the moment they are installed. Until the daemon is
/// ready, a signal ends the process at once: start-up holds nothing that needs an orderly
/// stop (kernel programs and fanotify marks go with the process's descriptors). Once ready,
/// it starts the orderly shutdown.
struct Signals {
    ready: Arc<AtomicBool>,
    received: tokio::sync::watch::Receiver<bool>,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let ready = Arc::new(AtomicBool::new(false));
        let (tx, received) = tokio::sync::watch::channel(false);
        let during_startup = ready.clone();
        // Its own task on the multi-threaded runtime: start-up may block its own thread.
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if !during_startup.load(Ordering::Acquire) {
                eprintln!("sensor: {name} during start-up, exiting");
                std::process::exit(1);
            }
            let _ = tx.send(true);
        });
        Ok(Self { ready, received })
    }

    fn ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    async fn wait(mut self) {
        let _ = self.received.wait_for(|got| *got).await;
    }
}
