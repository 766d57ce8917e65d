//! `cargo xtask bench detect`: the detection engine's throughput on a synthetic event mix
//! (single core, in process), and the latency from an exec to its detection on the gRPC
//! stream of a real daemon (p50/p99 over repeated fileless executions).

use std::{
    os::fd::AsRawFd,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use sensor::{
    detect::{
        DetectConfig, DetectionEngine,
        sigma::{SigmaFilter, SigmaRules},
    },
    proto,
};
use sensor_testkit::{Daemon, DaemonSpec, TempDir, events::server_mix};

/// Throughput with the shipped Sigma rules and those below `dirs`, loaded with `filter`.
fn throughput(dirs: &[&Path], filter: &SigmaFilter, what: &str) {
    let events = server_mix(100_000);
    let (sigma, _) = SigmaRules::load(dirs, filter).expect("Sigma rules");
    let rules = sigma.len();
    let mut engine = DetectionEngine::new(DetectConfig::default()).with_sigma(sigma);
    // Warm-up, then as many passes as fit in about two seconds.
    for e in &events {
        engine.observe(e);
    }
    let start = Instant::now();
    let mut n = 0u64;
    let mut found = 0usize;
    while start.elapsed() < Duration::from_secs(2) {
        for e in &events {
            found += engine.observe(e).len();
        }
        n += events.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    println!(
        "detect: built-in detections + {rules} Sigma rules ({what}): {n} events in {secs:.2} s on one core: {rate:.0} events/s ({found} detections)"
    );
    println!(
        "detect: target >= 200000 events/s per core: {}",
        if rate >= 200_000.0 { "PASS" } else { "MISS" }
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn latency(triggers: usize) -> anyhow::Result<()> {
    let Some(bin) = std::env::var_os("SENSOR_BIN") else {
        println!("latency: SENSOR_BIN not set, skipped");
        return Ok(());
    };
    let dir = TempDir::new("bench-detect");
    let socket = dir.path().join("sensor.sock");
    // Each run is the same detection from the same parent: counted into one alert with
    // aggregation on, so it is off here, where every run's own latency is measured.
    let cfg = dir.path().join("detections.json");
    std::fs::write(&cfg, r#"{"aggregation_window_secs": 0}"#)?;
    let spec = DaemonSpec::new(Path::new(&bin), &socket, &dir.path().join("daemon.log"))
        .args([std::ffi::OsStr::new("--detections-config"), cfg.as_os_str()]);
    let mut daemon = Daemon::launch(spec)?;
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let mut client = sensor_testkit::client(&socket).await?;
        let req = proto::StreamEventsRequest {
            kinds: vec!["detection".into()],
            pids: vec![std::process::id()],
            include_descendants: true,
            ..Default::default()
        };
        let mut stream = client.stream_events(req).await?.into_inner();
        // A memfd holding /bin/true: each run is a fileless execution (SNS-0002).
        let name = std::ffi::CString::new("bench")?;
        let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
        let image = std::fs::read("/bin/true")?;
        let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        std::io::Write::write_all(&mut &file, &image)?;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut samples = Vec::with_capacity(triggers);
        for _ in 0..triggers {
            let t0 = Instant::now();
            let child = Command::new(&path).spawn()?;
            let pid = child.id();
            loop {
                let Some(e) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await?? else {
                    anyhow::bail!("stream ended");
                };
                if e.process.as_ref().is_some_and(|p| p.pid == pid) {
                    samples.push(t0.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
            child.wait_with_output()?;
        }
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        println!("latency: exec -> detection on the gRPC stream over {triggers} triggers: p50 {p50:.1} ms, p99 {p99:.1} ms");
        println!("latency: target p99 < 50 ms: {}", if p99 < 50.0 { "PASS" } else { "MISS" });
        Ok(())
    });
    daemon.stop()?;
    result
}

fn main() -> anyhow::Result<()> {
    throughput(&[], &SigmaFilter::default(), "shipped");
    if let Some(dir) = std::env::var_os("SENSOR_BENCH_SIGMA_RULES") {
        let dir = Path::new(&dir);
        let label = format!("shipped and {}", dir.display());
        throughput(
            &[dir],
            &SigmaFilter::default(),
            &format!("{label}, default filter"),
        );
        throughput(
            &[dir],
            &SigmaFilter::everything(),
            &format!("{label}, every level and status"),
        );
    }
    latency(1000)
}
