//! Enrichment: turning a decoded record into an event an analyst can read.
//!
//! Keeps the process table current (fork, exec, exit) and attaches to every event its
//! process: executable, command line, user name, parent, ancestor chain, container id and
//! the executable's SHA-256. Hashing never runs here: it is queued to a background thread
//! and cached by file identity (device, inode, mtime, size), so the first event of a new
//! binary may carry no hash and the following ones do.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
    time::{Duration, Instant, SystemTime},
};

use sensor_common::EventKind;
use sha2::{Digest, Sha256};

use crate::{
    decode::Decoded,
    process_table::{ProcessKey, ProcessTable},
    proto,
};

/// (st_dev, ino, mtime_ns, size)
type FileIdentity = (u64, u64, i64, u64);

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
            boot_offset_ns: boot_offset_ns(),
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
        } = d;
        let now = Instant::now();
        let key = match h.kind {
            Some(EventKind::ProcessFork) => self.table.on_fork(&h),
            Some(EventKind::ProcessExec) => {
                let exec = event.exec.as_ref();
                let filename = exec.map(|e| e.filename.as_str()).unwrap_or_default();
                let ino = exec.map(|e| e.inode).unwrap_or_default();
                let exe = exe_path(h.tgid, filename, ino);
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

/// Nanoseconds to add to CLOCK_BOOTTIME to get Unix time.
fn boot_offset_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let boot = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (wall.as_nanos() as u64).saturating_sub(boot)
}

/// The executable's absolute path: execve's argument when it already is one, else what
/// `/proc/PID/exe` says while it still names the same inode.
fn exe_path(tgid: u32, filename: &str, ino: u64) -> String {
    let direct = filename.starts_with('/')
        && !filename.starts_with("/dev/fd/")
        && !filename.starts_with("/proc/");
    if direct {
        return filename.to_string();
    }
    let link = format!("/proc/{tgid}/exe");
    match (std::fs::read_link(&link), std::fs::metadata(&link)) {
        (Ok(p), Ok(m)) if m.ino() == ino => p.to_string_lossy().into_owned(),
        _ => crate::paths::absolute(tgid, -100, filename).0,
    }
}

fn file_identity(path: &str, tgid: u32, ino: u64) -> Option<FileIdentity> {
    let m = std::fs::metadata(path)
        .ok()
        .filter(|m| m.ino() == ino)
        .or_else(|| std::fs::metadata(format!("/proc/{tgid}/exe")).ok())?;
    Some((
        m.dev(),
        m.ino(),
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.size(),
    ))
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

/// uid -> name from /etc/passwd, reread when the file changes.
#[derive(Default)]
struct UserNames {
    names: HashMap<u32, String>,
    mtime: Option<SystemTime>,
    checked: Option<Instant>,
}

impl UserNames {
    fn name(&mut self, uid: u32) -> String {
        let stale = self
            .checked
            .is_none_or(|t| t.elapsed() > Duration::from_secs(2));
        if stale {
            self.checked = Some(Instant::now());
            let mtime = std::fs::metadata("/etc/passwd")
                .and_then(|m| m.modified())
                .ok();
            if mtime != self.mtime {
                self.mtime = mtime;
                self.names = std::fs::read_to_string("/etc/passwd")
                    .map(|s| parse_passwd(&s))
                    .unwrap_or_default();
            }
        }
        self.names.get(&uid).cloned().unwrap_or_default()
    }
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// SHA-256 of executables, computed by a background thread and cached by identity.
#[derive(Clone)]
pub struct HashCache {
    done: Arc<Mutex<HashMap<FileIdentity, String>>>,
    pending: Arc<Mutex<HashSet<FileIdentity>>>,
    queue: SyncSender<(FileIdentity, String)>,
    pub computed: Arc<AtomicU64>,
}

/// Files above this size are not hashed (their events carry no hash).
const MAX_HASH_BYTES: u64 = 256 * 1024 * 1024;
const MAX_CACHED: usize = 65536;

impl HashCache {
    pub fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(FileIdentity, String)>(1024);
        let cache = Self {
            done: Arc::default(),
            pending: Arc::default(),
            queue: tx,
            computed: Arc::default(),
        };
        let worker = cache.clone();
        std::thread::Builder::new()
            .name("exe-hash".into())
            .spawn(move || {
                for (id, path) in rx {
                    let digest = if id.3 <= MAX_HASH_BYTES {
                        sha256_file(&path, id)
                    } else {
                        None
                    };
                    worker.pending.lock().unwrap().remove(&id);
                    if let Some(d) = digest {
                        let mut done = worker.done.lock().unwrap();
                        if done.len() >= MAX_CACHED {
                            done.clear();
                        }
                        done.insert(id, d);
                        worker.computed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .expect("spawning the hash thread");
        cache
    }

    pub fn get(&self, id: &FileIdentity) -> Option<String> {
        self.done.lock().unwrap().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.done.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn request(&self, id: FileIdentity, path: &str, tgid: u32) {
        if self.done.lock().unwrap().contains_key(&id) || !self.pending.lock().unwrap().insert(id) {
            return;
        }
        // The path may be gone (deleted, memfd): the process's own link still opens it.
        let path = if std::fs::metadata(path).is_ok_and(|m| m.ino() == id.1) {
            path.to_string()
        } else {
            format!("/proc/{tgid}/exe")
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send((id, path))
        {
            self.pending.lock().unwrap().remove(&id);
        }
    }
}

fn sha256_file(path: &str, id: FileIdentity) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let m = f.metadata().ok()?;
    if m.ino() != id.1 || m.size() != id.3 {
        return None;
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
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

    #[test]
    fn passwd_parsing() {
        let m =
            parse_passwd("root:x:0:0:root:/root:/bin/bash\nbad line\nnobody:x:65534:65534::/:/x\n");
        assert_eq!(m.get(&0).unwrap(), "root");
        assert_eq!(m.get(&65534).unwrap(), "nobody");
    }

    #[test]
    fn hashes_files_in_background() {
        let cache = HashCache::start();
        let path = std::env::temp_dir().join(format!("sensor-hash-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let m = std::fs::metadata(&path).unwrap();
        let id = (
            m.dev(),
            m.ino(),
            m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            m.size(),
        );
        cache.request(id, path.to_str().unwrap(), std::process::id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.get(&id).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            cache.get(&id).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
