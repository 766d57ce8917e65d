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
//! No local user can push someone else's verdicts past the deadline: the queue to the
//! workers ([`queue`]) serves execs first and users in turn, and folds events for a file
//! already queued or being scanned into that one scan. Every opener of a threat outside
//! the blocking scope gets the passive treatment: reported, allowed, nothing quarantined.
//!
//! A file found clean is remembered twice: in a verdict cache keyed by (dev, inode,
//! mtime, ctime, size, definitions version), and in the kernel by an ignore mark that the
//! kernel itself clears when the file is modified, so unchanged files cost nothing on
//! later opens. Files closed after writing are scanned in the background by one
//! `rtp-writes` thread, from a set of written files ([`writes`]) that coalesces a burst
//! instead of dropping it.

pub mod fanotify;
pub mod mounts;
mod queue;
mod writes;

use std::{
    collections::VecDeque,
    fs::File,
    num::NonZeroUsize,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::{
    exclusions::{excludes_path, excludes_process},
    proto,
    scan::{Engine, ScannedFile, Threat, Verdict},
    threats::{Access, Found, ThreatHandler},
};
use fanotify::Group;
use queue::{Batch, InodeId, ScanQueue, Submitted, Waiter};
use writes::{Dirty, DirtySet, Noted, WriteJob};

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
    pub overflows: AtomicU64,
    pub unmatchable: AtomicU64,
    pub write_scans_coalesced: AtomicU64,
    pub write_scans_deferred: AtomicU64,
    pub write_scans_skipped: AtomicU64,
    pub write_scans_deleted: AtomicU64,
    pub scans_coalesced: AtomicU64,
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
                // A mount the administrator named must be protected, or the daemon says so.
                Err(e) if !cfg.mounts.is_empty() => {
                    anyhow::bail!("cannot mark {} for real-time protection: {e}", p.display())
                }
                // By default, one mount refusing (a read-only special mount, say) must not
                // leave the others unprotected.
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
        let jobs = Arc::new(ScanQueue::default());
        let written = Arc::new(DirtySet::default());
        let deadlines = Arc::new((Mutex::new(VecDeque::<Weak<Pending>>::new()), Condvar::new()));
        let workers = cfg.workers.max(1);
        let mut threads = Vec::new();
        for i in 0..workers {
            let (q, sh, stop) = (jobs.clone(), shared.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("rtp-worker-{i}"))
                    .spawn(move || worker(&q, &sh, &stop))?,
            );
        }
        {
            let (w, sh, stop) = (written.clone(), shared.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("rtp-writes".into())
                    .spawn(move || write_worker(&w, &sh, &stop))?,
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
                    .spawn(move || reader(&sh, &jobs, &written, &deadlines, deadline, &stop))?,
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
            // Nothing is dropped any more; kept for clients that read it.
            write_scans_dropped: 0,
            overflows: g(&s.overflows),
            unmatchable: g(&s.unmatchable),
            write_scans_coalesced: g(&s.write_scans_coalesced),
            write_scans_deferred: g(&s.write_scans_deferred),
            write_scans_skipped: g(&s.write_scans_skipped),
            scans_coalesced: g(&s.scans_coalesced),
            write_scans_deleted: g(&s.write_scans_deleted),
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
    jobs: &ScanQueue,
    written: &DirtySet,
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
                let exec = mask & fanotify::OPEN_EXEC_PERM != 0;
                on_permission(sh, jobs, deadlines, deadline, fd, pid, exec);
            } else if mask & fanotify::CLOSE_WRITE != 0 && pid != sh.self_pid {
                on_written(sh, written, fd, pid);
            }
        }
    }
}

/// Answers a permission event at once when no scan is needed, else queues it for one.
fn on_permission(
    sh: &Shared,
    jobs: &ScanQueue,
    deadlines: &Deadlines,
    deadline: Duration,
    fd: OwnedFd,
    pid: i32,
    exec: bool,
) {
    let st = &sh.stats;
    bump(&st.permission_events);
    st.pending.fetch_add(1, Ordering::Relaxed);
    let pending = Arc::new(Pending {
        fd,
        group: sh.group.clone(),
        answered: AtomicBool::new(false),
        stats: st.clone(),
        deadline: Instant::now() + deadline,
    });
    // The sensor reads its own files (definitions, quarantine, /proc-adjacent state):
    // scanning them could wait on itself.
    if pid == sh.self_pid {
        bump(&st.self_allowed);
        pending.answer(true);
        return;
    }
    let (inode, key) = match triage(sh, &pending.fd) {
        Triage::Allow => {
            pending.answer(true);
            return;
        }
        Triage::Scan(inode, key) => (inode, key),
    };
    // No wakeup for the keeper: it looks at the queue every KEEPER_TICK, and a wakeup per
    // event would cost more than the deadline's precision is worth.
    deadlines
        .0
        .lock()
        .unwrap()
        .push_back(Arc::downgrade(&pending));
    let access = if exec { Access::Exec } else { Access::Open };
    let waiter = Waiter {
        pending,
        pid,
        access,
    };
    match jobs.submit(inode, key, uid_of(pid), waiter) {
        Submitted::Queued => {}
        Submitted::Joined => bump(&st.scans_coalesced),
        Submitted::Full(w) => {
            w.pending.answer_counted(true, Some(&st.queue_full));
        }
    }
}

/// Notes a file closed after writing for its background scan.
fn on_written(sh: &Shared, written: &DirtySet, fd: OwnedFd, pid: i32) {
    let st = &sh.stats;
    let Triage::Scan(inode, _) = triage(sh, &fd) else {
        return;
    };
    let (noted, deleted) = written.note(inode, WriteJob { fd, pid });
    st.write_scans_deleted.fetch_add(deleted, Ordering::Relaxed);
    match noted {
        Noted::Added => {}
        Noted::Coalesced => bump(&st.write_scans_coalesced),
        Noted::Deferred => bump(&st.write_scans_deferred),
        Noted::Deleted => bump(&st.write_scans_deleted),
        Noted::Skipped => {
            // Logged at the first and then every thousandth, so a flood cannot flood the
            // log too.
            let before = st.write_scans_skipped.fetch_add(1, Ordering::Relaxed);
            if before.is_multiple_of(1000) {
                log::warn!(
                    "real-time protection: {} written file(s) not scanned so far: too many \
                     written at once in too many directories",
                    before + 1
                );
            }
        }
    }
}

/// The uid a process runs as (its real uid, which it cannot shed the way it can change
/// effective ids or become non-dumpable); `u32::MAX` for a process already gone.
fn uid_of(pid: i32) -> u32 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return u32::MAX;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_ascii_whitespace().next()?.parse().ok())
        .unwrap_or(u32::MAX)
}

enum Triage {
    /// Answered without the content: not a regular file, too large, or a size no
    /// signature can have.
    Allow,
    /// Needs a scan: the file and its metadata now.
    Scan(InodeId, FileKey),
}

/// The verdicts that need neither the file's content nor its path, given on the reader
/// thread without a hop to a worker: not a regular file, over the size limit, or a size no
/// signature can have (no YARA rules loaded, too long for EICAR, no hash of that size).
/// Only an fstat of an fd already open: it cannot block.
fn triage(sh: &Shared, fd: &OwnedFd) -> Triage {
    let file = as_file(fd);
    let Ok(meta) = file.metadata() else {
        bump(&sh.stats.error_allowed);
        return Triage::Allow;
    };
    if !meta.is_file() {
        return Triage::Allow;
    }
    let Some(v) = sh
        .engine
        .verdict_by_size(meta.len(), &sh.engine.definitions())
    else {
        return Triage::Scan((meta.dev(), meta.ino()), file_key(&meta));
    };
    match v {
        Verdict::TooLarge => bump(&sh.stats.too_large),
        _ => {
            bump(&sh.stats.unmatchable);
            ignore(sh, fd, &file, file_key(&meta));
        }
    }
    Triage::Allow
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

/// Ends a file's scan in the queue even if answering its events panics, so events for
/// that file never wait on a scan that is gone.
struct Scanning<'a> {
    queue: &'a ScanQueue,
    inode: InodeId,
}

impl Drop for Scanning<'_> {
    fn drop(&mut self) {
        // Events that joined are allowed as they drop.
        self.queue.finish(self.inode);
    }
}

fn worker(q: &ScanQueue, sh: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(Batch { inode, waiters }) =
            q.next(Duration::from_millis(100), |w| current_key(&w.pending.fd))
        else {
            continue;
        };
        let scanning = Scanning { queue: q, inode };
        let outcome = answer_batch(sh, waiters, None);
        let joined = q.finish(inode);
        std::mem::forget(scanning);
        if !joined.is_empty() {
            answer_batch(sh, joined, outcome);
        }
    }
}

fn current_key(fd: &OwnedFd) -> Option<FileKey> {
    as_file(fd).metadata().ok().map(|m| file_key(&m))
}

/// The verdict one scan gave, for every event that waited on it.
#[derive(Clone)]
enum Outcome {
    Allow,
    Threat(String),
}

/// Answers the events of one scan of one file: scans (or recalls) it once, for the first
/// event not excluded, unless `known` already says what it holds. Returns the verdict.
fn answer_batch(sh: &Shared, waiters: Vec<Waiter>, known: Option<Outcome>) -> Option<Outcome> {
    let mut rest = Vec::with_capacity(waiters.len());
    for w in waiters {
        let path = fd_path(&w.pending.fd);
        if excluded(sh, &path, w.pid) {
            w.pending.answer(true);
        } else {
            rest.push((w, path));
        }
    }
    let mut rest = rest.into_iter();
    let outcome = match known {
        Some(o) => o,
        None => {
            let (first, path) = rest.next()?;
            let o = match examine(sh, &first.pending.fd) {
                Finding::Allow => Outcome::Allow,
                Finding::Known(name) => Outcome::Threat(name),
                Finding::New(threat, scanned, version) => {
                    let name = threat.name.clone();
                    report(sh, &first, &path, threat, scanned, version);
                    Outcome::Threat(name)
                }
            };
            answer_known(sh, &first, &o);
            o
        }
    };
    for (w, _) in rest {
        answer_known(sh, &w, &outcome);
    }
    Some(outcome)
}

/// Answers with a verdict already reached (a no-op when the event was answered already).
fn answer_known(sh: &Shared, w: &Waiter, o: &Outcome) {
    let allow = match o {
        Outcome::Allow => true,
        Outcome::Threat(name) => !sh.handler.refuses(name, w.access, w.pid.max(0) as u32),
    };
    w.pending
        .answer_counted(allow, (!allow).then_some(&sh.stats.denied));
}

/// Acts on a threat just found by `w`'s access; the handler answers the kernel before it
/// records what the kernel was told.
fn report(
    sh: &Shared,
    w: &Waiter,
    path: &Path,
    threat: Threat,
    scanned: ScannedFile,
    version: String,
) {
    let found = Found {
        path,
        file: &as_file(&w.pending.fd),
        scanned,
        threat,
        access: w.access,
        pid: w.pid.max(0) as u32,
        definitions_version: version,
    };
    sh.handler.handle(found, |allow| {
        w.pending
            .answer_counted(allow, (!allow).then_some(&sh.stats.denied))
    });
}

fn write_worker(written: &DirtySet, sh: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match written.next(Duration::from_millis(100)) {
            Some(Dirty::File(j)) => scan_written(sh, &j.fd, j.pid),
            Some(Dirty::Directory(dir)) => rescan_directory(sh, &dir, stop),
            None => {}
        }
    }
}

/// The after-write scan of one file; `pid` wrote it (0: not known).
fn scan_written(sh: &Shared, fd: &OwnedFd, pid: i32) {
    let path = fd_path(fd);
    if excluded(sh, &path, pid) {
        return;
    }
    if let Finding::New(threat, scanned, version) = examine(sh, fd) {
        let found = Found {
            path: &path,
            file: &as_file(fd),
            scanned,
            threat,
            access: Access::Write,
            pid: pid.max(0) as u32,
            definitions_version: version,
        };
        // Not a permission event: nothing to answer.
        sh.handler.handle(found, |_| false);
    }
}

/// Catches up on files written in `dir` whose own scans could not be kept: scans each
/// regular file in it (not below), writer unknown.
fn rescan_directory(sh: &Shared, dir: &Path, stop: &AtomicBool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        log::debug!("rescan of {}: cannot list it", dir.display());
        return;
    };
    for e in entries.flatten() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // O_NOFOLLOW: a symlink swapped in is not followed; O_NONBLOCK: nor does a FIFO
        // swapped in hang the scanner.
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(e.path())
        else {
            continue;
        };
        let fd = OwnedFd::from(file);
        if matches!(triage(sh, &fd), Triage::Scan(..)) {
            scan_written(sh, &fd, 0);
        }
    }
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// An excluded path or process: allowed without a scan, and counted.
fn excluded(sh: &Shared, path: &Path, pid: i32) -> bool {
    let exclusions = sh.handler.exclusions.get();
    let out =
        excludes_path(&exclusions, &path.to_string_lossy()) || process_excluded(&exclusions, pid);
    if out {
        bump(&sh.stats.excluded);
    }
    out
}

fn file_key(m: &std::fs::Metadata) -> FileKey {
    FileKey {
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        size: m.size(),
    }
}

/// What the cache or one scan says about a file.
enum Finding {
    /// Nothing to report: clean, not a regular file, too large, unreadable. Allowed.
    Allow,
    /// A threat met before, reported then.
    Known(String),
    /// A threat found by this scan, to be reported: with the bytes scanned and the
    /// definitions version.
    New(Threat, ScannedFile, String),
}

/// Scans (or recalls) the file behind `fd`. Every failure allows.
fn examine(sh: &Shared, fd: &OwnedFd) -> Finding {
    let st = &sh.stats;
    let file = as_file(fd);
    let Ok(meta) = file.metadata() else {
        bump(&st.error_allowed);
        return Finding::Allow;
    };
    if !meta.is_file() {
        return Finding::Allow;
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
                Finding::Allow
            }
            // Reported once, when it was found; blocking decides again per access, in case
            // the allow list changed.
            Some(name) => Finding::Known(name),
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
            Finding::Allow
        }
        Verdict::TooLarge => {
            bump(&st.too_large);
            Finding::Allow
        }
        Verdict::Error(e) => {
            log::debug!("scan of {} failed: {e}", fd_path(fd).display());
            bump(&st.error_allowed);
            Finding::Allow
        }
        Verdict::Threat(threat, scanned) => {
            bump(&st.threats);
            remember(sh, id, key, &defs.version, Some(threat.name.clone()));
            Finding::New(threat, scanned, defs.version.clone())
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
