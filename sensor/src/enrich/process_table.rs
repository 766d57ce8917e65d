//! The process table: who every event's process is, and where it came from.
//!
//! Keyed by `(tgid, start time)` as Tetragon and Kunai key processes, so a reused pid never
//! inherits another process's history. Start times are compared in clock ticks (1/100 s),
//! the precision `/proc/PID/stat` offers, so processes seeded from `/proc` at start-up and
//! those seen by the kernel programs share one key space.
//!
//! Memory is bounded twice: exited processes are kept only briefly (late events of a
//! process, and its children's ancestry, still find them), and the whole table is an LRU
//! with a hard capacity.

use std::{
    collections::VecDeque,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;

use crate::decode::Header;

/// Nanoseconds per `/proc` clock tick (USER_HZ is 100 on every Linux ABI).
const NS_PER_TICK: u64 = 10_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub tgid: u32,
    pub start_ticks: u64,
}

impl ProcessKey {
    pub fn new(tgid: u32, start_ns: u64) -> Self {
        Self {
            tgid,
            start_ticks: start_ns / NS_PER_TICK,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ProcessEntry {
    pub pid: u32,
    pub start_ns: u64,
    pub ppid: u32,
    pub parent: Option<ProcessKey>,
    pub exe: String,
    pub args: Vec<String>,
    pub comm: String,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub cgroup_id: u64,
    /// Identity of the executable for the hash cache: (st_dev, ino, mtime_ns, size).
    pub exe_identity: Option<(u64, u64, i64, u64)>,
    pub exited: bool,
    /// Changes whenever the image (exe, args, identity) does: what a view built from this
    /// entry, or from a descendant of it, checks to know it is still current.
    pub generation: u64,
    /// The process as its last event carried it, shared with the next events while
    /// nothing in it changed (see `Enricher::process_info`).
    pub view: Option<View>,
}

/// A process view kept for reuse, and what it was built from.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub process: crate::proto::Process,
    /// The entry's generation when built.
    pub generation: u64,
    /// The ancestry it shows, with each ancestor's generation then.
    pub chain: Vec<(ProcessKey, u64)>,
    /// The user-name table's generation when built.
    pub users: u64,
}

/// What `/proc` says of a process, for events raised outside the pipeline (real-time
/// protection's), which have no table entry to enrich them from.
impl From<ProcessEntry> for crate::proto::Process {
    fn from(e: ProcessEntry) -> Self {
        crate::proto::ProcessData {
            pid: e.pid,
            ppid: e.ppid,
            start_time: e.start_ns,
            exe: e.exe,
            args: e.args,
            comm: e.comm,
            uid: e.uid,
            gid: e.gid,
            euid: e.euid,
            egid: e.egid,
            ..Default::default()
        }
        .into()
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TableStats {
    pub size: u64,
    pub capacity: u64,
    pub seeded: u64,
    pub evicted_exited: u64,
    pub evicted_lru: u64,
    pub exited_retained: u64,
}

pub struct ProcessTable {
    map: LruCache<ProcessKey, ProcessEntry>,
    exited: VecDeque<(ProcessKey, Instant)>,
    exited_limit: usize,
    exited_grace: Duration,
    stats: TableStats,
    generations: u64,
}

/// How far ancestry is followed; deeper chains are cut (and cycles cannot loop).
pub const MAX_ANCESTORS: usize = 16;

impl ProcessTable {
    /// `capacity`: hard bound on entries. Exited processes stay for `exited_grace` or until
    /// `exited_limit` of them are waiting, whichever comes first.
    pub fn new(capacity: usize, exited_limit: usize, exited_grace: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(16)).unwrap();
        Self {
            map: LruCache::new(cap),
            exited: VecDeque::new(),
            exited_limit,
            exited_grace,
            stats: TableStats {
                capacity: cap.get() as u64,
                ..Default::default()
            },
            generations: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            size: self.map.len() as u64,
            exited_retained: self.exited.len() as u64,
            ..self.stats
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    fn insert(&mut self, key: ProcessKey, mut entry: ProcessEntry) {
        entry.generation = self.next_generation();
        if let Some((old_key, _)) = self.map.push(key, entry)
            && old_key != key
        {
            self.stats.evicted_lru += 1;
        }
    }

    /// Loads every process that exists now, so that processes older than the sensor have
    /// parents and command lines.
    pub fn seed_from_proc(&mut self) -> usize {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let mut seeded = Vec::new();
        for ent in dir.flatten() {
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(e) = read_proc(pid) {
                seeded.push(e);
            }
        }
        // Parent keys need the parents' start times: resolve them once all are read.
        let starts: std::collections::HashMap<u32, u64> =
            seeded.iter().map(|e| (e.pid, e.start_ns)).collect();
        let n = seeded.len();
        for mut e in seeded {
            e.parent = starts.get(&e.ppid).map(|&s| ProcessKey::new(e.ppid, s));
            let key = ProcessKey::new(e.pid, e.start_ns);
            if self.map.peek(&key).is_none() {
                self.insert(key, e);
            }
        }
        self.stats.seeded += n as u64;
        n
    }

    fn parent_key(h: &Header) -> Option<ProcessKey> {
        (h.ppid != 0).then(|| ProcessKey::new(h.ppid, h.parent_start_ns))
    }

    /// The entry for the header's process, created from the header (and `/proc`, while the
    /// process exists) if the table does not know it.
    pub fn observe(&mut self, h: &Header) -> ProcessKey {
        let key = ProcessKey::new(h.tgid, h.start_ns);
        if let Some(e) = self.map.get_mut(&key) {
            // Credentials change (setuid); the header is the freshest view.
            set_credentials(e, h);
            return key;
        }
        let mut e = read_proc(h.tgid)
            .filter(|p| ProcessKey::new(p.pid, p.start_ns) == key)
            .unwrap_or_default();
        e.pid = h.tgid;
        e.start_ns = h.start_ns;
        self.fill_from_header(&mut e, h);
        self.insert(key, e);
        key
    }

    fn fill_from_header(&self, e: &mut ProcessEntry, h: &Header) {
        e.ppid = h.ppid;
        e.parent = Self::parent_key(h);
        set_credentials(e, h);
        e.cgroup_id = h.cgroup_id;
    }

    /// A new process: it runs its parent's image until it execs.
    pub fn on_fork(&mut self, h: &Header) -> ProcessKey {
        let key = ProcessKey::new(h.tgid, h.start_ns);
        let mut e = Self::parent_key(h)
            .and_then(|p| self.map.peek(&p))
            .map(|p| ProcessEntry {
                exe: p.exe.clone(),
                args: p.args.clone(),
                exe_identity: p.exe_identity,
                ..Default::default()
            })
            .unwrap_or_default();
        e.pid = h.tgid;
        e.start_ns = h.start_ns;
        self.fill_from_header(&mut e, h);
        self.insert(key, e);
        key
    }

    pub fn on_exec(&mut self, h: &Header, exe: String, args: Vec<String>) -> ProcessKey {
        let key = self.observe(h);
        let generation = self.next_generation();
        if let Some(e) = self.map.get_mut(&key) {
            e.generation = generation;
            e.exe = exe;
            e.args = args;
            e.exe_identity = None;
            e.cgroup_id = h.cgroup_id;
        }
        key
    }

    pub fn set_exe_identity(&mut self, key: &ProcessKey, id: Option<(u64, u64, i64, u64)>) {
        let generation = self.next_generation();
        if let Some(e) = self.map.peek_mut(key) {
            e.exe_identity = id;
            e.generation = generation;
        }
    }

    /// Keeps `view` as the process's current one.
    pub fn set_view(&mut self, key: &ProcessKey, view: View) {
        if let Some(e) = self.map.peek_mut(key) {
            e.view = Some(view);
        }
    }

    /// Marks the process exited; it is evicted once the grace period or the retention
    /// limit passes.
    pub fn on_exit(&mut self, h: &Header, now: Instant) -> ProcessKey {
        let key = self.observe(h);
        if let Some(e) = self.map.peek_mut(&key)
            && !e.exited
        {
            e.exited = true;
            self.exited.push_back((key, now));
        }
        self.evict_exited(now);
        key
    }

    /// Drops exited processes past their grace period or beyond the retention limit.
    pub fn evict_exited(&mut self, now: Instant) {
        while let Some(&(key, at)) = self.exited.front() {
            if self.exited.len() <= self.exited_limit && now.duration_since(at) < self.exited_grace
            {
                break;
            }
            self.exited.pop_front();
            if self.map.peek(&key).is_some_and(|e| e.exited) {
                self.map.pop(&key);
                self.stats.evicted_exited += 1;
            }
        }
    }

    pub fn get(&self, key: &ProcessKey) -> Option<&ProcessEntry> {
        self.map.peek(key)
    }

    /// Live children of `key` (a scan: used only when acting on a detection).
    pub fn children(&self, key: &ProcessKey) -> Vec<(ProcessKey, &ProcessEntry)> {
        self.map
            .iter()
            .filter(|(_, e)| e.parent == Some(*key) && !e.exited)
            .map(|(k, e)| (*k, e))
            .collect()
    }

    /// Parent first, up to [`MAX_ANCESTORS`] known ancestors.
    pub fn ancestors(&self, key: &ProcessKey) -> Vec<(ProcessKey, &ProcessEntry)> {
        self.ancestry(key).collect()
    }

    /// Whether the ancestry of `key` is still the one in `chain`, generation for
    /// generation. Walks the table without allocating: it runs for every event.
    pub fn same_ancestry(&self, key: &ProcessKey, chain: &[(ProcessKey, u64)]) -> bool {
        let mut walked = 0;
        for (k, e) in self.ancestry(key) {
            if chain.get(walked) != Some(&(k, e.generation)) {
                return false;
            }
            walked += 1;
        }
        walked == chain.len()
    }

    fn ancestry<'a>(
        &'a self,
        key: &ProcessKey,
    ) -> impl Iterator<Item = (ProcessKey, &'a ProcessEntry)> + 'a {
        let start = *key;
        let mut cur = self.map.peek(key).and_then(|e| e.parent);
        let mut walked = 0;
        std::iter::from_fn(move || {
            let k = cur.take()?;
            if walked >= MAX_ANCESTORS || k == start {
                return None;
            }
            let e = self.map.peek(&k)?;
            walked += 1;
            cur = e.parent;
            Some((k, e))
        })
    }
}

/// Ids and `comm` as the kernel reported them with the event.
fn set_credentials(e: &mut ProcessEntry, h: &Header) {
    e.uid = h.uid;
    e.gid = h.gid;
    e.euid = h.euid;
    e.egid = h.egid;
    e.comm.clone_from(&h.comm);
}

/// A process as `/proc` describes it, or `None` if it vanished or is unreadable.
pub fn read_proc(pid: u32) -> Option<ProcessEntry> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: it ends at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // Fields after comm start at field 3 (state): ppid is field 4, starttime field 22.
    let ppid = fields.get(1)?.parse().ok()?;
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| crate::decode::split_args(&raw))
        .unwrap_or_default();
    let mut e = ProcessEntry {
        pid,
        start_ns: start_ticks * NS_PER_TICK,
        ppid,
        exe,
        args,
        comm,
        ..Default::default()
    };
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let ids = |l: &str| -> Vec<u32> {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect()
            };
            if line.starts_with("Uid:") {
                let v = ids(line);
                (e.uid, e.euid) = (
                    v.first().copied().unwrap_or(0),
                    v.get(1).copied().unwrap_or(0),
                );
            } else if line.starts_with("Gid:") {
                let v = ids(line);
                (e.gid, e.egid) = (
                    v.first().copied().unwrap_or(0),
                    v.get(1).copied().unwrap_or(0),
                );
            }
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tgid: u32, start_ns: u64, ppid: u32, parent_start_ns: u64) -> Header {
        Header {
            tgid,
            tid: tgid,
            start_ns,
            ppid,
            parent_start_ns,
            comm: "t".into(),
            ..Default::default()
        }
    }

    const S: u64 = NS_PER_TICK;

    #[test]
    fn fork_inherits_image_and_exec_replaces_it() {
        let mut t = ProcessTable::new(100, 10, Duration::from_secs(5));
        let parent = header(10, 5 * S, 1, S);
        let k = t.on_exec(&parent, "/bin/bash".into(), vec!["bash".into()]);
        let child = header(11, 6 * S, 10, 5 * S);
        let ck = t.on_fork(&child);
        assert_eq!(t.get(&ck).unwrap().exe, "/bin/bash");
        t.on_exec(&child, "/bin/ls".into(), vec!["ls".into(), "-l".into()]);
        assert_eq!(t.get(&ck).unwrap().args, vec!["ls", "-l"]);
        let anc = t.ancestors(&ck);
        assert_eq!(anc[0].0, k);
        assert_eq!(anc[0].1.exe, "/bin/bash");
    }

    #[test]
    fn pid_reuse_is_a_different_process() {
        let mut t = ProcessTable::new(100, 10, Duration::from_secs(5));
        let a = t.on_exec(&header(20, 5 * S, 1, S), "/a".into(), vec![]);
        let b = t.on_exec(&header(20, 9 * S, 1, S), "/b".into(), vec![]);
        assert_ne!(a, b);
        assert_eq!(t.get(&a).unwrap().exe, "/a");
        assert_eq!(t.get(&b).unwrap().exe, "/b");
    }

    #[test]
    fn exited_processes_are_evicted_and_size_is_bounded() {
        let mut t = ProcessTable::new(1000, 50, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..20_000u32 {
            let h = header(1000 + i, (i as u64 + 1) * S, 1, S);
            t.on_fork(&h);
            t.on_exit(&h, now);
            assert!(t.len() <= 51, "table grew to {}", t.len());
        }
        let s = t.stats();
        assert_eq!(s.evicted_exited, 20_000 - 50);
        // Past the grace period everything exited goes.
        t.evict_exited(now + Duration::from_secs(61));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn capacity_is_a_hard_bound_with_lru_eviction() {
        let mut t = ProcessTable::new(100, 10, Duration::from_secs(5));
        for i in 0..500u32 {
            t.on_fork(&header(5000 + i, (i as u64 + 1) * S, 1, S));
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.stats().evicted_lru, 400);
    }

    #[test]
    fn seeds_from_proc_with_parents() {
        let mut t = ProcessTable::new(100_000, 10, Duration::from_secs(5));
        assert!(t.seed_from_proc() > 1);
        let me = read_proc(std::process::id()).unwrap();
        let key = ProcessKey::new(me.pid, me.start_ns);
        let e = t.get(&key).expect("this process is seeded");
        assert!(
            e.exe.ends_with(
                std::env::current_exe()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
            )
        );
        assert!(
            !t.ancestors(&key).is_empty(),
            "this process has a parent in the table"
        );
    }

    #[test]
    fn cycles_in_parent_links_terminate() {
        let mut t = ProcessTable::new(100, 10, Duration::from_secs(5));
        let a = t.on_fork(&header(1, S, 2, 2 * S));
        t.on_fork(&header(2, 2 * S, 1, S));
        assert!(t.ancestors(&a).len() <= MAX_ANCESTORS);
    }
}
