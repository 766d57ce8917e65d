//! On-demand scans: custom (given paths), quick (temporary and home directories and the
//! executables of running processes) and full (every monitored filesystem).
//!
//! One walker thread lists files and feeds a bounded queue; parallel workers scan them
//! with the same engine and threat handling as real-time protection. Symlinks are never
//! followed (so no loops), /proc, /sys and /dev are never entered (except /dev/shm, which
//! holds files), and a full scan stays on each monitored filesystem. Progress is reported
//! every 200 ms; cancelling stops the walk and the workers at their next file.
//!
//! A scan belongs to no process, so with a blocking scope set (`--blocking-scope-pid`) it
//! reports what it finds and quarantines nothing: the scope is a staged roll-out, and a
//! scan cannot tell whose file it found. Without a scope, blocking mode quarantines.

use std::{
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{RecvTimeoutError, sync_channel},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::{
    exclusions::excludes_path,
    proto,
    scan::{Engine, Verdict},
    threats::{Access, Found, ThreatHandler},
};

const KERNEL_TREES: &[&str] = &["/proc", "/sys", "/dev"];

/// The scan running now, if any.
#[derive(Default)]
pub struct ScanControl {
    running: Mutex<Option<Arc<AtomicBool>>>,
}

impl ScanControl {
    /// Claims the single scan slot; the returned flag cancels the scan.
    pub fn begin(&self) -> Result<Arc<AtomicBool>> {
        let mut r = self.running.lock().unwrap();
        if r.is_some() {
            bail!("a scan is already running (sensor scan cancel stops it)");
        }
        let flag = Arc::new(AtomicBool::new(false));
        *r = Some(flag.clone());
        Ok(flag)
    }

    pub fn end(&self) {
        *self.running.lock().unwrap() = None;
    }

    pub fn cancel(&self) -> bool {
        match &*self.running.lock().unwrap() {
            Some(f) => {
                f.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// What to scan for each kind of scan.
pub fn roots(kind: &str, paths: &[String], monitored: &[String]) -> Result<Vec<PathBuf>> {
    Ok(match kind {
        "custom" => {
            if paths.is_empty() {
                bail!("a custom scan needs at least one path");
            }
            paths.iter().map(PathBuf::from).collect()
        }
        "quick" => {
            let mut v: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev/shm", "/root"]
                .iter()
                .map(PathBuf::from)
                .collect();
            if let Ok(d) = std::fs::read_dir("/home") {
                v.extend(d.flatten().map(|e| e.path()));
            }
            // Executables of running processes, each once.
            let mut exes: Vec<PathBuf> = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path().join("exe")).ok())
                .filter(|p| p.is_absolute() && p.exists())
                .collect();
            exes.sort();
            exes.dedup();
            v.extend(exes);
            v
        }
        "full" => monitored.iter().map(PathBuf::from).collect(),
        _ => bail!("unknown scan kind {kind:?} (custom, quick, full)"),
    })
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    bytes: AtomicU64,
    threats: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
}

pub struct ScanJob {
    pub roots: Vec<PathBuf>,
    /// Stay on the filesystem of each root (full scans).
    pub one_filesystem: bool,
    pub ignore_exclusions: bool,
    pub workers: usize,
    /// Added to every file (the daemon's hidden test flag): makes a scan last.
    pub delay: Duration,
}

/// Runs a scan to the end (or cancellation), calling `progress` about every 200 ms and
/// once more at the end with `done` set.
pub fn run(
    job: ScanJob,
    engine: &Engine,
    handler: &ThreatHandler,
    cancel: &AtomicBool,
    mut progress: impl FnMut(proto::ScanProgress),
) {
    let started = Instant::now();
    let c = Counters::default();
    let found: Mutex<Vec<proto::Threat>> = Mutex::default();
    let exclusions = if job.ignore_exclusions {
        Arc::new(proto::Exclusions::default())
    } else {
        handler.exclusions.get()
    };
    let (tx, rx) = sync_channel::<PathBuf>(1024);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let walker = s.spawn(|| {
            for root in &job.roots {
                walk(root, job.one_filesystem, &exclusions, &c, cancel, &tx);
            }
            drop(tx);
        });
        let workers: Vec<_> = (0..job.workers.max(1))
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let next = rx.lock().unwrap().recv();
                        let Ok(path) = next else { break };
                        if cancel.load(Ordering::Relaxed) {
                            continue;
                        }
                        if !job.delay.is_zero() {
                            std::thread::sleep(job.delay);
                        }
                        if let Some(t) = scan_one(&path, engine, handler, &c) {
                            found.lock().unwrap().push(t);
                        }
                    }
                })
            })
            .collect();
        let snapshot = |done: bool| proto::ScanProgress {
            files: c.files.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            threats: c.threats.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            elapsed_secs: started.elapsed().as_secs_f64(),
            done,
            cancelled: cancel.load(Ordering::Relaxed),
            found: std::mem::take(&mut *found.lock().unwrap()),
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        s.spawn(move || {
            let _ = walker.join();
            for w in workers {
                let _ = w.join();
            }
            drop(done_tx);
        });
        // Woken by the end itself, so the reported duration is the scan's, not a tick's.
        while let Err(RecvTimeoutError::Timeout) = done_rx.recv_timeout(Duration::from_millis(200))
        {
            progress(snapshot(false));
        }
        progress(snapshot(true));
    });
}

fn walk(
    root: &Path,
    one_filesystem: bool,
    x: &proto::Exclusions,
    c: &Counters,
    cancel: &AtomicBool,
    tx: &std::sync::mpsc::SyncSender<PathBuf>,
) {
    let in_kernel_tree =
        |p: &Path| KERNEL_TREES.iter().any(|t| p.starts_with(t)) && !p.starts_with("/dev/shm");
    use std::os::unix::fs::MetadataExt;
    let root_dev = std::fs::symlink_metadata(root).map(|m| m.dev()).ok();
    // A directory on another filesystem is not entered (full scans take each monitored
    // mount as its own root).
    let other_fs = |e: &walkdir::DirEntry| {
        one_filesystem && e.file_type().is_dir() && e.metadata().map(|m| m.dev()).ok() != root_dev
    };
    let it = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !in_kernel_tree(e.path()) && !other_fs(e));
    for entry in it {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let e = match entry {
            Ok(e) => e,
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if !e.file_type().is_file() {
            continue;
        }
        if excludes_path(x, &e.path().to_string_lossy()) {
            c.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if tx.send(e.into_path()).is_err() {
            return;
        }
    }
}

fn scan_one(
    path: &Path,
    engine: &Engine,
    handler: &ThreatHandler,
    c: &Counters,
) -> Option<proto::Threat> {
    // O_NOFOLLOW: the walk saw a regular file; a symlink swapped in since is not followed.
    // O_NONBLOCK: a FIFO swapped in must not hang the worker.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(_) => {
            c.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let defs = engine.definitions();
    let Ok(size) = file.metadata().map(|m| m.len()) else {
        c.errors.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    match engine.scan_file(&file, size, &defs) {
        Verdict::Clean => {
            c.files.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(size, Ordering::Relaxed);
            None
        }
        Verdict::TooLarge => {
            c.skipped.fetch_add(1, Ordering::Relaxed);
            None
        }
        Verdict::Error(_) => {
            c.errors.fetch_add(1, Ordering::Relaxed);
            None
        }
        Verdict::Threat(threat, scanned) => {
            c.files.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(size, Ordering::Relaxed);
            c.threats.fetch_add(1, Ordering::Relaxed);
            // Not an access to answer: the closure is never called.
            let record = handler.handle(
                Found {
                    path,
                    file: &file,
                    scanned,
                    threat,
                    access: Access::Scan,
                    pid: 0,
                    definitions_version: defs.version.clone(),
                },
                |_| false,
            );
            Some(record)
        }
    }
}
