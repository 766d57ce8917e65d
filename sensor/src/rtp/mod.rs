//! Real-time protection: scan files as they are opened, executed and written, through a
//! fanotify content-class group.
//!
//! The kernel has no timeout for permission events: a listener that stops answering
//! freezes every process that opens a marked file. The design follows from that:
//!
//! - one `fanotify-reader` thread only reads events and hands them on; it never scans,
//!   never blocks on a queue, and answers at once what needs no scan (the sensor's own
//!   accesses, a full queue);
//! - a pool of `rtp-worker` threads scans, so one slow file delays only its own opener;
//! - a `rtp-deadline` thread allows every permission event still unanswered at the
//!   deadline, and counts it;
//! - every pending event is a [`Pending`] whose drop answers "allow": an error, a panic
//!   or shutdown can only fail open. If the daemon dies, the kernel releases the waiters
//!   when the group's fd closes.
//!
//! A file found clean is remembered twice: in a verdict cache keyed by (dev, inode,
//! mtime, ctime, size, definitions version), and in the kernel by an ignore mark that the
//! kernel itself clears when the file is modified, so unchanged files cost nothing on
//! later opens. Files closed after writing are scanned in the background by one
//! `rtp-writes` thread.

pub mod fanotify;
pub mod mounts;

use std::{
    collections::VecDeque,
    fs::File,
    num::NonZeroUsize,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{
        Arc, Condvar, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::{
    exclusions::{excludes_path, excludes_process},
    proto,
    scan::{Engine, Verdict},
    threats::{Access, Found, ThreatHandler},
};
use fanotify::Group;

#[derive(Clone, Debug)]
pub struct RtpConfig {
    /// Scan plain opens too (exec is always scanned).
    pub scan_on_open: bool,
    pub mounts: Vec<PathBuf>,
    pub exclude_mounts: Vec<PathBuf>,
    pub workers: usize,
    pub deadline: Duration,
    /// Added to every scan; only for proving the deadline and fail-open paths.
    pub scan_delay: Duration,
}

/// Permission events waiting for a worker. Past this, events are allowed unscanned (and
/// counted) rather than queued without bound.
const QUEUE: usize = 4096;
const WRITE_QUEUE: usize = 4096;
const CACHE_ENTRIES: usize = 65536;

#[derive(Default)]
pub struct RtpStats {
    pub events: AtomicU64,
    pub permission_events: AtomicU64,
    pub self_allowed: AtomicU64,
    pub excluded: AtomicU64,
    pub cache_hits: AtomicU64,
    pub scanned: AtomicU64,
    pub threats: AtomicU64,
    pub denied: AtomicU64,
    pub deadline_allowed: AtomicU64,
    pub error_allowed: AtomicU64,
    pub too_large: AtomicU64,
    pub queue_full: AtomicU64,
    pub pending: AtomicU64,
    pub ignore_marks: AtomicU64,
    pub write_scans_dropped: AtomicU64,
    pub overflows: AtomicU64,
    pub unmatchable: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A permission event until it is answered. Whoever answers first wins; the fd stays open
/// until the last holder is done, so a late worker never reads a recycled fd number.
struct Pending {
    fd: OwnedFd,
    group: Arc<Group>,
    answered: AtomicBool,
    stats: Arc<RtpStats>,
    deadline: Instant,
}

impl Pending {
    fn answer(&self, allow: bool) -> bool {
        self.answer_counted(allow, None)
    }

    /// Answers and, if this call is the one that answers, counts it in `why` first: a
    /// client that reads the counters right after its open returns must see it.
    fn answer_counted(&self, allow: bool, why: Option<&AtomicU64>) -> bool {
        if self.answered.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Some(c) = why {
            bump(c);
        }
        self.stats.pending.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = self.group.respond(self.fd.as_raw_fd(), allow) {
            log::error!("fanotify answer: {e}");
        }
        true
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.answer(true);
    }
}

enum Job {
    Perm {
        pending: Arc<Pending>,
        pid: i32,
        exec: bool,
    },
}

struct WriteJob {
    fd: OwnedFd,
    pid: i32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct FileKey {
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
}

/// A verdict remembered for one inode.
#[derive(Clone)]
struct Cached {
    key: FileKey,
    version: String,
    threat: Option<String>,
}

struct Shared {
    group: Arc<Group>,
    engine: Arc<Engine>,
    handler: Arc<ThreatHandler>,
    stats: Arc<RtpStats>,
    cache: Mutex<lru::LruCache<(u64, u64), Cached>>,
    scan_delay: Duration,
    self_pid: i32,
}

pub struct Rtp {
    pub stats: Arc<RtpStats>,
    pub marks: Vec<String>,
    pub scan_on_open: bool,
    pub workers: usize,
    pub deadline: Duration,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Rtp {
    pub fn start(
        cfg: &RtpConfig,
        engine: Arc<Engine>,
        handler: Arc<ThreatHandler>,
    ) -> Result<Self> {
        let points = mounts::current(&cfg.mounts, &cfg.exclude_mounts)?;
        raise_fd_limit();
        let group = Arc::new(Group::new().context("fanotify_init")?);
        let mut mask = fanotify::OPEN_EXEC_PERM | fanotify::CLOSE_WRITE;
        if cfg.scan_on_open {
            mask |= fanotify::OPEN_PERM;
        }
        let mut marks = Vec::new();
        for p in &points {
            match group.mark_mount(p, mask) {
                Ok(()) => marks.push(p.to_string_lossy().into_owned()),
                // One mount refusing (a read-only special mount, say) must not leave the
                // others unprotected.
                Err(e) => log::warn!("real-time protection: cannot mark {}: {e}", p.display()),
            }
        }
        if marks.is_empty() {
            anyhow::bail!("no mount could be marked");
        }
        let stats = Arc::new(RtpStats::default());
        let shared = Arc::new(Shared {
            group: group.clone(),
            engine,
            handler,
            stats: stats.clone(),
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CACHE_ENTRIES).unwrap(),
            )),
            scan_delay: cfg.scan_delay,
            self_pid: std::process::id() as i32,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (job_tx, job_rx) = sync_channel::<Job>(QUEUE);
        let (write_tx, write_rx) = sync_channel::<WriteJob>(WRITE_QUEUE);
        let deadlines = Arc::new((Mutex::new(VecDeque::<Weak<Pending>>::new()), Condvar::new()));
        let workers = cfg.workers.max(1);
        let mut threads = Vec::new();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..workers {
            let (rx, sh, stop) = (job_rx.clone(), shared.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("rtp-worker-{i}"))
                    .spawn(move || worker(&rx, &sh, &stop))?,
            );
        }
        {
            let (sh, stop) = (shared.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("rtp-writes".into())
                    .spawn(move || write_worker(&write_rx, &sh, &stop))?,
            );
        }
        {
            let (d, st, stop) = (deadlines.clone(), stats.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("rtp-deadline".into())
                    .spawn(move || deadline_keeper(&d, &st, &stop))?,
            );
        }
        {
            let (sh, stop, deadline) = (shared.clone(), stop.clone(), cfg.deadline);
            threads.push(
                std::thread::Builder::new()
                    .name("fanotify-reader".into())
                    .spawn(move || reader(&sh, &job_tx, &write_tx, &deadlines, deadline, &stop))?,
            );
        }
        log::info!(
            "real-time protection on {} mount(s), scan on open: {}, deadline {} ms",
            marks.len(),
            cfg.scan_on_open,
            cfg.deadline.as_millis()
        );
        Ok(Self {
            stats,
            marks,
            scan_on_open: cfg.scan_on_open,
            workers,
            deadline: cfg.deadline,
            shared,
            stop,
            threads,
        })
    }

    /// After new definitions: forget every verdict, in the cache and in the kernel.
    pub fn definitions_changed(&self) {
        self.shared.cache.lock().unwrap().clear();
        if let Err(e) = self.shared.group.flush_inode_marks() {
            log::error!("flushing ignore marks: {e}");
        }
    }

    /// Stops the threads; every event still pending is allowed on the way out, and the
    /// marks go with the group's fd.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }

    pub fn health(&self, scan_after_write: bool) -> proto::RealTimeProtection {
        let s = &self.stats;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        proto::RealTimeProtection {
            enabled: true,
            status: "active".into(),
            marks: self.marks.clone(),
            scan_on_open: self.scan_on_open,
            scan_after_write,
            deadline_ms: self.deadline.as_millis() as u32,
            workers: self.workers as u32,
            max_file_size: self.shared.engine.max_size(),
            events: g(&s.events),
            permission_events: g(&s.permission_events),
            self_allowed: g(&s.self_allowed),
            excluded: g(&s.excluded),
            cache_hits: g(&s.cache_hits),
            scanned: g(&s.scanned),
            threats: g(&s.threats),
            denied: g(&s.denied),
            deadline_allowed: g(&s.deadline_allowed),
            error_allowed: g(&s.error_allowed),
            too_large: g(&s.too_large),
            queue_full: g(&s.queue_full),
            pending: g(&s.pending),
            ignore_marks: g(&s.ignore_marks),
            write_scans_dropped: g(&s.write_scans_dropped),
            overflows: g(&s.overflows),
            unmatchable: g(&s.unmatchable),
        }
    }
}

/// Every event in flight holds an fd (queued, being scanned, awaiting its deadline): the
/// usual soft limit of 1024 would make the kernel fail reads under load. Raised to the hard
/// limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                log::warn!(
                    "cannot raise the open-file limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Weak: an event answered and done with frees its fd at once, even while older ones
/// still wait ahead of it here.
type Deadlines = (Mutex<VecDeque<Weak<Pending>>>, Condvar);

fn reader(
    sh: &Shared,
    jobs: &SyncSender<Job>,
    writes: &SyncSender<WriteJob>,
    deadlines: &Deadlines,
    deadline: Duration,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let st = &sh.stats;
    let mut last_event = Instant::now() - SPIN;
    while !stop.load(Ordering::Relaxed) {
        // Right after an event, look again without sleeping: a process opening files in
        // a row sends the next one within microseconds, and waking a sleeping reader from
        // another CPU costs tens of microseconds on a VM. Idle, the reader sleeps in poll.
        let wait = if last_event.elapsed() < SPIN { 0 } else { 100 };
        let events = match sh.group.read(&mut buf, wait) {
            Ok(e) => e,
            Err(e) => {
                log::error!("fanotify read: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if events.is_empty() {
            if wait == 0 {
                std::hint::spin_loop();
            }
            continue;
        }
        last_event = Instant::now();
        for ev in events {
            bump(&st.events);
            if ev.is_overflow() {
                bump(&st.overflows);
                continue;
            }
            let (perm, mask, pid) = (ev.is_perm(), ev.mask, ev.pid);
            let Some(fd) = ev.fd else { continue };
            if ev.garbled {
                bump(&st.error_allowed);
                let _ = sh.group.respond(fd.as_raw_fd(), true);
                continue;
            }
            if perm {
                bump(&st.permission_events);
                st.pending.fetch_add(1, Ordering::Relaxed);
                let pending = Arc::new(Pending {
                    fd,
                    group: sh.group.clone(),
                    answered: AtomicBool::new(false),
                    stats: st.clone(),
                    deadline: Instant::now() + deadline,
                });
                // The sensor reads its own files (definitions, quarantine, /proc-adjacent
                // state): scanning them could wait on itself.
                if pid == sh.self_pid {
                    bump(&st.self_allowed);
                    pending.answer(true);
                    continue;
                }
                if let Some(allow) = quick_verdict(sh, &pending.fd) {
                    pending.answer(allow);
                    continue;
                }
                // No wakeup for the keeper: it looks at the queue every KEEPER_TICK, and a
                // wakeup per event would cost more than the deadline's precision is worth.
                deadlines
                    .0
                    .lock()
                    .unwrap()
                    .push_back(Arc::downgrade(&pending));
                let exec = mask & fanotify::OPEN_EXEC_PERM != 0;
                match jobs.try_send(Job::Perm { pending, pid, exec }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(Job::Perm { pending, .. })) => {
                        bump(&st.queue_full);
                        pending.answer(true);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            } else if mask & fanotify::CLOSE_WRITE != 0
                && pid != sh.self_pid
                && quick_verdict(sh, &fd).is_none()
                && let Err(TrySendError::Full(_)) = writes.try_send(WriteJob { fd, pid })
            {
                bump(&st.write_scans_dropped);
            }
        }
    }
}

/// The verdicts that need neither the file's content nor its path, given on the reader
/// thread without a hop to a worker: not a regular file, over the size limit, or a size no
/// signature can have (no YARA rules loaded, too long for EICAR, no hash of that size).
/// Only an fstat of an fd already open: it cannot block.
fn quick_verdict(sh: &Shared, fd: &OwnedFd) -> Option<bool> {
    let file = as_file(fd);
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return Some(true);
    }
    match sh
        .engine
        .verdict_by_size(meta.len(), &sh.engine.definitions())?
    {
        Verdict::TooLarge => bump(&sh.stats.too_large),
        _ => {
            bump(&sh.stats.unmatchable);
            ignore(sh, fd, &file, file_key(&meta));
        }
    }
    Some(true)
}

/// The event's fd as a `File`, without a dup: fanotify hands over one fd per event, and
/// it stays open for as long as the event is handled.
fn as_file(fd: &OwnedFd) -> std::mem::ManuallyDrop<File> {
    // SAFETY: the fd is valid while `fd` lives, which outlives the returned view, and
    // ManuallyDrop never closes it.
    std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) })
}

/// How long the reader keeps looking for events after one before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// How often the keeper looks for overdue events: the deadline's precision.
const KEEPER_TICK: Duration = Duration::from_millis(20);

fn deadline_keeper(deadlines: &Deadlines, st: &RtpStats, stop: &AtomicBool) {
    let (q, cv) = deadlines;
    let mut q = q.lock().unwrap();
    loop {
        // Every event has the same deadline span, so the queue is in deadline order.
        while q.front().is_some_and(|w| {
            w.upgrade()
                .is_none_or(|p| p.answered.load(Ordering::Acquire))
        }) {
            q.pop_front();
        }
        if stop.load(Ordering::Relaxed) {
            // Whatever is left is allowed as the Pendings drop.
            q.clear();
            return;
        }
        let now = Instant::now();
        let wait = match q.front().and_then(Weak::upgrade) {
            Some(p) if p.deadline <= now => {
                p.answer_counted(true, Some(&st.deadline_allowed));
                q.pop_front();
                continue;
            }
            Some(p) => (p.deadline - now).min(KEEPER_TICK),
            None => KEEPER_TICK,
        };
        q = cv.wait_timeout(q, wait).unwrap().0;
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, sh: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let job = rx.lock().unwrap().recv_timeout(Duration::from_millis(100));
        match job {
            Ok(Job::Perm { pending, pid, exec }) => {
                let access = if exec { Access::Exec } else { Access::Open };
                let allow = decide(sh, &pending.fd, pid, access);
                pending.answer_counted(allow, (!allow).then_some(&sh.stats.denied));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn write_worker(rx: &Receiver<WriteJob>, sh: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(j) => {
                decide(sh, &j.fd, j.pid, Access::Write);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn file_key(m: &std::fs::Metadata) -> FileKey {
    FileKey {
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        size: m.size(),
    }
}

/// Scans (or recalls) the file behind `fd` and acts on it; returns whether to allow.
/// Every failure allows.
fn decide(sh: &Shared, fd: &OwnedFd, pid: i32, access: Access) -> bool {
    let st = &sh.stats;
    let file = as_file(fd);
    let Ok(meta) = file.metadata() else {
        bump(&st.error_allowed);
        return true;
    };
    if !meta.is_file() {
        return true;
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
    let exclusions = sh.handler.exclusions.get();
    if excludes_path(&exclusions, &path.to_string_lossy()) || process_excluded(&exclusions, pid) {
        bump(&st.excluded);
        return true;
    }
    let defs = sh.engine.definitions();
    let id = (meta.dev(), meta.ino());
    let key = file_key(&meta);
    let cached = sh.cache.lock().unwrap().get(&id).cloned();
    if let Some(c) = cached
        && c.key == key
        && c.version == defs.version
    {
        bump(&st.cache_hits);
        return match c.threat {
            None => {
                ignore(sh, fd, &file, key);
                true
            }
            // A known threat still in place: passive mode or an allowed threat. Reported
            // once, when it was found; blocking decides again in case the allow list
            // changed.
            Some(name) => {
                let x = sh.handler.exclusions.get();
                !(sh.handler.blocking()
                    && access != Access::Write
                    && !crate::exclusions::threat_allowed(&x, &name))
            }
        };
    }
    if !sh.scan_delay.is_zero() {
        std::thread::sleep(sh.scan_delay);
    }
    bump(&st.scanned);
    match sh.engine.scan_file(&file, meta.len(), &defs) {
        Verdict::Clean => {
            remember(sh, id, key, &defs.version, None);
            ignore(sh, fd, &file, key);
            true
        }
        Verdict::TooLarge => {
            bump(&st.too_large);
            true
        }
        Verdict::Error(e) => {
            log::debug!("scan of {} failed: {e}", path.display());
            bump(&st.error_allowed);
            true
        }
        Verdict::Threat(threat, scanned) => {
            bump(&st.threats);
            remember(sh, id, key, &defs.version, Some(threat.name.clone()));
            let (deny, _) = sh.handler.handle(Found {
                path: &path,
                file: &file,
                scanned,
                threat,
                access,
                pid: pid.max(0) as u32,
                definitions_version: defs.version.clone(),
            });
            !deny
        }
    }
}

fn remember(sh: &Shared, id: (u64, u64), key: FileKey, version: &str, threat: Option<String>) {
    sh.cache.lock().unwrap().put(
        id,
        Cached {
            key,
            version: version.to_string(),
            threat,
        },
    );
}

/// Sets the kernel's ignore mark for a file found clean with metadata `key`. A write that
/// landed between the scan and the mark would not clear it, so the file is checked again
/// after marking and the mark taken back if it changed.
fn ignore(sh: &Shared, fd: &OwnedFd, file: &File, key: FileKey) {
    if let Err(e) = sh.group.ignore_until_modified(fd.as_raw_fd()) {
        log::debug!("ignore mark: {e}");
        return;
    }
    if file.metadata().is_ok_and(|m| file_key(&m) == key) {
        bump(&sh.stats.ignore_marks);
    } else if let Err(e) = sh.group.unignore(fd.as_raw_fd()) {
        log::error!("removing a stale ignore mark: {e}");
    }
}

fn process_excluded(x: &proto::Exclusions, pid: i32) -> bool {
    if x.processes.is_empty() || pid <= 0 {
        return false;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    excludes_process(x, &exe, comm.trim_end())
}
