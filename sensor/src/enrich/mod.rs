//! Enrichment: turning a decoded record into an event an analyst can read.
//!
//! Keeps the process table current (fork, exec, exit) and attaches to every event its
//! process: executable, command line, user name, parent, ancestor chain, container id and
//! the executable's SHA-256. Hashing never runs here: it is queued to a background thread
//! and cached by file identity (device, inode, mtime, size), so the first event of a new
//! binary may carry no hash and the following ones do.

mod hashes;
pub mod process_table;
mod users;

use std::{collections::HashMap, sync::atomic::Ordering, time::Instant};

use sensor_common::EventKind;

pub use hashes::HashCache;
use hashes::file_identity;
use process_table::{ProcessKey, ProcessTable, View};
use users::UserNames;

use crate::{decode::Decoded, proto};

pub struct Enricher {
    pub table: ProcessTable,
    users: UserNames,
    containers: HashMap<u64, String>,
    hashes: HashCache,
    boot_offset_ns: u64,
}

impl Enricher {
    pub fn new(table: ProcessTable, hashes: HashCache) -> Self {
        Self {
            table,
            users: UserNames::default(),
            containers: HashMap::new(),
            hashes,
            boot_offset_ns: wall_clock_offset(),
        }
    }

    pub fn hash_cache_len(&self) -> usize {
        self.hashes.len()
    }

    pub fn hashes_computed(&self) -> u64 {
        self.hashes.computed.load(Ordering::Relaxed)
    }

    pub fn enrich(&mut self, d: Decoded) -> proto::Event {
        let Decoded {
            header: h,
            mut event,
            args,
            ..
        } = d;
        let now = Instant::now();
        let key = match h.kind {
            Some(EventKind::ProcessFork) => self.table.on_fork(&h),
            Some(EventKind::ProcessExec) => {
                let exec = event.exec.as_ref();
                let ino = exec.map(|e| e.inode).unwrap_or_default();
                let exe = exec.map(exe_path).unwrap_or_default();
                let identity = file_identity(&exe, h.tgid, ino);
                let key = self.table.on_exec(&h, exe.clone(), args);
                self.table.set_exe_identity(&key, identity);
                if let Some(id) = identity {
                    self.hashes.request(id, &exe, h.tgid);
                }
                key
            }
            Some(EventKind::ProcessExit) => self.table.on_exit(&h, now),
            _ => self.table.observe(&h),
        };
        self.table.evict_exited(now);
        event.time_unix_ns = event.timestamp_ns + self.boot_offset_ns;
        event.process = Some(self.process_info(&key, &h));
        event
    }

    /// The process as the table knows it (with ancestry), for detections made outside the
    /// kernel pipeline.
    pub fn process_of(&mut self, pid: u32, start_ns: u64) -> Option<proto::Process> {
        let key = ProcessKey::new(pid, start_ns);
        let e = self.table.get(&key)?;
        let h = crate::decode::Header {
            tgid: pid,
            tid: pid,
            ppid: e.ppid,
            start_ns: e.start_ns,
            comm: e.comm.clone(),
            uid: e.uid,
            gid: e.gid,
            euid: e.euid,
            egid: e.egid,
            cgroup_id: e.cgroup_id,
            ..Default::default()
        };
        Some(self.process_info(&key, &h))
    }

    /// The event's process. The events of a process share one view while nothing in it
    /// changed: the same thread, command, credentials and cgroup in the header, the same
    /// image (and a hash, once known), the same ancestry and user names. Anything else
    /// builds a new view, which the following events then share.
    fn process_info(&mut self, key: &ProcessKey, h: &crate::decode::Header) -> proto::Process {
        let users = self.users.refresh();
        if let Some(p) = self.current_view(key, h, users) {
            return p;
        }
        let view = self.build_view(key, h, users);
        let p = view.process.clone();
        self.table.set_view(key, view);
        p
    }

    fn current_view(
        &self,
        key: &ProcessKey,
        h: &crate::decode::Header,
        users: u64,
    ) -> Option<proto::Process> {
        let e = self.table.get(key)?;
        let v = e.view.as_ref()?;
        let p = &v.process;
        let same_header = p.pid == h.tgid
            && p.tid == h.tid
            && p.ppid == h.ppid
            && p.start_time == h.start_ns
            && (p.uid, p.gid, p.euid, p.egid) == (h.uid, h.gid, h.euid, h.egid)
            && p.cgroup_id == h.cgroup_id
            && p.comm == h.comm;
        let hash_arrived =
            p.exe_sha256.is_empty() && e.exe_identity.is_some_and(|id| self.hashes.contains(&id));
        let current = same_header
            && v.generation == e.generation
            && v.users == users
            && !hash_arrived
            && self.table.same_ancestry(key, &v.chain);
        current.then(|| p.clone())
    }

    /// A new view of the process, with what it is built from; the ancestry is walked once
    /// for both.
    fn build_view(&mut self, key: &ProcessKey, h: &crate::decode::Header, users: u64) -> View {
        let mut p = proto::ProcessData {
            pid: h.tgid,
            tid: h.tid,
            ppid: h.ppid,
            start_time: h.start_ns,
            comm: h.comm.clone(),
            uid: h.uid,
            gid: h.gid,
            euid: h.euid,
            egid: h.egid,
            user: self.users.name(h.uid),
            cgroup_id: h.cgroup_id,
            container_id: self.container_id(h.cgroup_id, h.tgid),
            ..Default::default()
        };
        let mut generation = 0;
        if let Some(e) = self.table.get(key) {
            generation = e.generation;
            p.exe.clone_from(&e.exe);
            p.args.clone_from(&e.args);
            if let Some(id) = e.exe_identity {
                p.exe_sha256 = self.hashes.get(&id).unwrap_or_default();
            }
        }
        let ancestors = self.table.ancestors(key);
        if let Some((_, parent)) = ancestors.first() {
            p.parent_exe.clone_from(&parent.exe);
            p.parent_args.clone_from(&parent.args);
        }
        p.ancestors = ancestors
            .iter()
            .map(|(k, e)| proto::Ancestor {
                pid: k.tgid,
                start_time: e.start_ns,
                exe: e.exe.clone(),
            })
            .collect();
        View {
            process: p.into(),
            generation,
            chain: ancestors.iter().map(|(k, e)| (*k, e.generation)).collect(),
            users,
        }
    }

    fn container_id(&mut self, cgroup_id: u64, tgid: u32) -> String {
        if let Some(c) = self.containers.get(&cgroup_id) {
            return c.clone();
        }
        let Ok(cg) = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")) else {
            return String::new();
        };
        let id = container_id_from_cgroup(&cg).unwrap_or_default();
        if self.containers.len() > 4096 {
            self.containers.clear();
        }
        self.containers.insert(cgroup_id, id.clone());
        id
    }
}

/// Nanoseconds to add to CLOCK_BOOTTIME (the kernel's event clock) to get Unix time:
/// event timestamps here, and the kernel's own drop decision, which compares inode change
/// times (wall clock) with its boot clock.
pub(crate) fn wall_clock_offset() -> u64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: plain syscall on a local struct.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    now(libc::CLOCK_REALTIME).saturating_sub(now(libc::CLOCK_BOOTTIME))
}

/// The executable's path: the kernel's, from the image itself; execve's argument (made
/// absolute against the working directory) only if the kernel's walk failed.
fn exe_path(exec: &proto::ExecInfo) -> String {
    if exec.path.is_empty() {
        exec.filename.clone()
    } else {
        exec.path.clone()
    }
}

/// A 64-hex-digit container id from a `/proc/PID/cgroup` text (docker, containerd,
/// cri-o, podman naming).
pub fn container_id_from_cgroup(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let path = line.rsplit(':').next().unwrap_or(line);
        for part in path.split('/').rev() {
            let part = part.trim_end_matches(".scope");
            let candidate = part.rsplit(['-', ':']).next().unwrap_or(part);
            if candidate.len() == 64 && candidate.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(candidate.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::decode::Header;

    /// Pids far above any this machine runs, so `/proc` knows none of them.
    const PARENT: u32 = 4_000_001;
    const CHILD: u32 = 4_000_002;

    fn enricher() -> Enricher {
        let table = ProcessTable::new(1024, 1024, Duration::from_secs(60));
        Enricher::new(table, HashCache::start())
    }

    fn header(kind: EventKind, tgid: u32, start_ns: u64, ppid: u32) -> Header {
        Header {
            kind: Some(kind),
            tgid,
            tid: tgid,
            start_ns,
            ppid,
            parent_start_ns: if ppid == CHILD { 0 } else { 1_000_000_000 },
            comm: "t".into(),
            ..Default::default()
        }
    }

    fn record(header: Header) -> Decoded {
        Decoded {
            header,
            event: proto::Event::default(),
            args: Vec::new(),
            paths_truncated: 0,
        }
    }

    fn exec(header: Header, exe: &str) -> Decoded {
        let mut d = record(header);
        d.event.exec = Some(proto::ExecInfo {
            filename: exe.into(),
            path: exe.into(),
            ..Default::default()
        });
        d.args = vec![exe.into(), "-x".into()];
        d
    }

    /// The process of the next event of `header`'s process.
    fn process(en: &mut Enricher, header: Header) -> proto::Process {
        en.enrich(record(header)).process.unwrap()
    }

    #[test]
    fn events_of_a_process_share_its_view_until_something_in_it_changes() {
        let mut en = enricher();
        let parent = |kind| header(kind, PARENT, 1_000_000_000, 1);
        let child = |kind| header(kind, CHILD, 2_000_000_000, PARENT);
        en.enrich(exec(parent(EventKind::ProcessExec), "/nonexistent/sh"));
        en.enrich(record(child(EventKind::ProcessFork)));
        en.enrich(exec(child(EventKind::ProcessExec), "/nonexistent/child"));

        let first = process(&mut en, child(EventKind::FileCreate));
        let second = process(&mut en, child(EventKind::FileUnlink));
        assert!(second.shares(&first), "nothing changed: one copy");
        assert_eq!(first.exe, "/nonexistent/child");
        assert_eq!(first.args, ["/nonexistent/child", "-x"]);
        assert_eq!(first.parent_exe, "/nonexistent/sh");
        assert_eq!(first.ancestors[0].pid, PARENT);

        // The parent runs a new image: the child's ancestry shows it from its next event.
        en.enrich(exec(parent(EventKind::ProcessExec), "/nonexistent/other"));
        let third = process(&mut en, child(EventKind::FileCreate));
        assert!(!third.shares(&second));
        assert_eq!(third.parent_exe, "/nonexistent/other");
        assert_eq!(third.ancestors[0].exe, "/nonexistent/other");
        assert_eq!(
            second.parent_exe, "/nonexistent/sh",
            "earlier events keep theirs"
        );

        // Credentials, thread and command come from each event's header.
        let mut h = child(EventKind::FileCreate);
        h.euid = 1000;
        let fourth = process(&mut en, h.clone());
        assert_eq!(fourth.euid, 1000);
        h.tid = CHILD + 1;
        h.comm = "renamed".into();
        let fifth = process(&mut en, h.clone());
        assert_eq!((fifth.tid, fifth.comm.as_str()), (CHILD + 1, "renamed"));
        assert!(process(&mut en, h).shares(&fifth));

        // The child's own exec replaces its image in the view.
        en.enrich(exec(child(EventKind::ProcessExec), "/nonexistent/next"));
        let sixth = process(&mut en, child(EventKind::FileCreate));
        assert_eq!(sixth.exe, "/nonexistent/next");
    }

    #[test]
    fn container_ids_from_common_runtimes() {
        let id = "a".repeat(64);
        for cg in [
            format!("0::/system.slice/docker-{id}.scope"),
            format!("0::/kubepods/besteffort/pod1/{id}"),
            format!("0::/kubepods.slice/cri-containerd-{id}.scope"),
            format!("12:memory:/docker/{id}"),
        ] {
            assert_eq!(
                container_id_from_cgroup(&cg).as_deref(),
                Some(id.as_str()),
                "{cg}"
            );
        }
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/session-1.scope"),
            None
        );
    }
}
