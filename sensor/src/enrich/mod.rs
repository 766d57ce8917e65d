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
use process_table::{ProcessKey, ProcessTable};
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

    fn process_info(&mut self, key: &ProcessKey, h: &crate::decode::Header) -> proto::Process {
        let mut p = proto::Process {
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
        if let Some(e) = self.table.get(key) {
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
        p
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
