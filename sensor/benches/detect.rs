//! `cargo xtask bench detect`: the detection engine's throughput on a synthetic event mix
//! (single core, in process), and the latency from an exec to its detection on the gRPC
//! stream of a real daemon (p50/p99 over repeated fileless executions).

use std::{
    os::fd::AsRawFd,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sensor::{
    detect::{DetectConfig, DetectionEngine},
    proto,
};

fn process(pid: u32, exe: &str, args: &[&str]) -> proto::Process {
    proto::Process {
        pid,
        ppid: 1000,
        start_time: pid as u64 * 10_000_000,
        exe: exe.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        user: "root".into(),
        parent_exe: "/usr/bin/bash".into(),
        parent_args: vec!["bash".into()],
        ancestors: vec![
            proto::Ancestor {
                pid: 1000,
                start_time: 1,
                exe: "/usr/bin/bash".into(),
            },
            proto::Ancestor {
                pid: 1,
                start_time: 0,
                exe: "/sbin/init".into(),
            },
        ],
        ..Default::default()
    }
}

/// A mix shaped like a busy server: file writes and process churn dominate.
fn mix(n: usize) -> Vec<proto::Event> {
    (0..n)
        .map(|i| {
            let pid = 2000 + (i % 500) as u32;
            let mut e = proto::Event {
                seq: i as u64 + 1,
                timestamp_ns: i as u64 * 1000,
                ..Default::default()
            };
            match i % 20 {
                0..=3 => {
                    e.kind = "process_exec".into();
                    e.process = Some(process(
                        pid,
                        "/usr/bin/python3",
                        &["python3", "-m", "app.worker", "--queue", "default"],
                    ));
                    e.exec = Some(proto::ExecInfo {
                        filename: "/usr/bin/python3".into(),
                        nlink: 1,
                        ..Default::default()
                    });
                }
                4 | 5 => e.kind = "process_fork".into(),
                6 | 7 => e.kind = "process_exit".into(),
                8..=12 => {
                    e.kind = if i % 2 == 0 {
                        "file_write"
                    } else {
                        "file_create"
                    }
                    .into();
                    e.file = Some(proto::FileInfo {
                        path: format!("/var/lib/app/data/{}.json", i % 97),
                        ..Default::default()
                    });
                }
                13 => {
                    e.kind = "file_rename".into();
                    e.file = Some(proto::FileInfo {
                        path: "/tmp/x.part".into(),
                        new_path: "/tmp/x".into(),
                        ..Default::default()
                    });
                }
                14 | 15 => {
                    e.kind = "net_connect".into();
                    e.net = Some(proto::NetInfo {
                        dst_addr: "10.0.0.5".into(),
                        dst_port: 5432,
                        family: "inet".into(),
                        protocol: "tcp".into(),
                        ..Default::default()
                    });
                }
                16 => {
                    e.kind = "dns_query".into();
                    e.dns = Some(proto::DnsInfo {
                        query: "db.internal".into(),
                        qtype: 1,
                        ..Default::default()
                    });
                }
                17 => {
                    e.kind = "fd_dup".into();
                    e.fd_dup = Some(proto::FdDupInfo {
                        oldfd: 3,
                        newfd: 1,
                        result: 1,
                        ..Default::default()
                    });
                }
                18 => {
                    e.kind = "file_unlink".into();
                    e.file = Some(proto::FileInfo {
                        path: "/tmp/x".into(),
                        ..Default::default()
                    });
                }
                _ => {
                    e.kind = "net_accept".into();
                    e.net = Some(proto::NetInfo {
                        src_port: 8080,
                        family: "inet".into(),
                        ..Default::default()
                    });
                }
            }
            if e.process.is_none() {
                e.process = Some(process(
                    pid,
                    "/usr/bin/python3",
                    &["python3", "-m", "app.worker"],
                ));
            }
            e
        })
        .collect()
}

fn throughput() {
    let events = mix(100_000);
    let (sigma, _) = sensor::detect::sigma::SigmaRules::load(None).expect("shipped Sigma rules");
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
        "detect: built-in detections + {rules} Sigma rules: {n} events in {secs:.2} s on one core: {rate:.0} events/s ({found} detections)"
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
    let dir = std::env::temp_dir().join(format!("sensor-bench-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("sensor.sock");
    let mut daemon = Command::new(bin)
        .args(["daemon", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = loop {
            if let Ok(c) = sensor::cli::connect(&socket).await {
                break c;
            }
            anyhow::ensure!(Instant::now() < deadline, "daemon not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
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
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() -> anyhow::Result<()> {
    throughput();
    latency(1000)
}
