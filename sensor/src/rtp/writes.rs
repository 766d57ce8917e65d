//! Files waiting for their after-write scan: a dirty set keyed by file, so a write burst
//! costs one scan per file, never a dropped one.
//!
//! A file written again before its scan keeps one entry (the newest writer's). The set is
//! bounded, since every entry holds the file open; when it is full, entries for files
//! deleted since are given up first (nothing can open them by name any more), and after
//! that the file's directory is remembered instead, to be scanned again once the set has
//! drained. Only when the directories to rescan are too many as well is a written file
//! not scanned, and then it is counted and logged: nothing is lost silently.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    os::fd::{AsRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Condvar, Mutex},
    time::Duration,
};

use super::{as_file, queue::InodeId};

/// Files waiting. Each holds an fd, well under the raised open-file limit, and an fd on a
/// file deleted since keeps its blocks allocated: the bound also caps what the sensor can
/// hold of a small filesystem's space.
const MAX_FILES: usize = 4096;
/// Directories waiting for a rescan.
const MAX_DIRS: usize = 4096;
/// Entries looked at for a deleted file to give up when the set is full.
const EVICT_LOOKS: usize = 256;

/// A file closed after writing, and who wrote it.
pub struct WriteJob {
    pub fd: OwnedFd,
    pub pid: i32,
}

/// Work for the after-write scanner.
pub enum Dirty {
    File(WriteJob),
    /// Files written here could not all be kept: scan the regular files in it.
    Directory(PathBuf),
}

/// What [`DirtySet::note`] did with a written file.
#[derive(Debug, PartialEq, Eq)]
pub enum Noted {
    Added,
    /// Already waiting: one scan covers both writes.
    Coalesced,
    /// The set was full: its directory will be scanned again.
    Deferred,
    /// Not scanned: the set was full and no directory could be remembered either.
    Skipped,
    /// Not scanned: the set was full and the file already deleted.
    Deleted,
}

#[derive(Default)]
struct State {
    files: HashMap<InodeId, WriteJob>,
    order: VecDeque<InodeId>,
    dirs: HashSet<PathBuf>,
    dir_order: VecDeque<PathBuf>,
}

pub struct DirtySet {
    state: Mutex<State>,
    ready: Condvar,
    max_files: usize,
    max_dirs: usize,
}

impl Default for DirtySet {
    fn default() -> Self {
        Self::with_bounds(MAX_FILES, MAX_DIRS)
    }
}

impl DirtySet {
    fn with_bounds(max_files: usize, max_dirs: usize) -> Self {
        Self {
            state: Mutex::default(),
            ready: Condvar::new(),
            max_files,
            max_dirs,
        }
    }

    /// Records that the file `job` holds, `inode`, was written. Also returns how many
    /// waiting files, deleted since they were written, were given up to make room.
    pub fn note(&self, inode: InodeId, job: WriteJob) -> (Noted, u64) {
        let mut st = self.state.lock().unwrap();
        if let Some(slot) = st.files.get_mut(&inode) {
            *slot = job;
            return (Noted::Coalesced, 0);
        }
        let mut gone = 0;
        if st.files.len() >= self.max_files {
            gone = evict_deleted(&mut st);
        }
        let noted = if st.files.len() < self.max_files {
            st.files.insert(inode, job);
            st.order.push_back(inode);
            Noted::Added
        } else if is_deleted(&job) {
            Noted::Deleted
        } else {
            match directory_of(&job.fd) {
                Some(dir) if st.dirs.contains(&dir) => Noted::Deferred,
                Some(dir) if st.dirs.len() < self.max_dirs => {
                    st.dirs.insert(dir.clone());
                    st.dir_order.push_back(dir);
                    Noted::Deferred
                }
                _ => Noted::Skipped,
            }
        };
        drop(st);
        self.ready.notify_one();
        (noted, gone)
    }

    /// The next file to scan, oldest first; once none waits, a directory to scan again.
    pub fn next(&self, wait: Duration) -> Option<Dirty> {
        let mut st = self.state.lock().unwrap();
        if st.order.is_empty() && st.dir_order.is_empty() {
            st = self.ready.wait_timeout(st, wait).unwrap().0;
        }
        if let Some(inode) = st.order.pop_front() {
            return st.files.remove(&inode).map(Dirty::File);
        }
        let dir = st.dir_order.pop_front()?;
        st.dirs.remove(&dir);
        Some(Dirty::Directory(dir))
    }
}

/// Gives up entries for files deleted since they were written, among the oldest few;
/// returns how many.
fn evict_deleted(st: &mut State) -> u64 {
    let deleted: Vec<InodeId> = st
        .order
        .iter()
        .take(EVICT_LOOKS)
        .filter(|i| st.files.get(i).is_some_and(is_deleted))
        .copied()
        .collect();
    if deleted.is_empty() {
        return 0;
    }
    for i in &deleted {
        st.files.remove(i);
    }
    let files = &st.files;
    st.order.retain(|i| files.contains_key(i));
    deleted.len() as u64
}

fn is_deleted(j: &WriteJob) -> bool {
    as_file(&j.fd).metadata().is_ok_and(|m| m.nlink() == 0)
}

/// The directory the file behind `fd` is in now.
fn directory_of(fd: &OwnedFd) -> Option<PathBuf> {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    Some(path.parent()?.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn written(path: &std::path::Path) -> (InodeId, WriteJob) {
        std::fs::write(path, b"x").unwrap();
        let f = std::fs::File::open(path).unwrap();
        let m = f.metadata().unwrap();
        let job = WriteJob {
            fd: OwnedFd::from(f),
            pid: 1,
        };
        ((m.dev(), m.ino()), job)
    }

    #[test]
    fn a_full_set_coalesces_gives_up_deleted_files_then_remembers_directories() {
        let base = std::env::temp_dir().join(format!("sensor-dirty-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let set = DirtySet::with_bounds(2, 1);
        let (i1, j1) = written(&a.join("1"));
        let (_, j1b) = written(&a.join("1"));
        assert_eq!(set.note(i1, j1), (Noted::Added, 0));
        assert_eq!(set.note(i1, j1b), (Noted::Coalesced, 0));
        let (i2, j2) = written(&a.join("2"));
        assert_eq!(set.note(i2, j2), (Noted::Added, 0));
        // Full: a file deleted since makes room; then the directory stands in for files.
        std::fs::remove_file(a.join("1")).unwrap();
        let (i3, j3) = written(&a.join("3"));
        assert_eq!(set.note(i3, j3), (Noted::Added, 1));
        let (i4, j4) = written(&a.join("4"));
        assert_eq!(set.note(i4, j4), (Noted::Deferred, 0));
        let (i5, j5) = written(&a.join("5"));
        assert_eq!(set.note(i5, j5), (Noted::Deferred, 0));
        let (i6, j6) = written(&b.join("6"));
        assert_eq!(set.note(i6, j6), (Noted::Skipped, 0));
        let (i7, j7) = written(&b.join("7"));
        std::fs::remove_file(b.join("7")).unwrap();
        assert_eq!(set.note(i7, j7), (Noted::Deleted, 0));
        // Files first, oldest first, then the directory.
        let order: Vec<String> = std::iter::from_fn(|| set.next(Duration::ZERO))
            .map(|d| match d {
                Dirty::File(j) => {
                    let m = as_file(&j.fd).metadata().unwrap();
                    if (m.dev(), m.ino()) == i2 { "2" } else { "3" }.to_string()
                }
                Dirty::Directory(d) => d.display().to_string(),
            })
            .collect();
        assert_eq!(
            order,
            vec!["2".to_string(), "3".into(), a.display().to_string()]
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
