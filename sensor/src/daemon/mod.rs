//! The daemon: builds the pipeline from a checked configuration and runs it until SIGINT
//! or SIGTERM.
//!
//! capture (kernel ring buffer -> decoded records, `capture` thread;
//!          fanotify -> scans -> threats, `rtp-*` threads, see [`crate::antimalware`])
//!   -> enrich (process table)  \
//!   -> detect (behavioural detections) } `pipeline` thread
//!   -> act (kill in blocking mode)      |
//!   -> publish (sequence numbers, gRPC subscribers, detection store) /
//!
//! Stages are joined by bounded channels, so a slow stage pushes back to the kernel, which
//! counts what it cannot queue. On shutdown the stages stop in order and every program is
//! detached before the process exits.

mod config;
mod signals;
mod state_dir;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;

pub use config::{DaemonArgs, DaemonConfig, Mode};
use signals::Signals;
pub use state_dir::StateDir;

use crate::{
    antimalware::{Antimalware, AvConfig},
    api::{self, health::HealthSource, service::SensorService},
    detect::{DetectionEngine, DetectionStore, all_rules, sigma::SigmaSource},
    enrich::{Enricher, HashCache, process_table::ProcessTable},
    kernel::probes::{ProbeConfig, Probes},
    pipeline::{
        self, Stages, act::Responder, aggregate::Aggregator, capture, input, publish::Feed,
        publish::Publisher,
    },
    scope::BlockingScope,
};

pub async fn run(args: DaemonArgs) -> Result<()> {
    // First: a SIGTERM during start-up (a slow disk, a rule file that never ends) must end
    // the daemon, not wait for start-up to finish.
    let signals = Signals::install()?;
    let cfg = DaemonConfig::from_args(args)?;
    let state = StateDir::open(&cfg.state_dir)?;
    let (sigma_source, sigma) = SigmaSource::open(
        &state.path,
        cfg.sigma_rules.as_deref(),
        &cfg.detect.sigma,
        &cfg.detect.disabled,
    )?;
    let sigma_source = Arc::new(sigma_source);
    let builtin = all_rules()
        .iter()
        .filter(|r| !cfg.detect.disabled.iter().any(|d| d == r.id))
        .count() as u32;
    let tcp = match &cfg.tcp {
        Some(api) => Some((api.bind()?, api.tls.clone())),
        None => None,
    };
    let unix = api::socket::bind_unix(&cfg.socket).await?;

    // Capture: attach first, then read /proc, so no process falls between the two.
    let probes = Probes::load(&ProbeConfig {
        ring_buffer_bytes: cfg.ring_buffer_bytes,
        blocking: cfg.blocking(),
        block_scope_tgid: cfg.blocking_scope_pid.unwrap_or(0),
        disabled: cfg.disabled.clone(),
        ignored_tgids: vec![std::process::id()],
        protected_tgids: std::iter::once(std::process::id())
            .chain(crate::kernel::probes::pids_named("auditd"))
            .collect(),
        run_statistics: cfg.bpf_statistics,
        drop_window_secs: cfg.detect.drop_exec_window().as_secs(),
        module_load_attempts: cfg.module_load_attempts,
    })?;
    let Probes {
        events: ring,
        counters,
        status,
        enabled,
        wall_clock,
        exec_denial,
        run_statistics,
        module_loads,
        ebpf,
    } = probes;
    for st in status.iter().filter(|s| !s.attached) {
        log::warn!("{} ({}) not attached: {}", st.name, st.hook, st.error);
    }
    let mut table = ProcessTable::new(cfg.process_table_capacity, 2048, Duration::from_secs(10));
    table.seed_from_proc();

    let stats = Arc::new(pipeline::stats::Stats::default());
    *stats.table.lock().unwrap() = table.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let (records, reports, pipeline_input) = input::channel();
    let scope = BlockingScope::new(cfg.blocking_scope_pid)?;
    let av = Arc::new(Antimalware::start(
        AvConfig {
            state_dir: state.path.clone(),
            blocking: cfg.blocking(),
            real_time: cfg.real_time_protection,
            rtp: cfg.rtp.clone(),
            max_file_size: cfg.max_file_size,
            scope,
        },
        reports,
    )?);
    let capture = capture::spawn(ring, records, stats.clone(), stop.clone())?;
    let clock = spawn_wall_clock(wall_clock, stop.clone())?;

    // Enrich -> detect -> act -> publish.
    let feed = Feed::new(cfg.stream_buffer);
    let detections = DetectionStore::default();
    let responder = Responder::new(cfg.blocking(), scope);
    let prevention = responder.describe(&exec_denial, &av.rtp_health().marks);
    let stages = Stages {
        enricher: Enricher::new(table, HashCache::start()),
        detector: DetectionEngine::new(cfg.detect.clone())
            .with_sigma(sigma)
            .with_sigma_updates(sigma_source.handoff()),
        responder,
        aggregator: Aggregator::new(cfg.detect.aggregation_window()),
        publisher: Publisher::new(feed.clone(), stats.clone()),
        detections: detections.clone(),
    };
    let finish = Arc::new(AtomicBool::new(false));
    let pipeline = pipeline::spawn(pipeline_input, stages, stats.clone(), finish.clone())?;

    let health = Arc::new(HealthSource {
        stats,
        counters: Mutex::new(counters),
        programs: status,
        run_statistics,
        enabled,
        mode: format!("{:?}", cfg.mode).to_lowercase(),
        prevention,
        exec_denial,
        module_loads,
        builtin,
        sigma: sigma_source.clone(),
        started: Instant::now(),
        av: av.clone(),
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    // Ready before the API answers: a client that saw health may stop the daemon at once,
    // and that must be the orderly stop, not the start-up exit.
    signals.ready();
    let server = tokio::spawn(api::service::serve(
        SensorService {
            feed,
            health: health.clone(),
            detections,
            rules: sigma_source,
            av: av.clone(),
            shutdown: shutdown_rx.clone(),
        },
        unix,
        cfg.socket.clone(),
        tcp,
        shutdown_rx,
    ));
    let attached = health.programs.iter().filter(|p| p.attached).count();
    log::info!(
        "sensor ready: mode {:?}, {attached}/{} hooks attached, serving on {}",
        cfg.mode,
        health.programs.len(),
        cfg.socket.display()
    );
    eprintln!("sensor: ready on {}", cfg.socket.display());

    signals.wait().await;
    log::info!("shutting down");
    // Shutdown order: streams are told to end (so no client holds shutdown up); then the
    // producers stop: capture (its thread exits on `stop`) and real-time protection
    // (`av.stop()` answers whatever is pending); then the pipeline publishes what they
    // queued and exits on `finish`. The API server goes next, then the state directory's
    // lock, and only then are the kernel programs detached: until the pipeline has
    // drained, blocking mode still needs them.
    let _ = shutdown_tx.send(true);
    stop.store(true, Ordering::Relaxed);
    av.stop();
    let _ = capture.join();
    let _ = clock.join();
    finish.store(true, Ordering::Release);
    let _ = pipeline.join();
    drop(av);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => log::warn!("gRPC server task: {e}"),
        Err(_) => log::warn!("gRPC server did not stop within 5 s"),
    }
    drop(health);
    drop(state);
    let mut ebpf = ebpf;
    crate::kernel::probes::detach_all(&mut ebpf);
    drop(ebpf);
    Ok(())
}

/// The `wall-clock` thread: keeps the kernel's wall-clock offset current, so a stepped
/// clock (NTP, an administrator) cannot age a fresh drop out of the window or make an old
/// file look fresh for longer than a refresh period.
fn spawn_wall_clock(
    mut map: aya::maps::Array<aya::maps::MapData, u64>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    const REFRESH: Duration = Duration::from_secs(2);
    let t = std::thread::Builder::new()
        .name("wall-clock".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() < REFRESH {
                    continue;
                }
                last = Instant::now();
                let offset = crate::enrich::wall_clock_offset();
                if let Err(e) = map.set(0, offset, 0) {
                    log::warn!("wall-clock offset for the kernel: {e}");
                }
            }
        })?;
    Ok(t)
}
