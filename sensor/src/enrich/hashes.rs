//! Executable hashes: SHA-256 computed off the pipeline thread and cached by file
//! identity, so hashing never delays an event.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
};

use sha2::{Digest, Sha256};

/// (st_dev, ino, mtime_ns, size)
pub(crate) type FileIdentity = (u64, u64, i64, u64);

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

    pub fn contains(&self, id: &FileIdentity) -> bool {
        self.done.lock().unwrap().contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.done.lock().unwrap().len()
    }

    pub(crate) fn request(&self, id: FileIdentity, path: &str, tgid: u32) {
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

pub(crate) fn file_identity(path: &str, tgid: u32, ino: u64) -> Option<FileIdentity> {
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

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
