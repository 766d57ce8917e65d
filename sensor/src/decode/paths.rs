//! Making the paths syscalls receive absolute.
//!
//! The kernel programs copy the string the caller passed; a relative one is resolved here
//! against the caller's working directory or directory fd, read from `/proc` while the
//! process still exists. A process that already exited leaves the path as given, marked
//! unresolved, rather than guessed.

use std::num::NonZeroUsize;

use lru::LruCache;

const AT_FDCWD: i32 = -100;

/// Paths of descriptors opened for writing, learnt from open events, so calls that name
/// only a descriptor (ftruncate, fchmod, fchown) get a path even when the descriptor is
/// closed by the time `/proc` is asked. Entries are checked against the inode the kernel
/// reports, so a reused descriptor number never lends its old path.
pub struct OpenFiles {
    map: LruCache<(u32, i32), (u64, String)>,
    /// The same paths by inode: a descriptor moved with dup2 (`touch` reopens its file on
    /// fd 0) still finds its path.
    by_inode: LruCache<(u32, u64), String>,
}

impl Default for OpenFiles {
    fn default() -> Self {
        let cap = NonZeroUsize::new(16384).unwrap();
        Self {
            map: LruCache::new(cap),
            by_inode: LruCache::new(cap),
        }
    }
}

impl OpenFiles {
    pub fn opened(&mut self, tgid: u32, fd: i32, ino: u64, path: &str) {
        if fd >= 0 && ino != 0 && path.starts_with('/') {
            self.map.put((tgid, fd), (ino, path.to_string()));
            self.by_inode.put((tgid, ino), path.to_string());
        }
    }

    /// Path of `fd` of `tgid` if it still names inode `ino`.
    pub fn path(&mut self, tgid: u32, fd: i32, ino: u64) -> Option<String> {
        // The descriptor may already be closed and its number reused: trust /proc only if
        // it still names the inode the kernel reported.
        let same = |p: &String| {
            use std::os::unix::fs::MetadataExt;
            ino == 0
                || std::fs::metadata(format!("/proc/{tgid}/fd/{fd}")).is_ok_and(|m| m.ino() == ino)
                || std::fs::metadata(p).is_ok_and(|m| m.ino() == ino)
        };
        if let Some(p) = of_fd(tgid, fd).filter(same) {
            return Some(p);
        }
        match self.map.get(&(tgid, fd)) {
            Some((i, p)) if *i == ino && ino != 0 => Some(p.clone()),
            _ => self.by_inode.get(&(tgid, ino)).cloned(),
        }
    }
}

/// `(path, resolved)`: absolute paths pass through unchanged.
pub fn absolute(tgid: u32, dirfd: i32, path: &str) -> (String, bool) {
    if path.starts_with('/') || path.is_empty() {
        return (path.to_string(), true);
    }
    let base = if dirfd == AT_FDCWD {
        std::fs::read_link(format!("/proc/{tgid}/cwd")).ok()
    } else {
        std::fs::read_link(format!("/proc/{tgid}/fd/{dirfd}")).ok()
    };
    match base {
        Some(b) => (join(&b.to_string_lossy(), path), true),
        None => (path.to_string(), false),
    }
}

/// Path of an open descriptor of `tgid`.
pub fn of_fd(tgid: u32, fd: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{tgid}/fd/{fd}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Joins and normalises `.` and `..` lexically (the kernel resolved the real thing).
pub fn join(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_relative_paths() {
        assert_eq!(join("/tmp/a", "b/c"), "/tmp/a/b/c");
        assert_eq!(join("/tmp/a", "../b"), "/tmp/b");
        assert_eq!(join("/", "./x"), "/x");
        assert_eq!(
            absolute(1, AT_FDCWD, "/etc/passwd"),
            ("/etc/passwd".into(), true)
        );
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute(me, AT_FDCWD, "x").0,
            join(&cwd.to_string_lossy(), "x")
        );
        assert!(!absolute(u32::MAX, AT_FDCWD, "x").1);
    }
}
