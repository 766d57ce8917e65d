//! The queue between the fanotify reader and the scan workers, built so that no local user
//! can push someone else's verdicts past the deadline.
//!
//! - Users are served in turn (queues per uid, round-robin), so one uid flooding opens or
//!   execs delays its own events, not root's: another user's event waits for at most one
//!   scan per busy user and worker. Each uid also has its own bound, past which only its
//!   own events are allowed unscanned.
//! - In a user's turn, its execs go ahead of its opens: a program about to run is what
//!   blocking is most for. (Execs of all users ahead of all opens would let one user's
//!   execs starve everyone's opens.)
//! - One file is scanned by one worker at a time. An event for a file whose scan is
//!   running on the same content (dev, inode, mtime, ctime, size) waits for that verdict;
//!   an event for a file that already has a scan queued joins it (that scan has not read
//!   the file yet, so it sees content at least as new as the event's). Rewriting a file
//!   in a loop therefore costs at most one queued and one running scan, however many
//!   processes open it.
//!
//! The queue only orders and groups events; answering them stays with the workers (and,
//! past the deadline, with the deadline keeper).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use super::{FileKey, Pending};
use crate::threats::Access;

/// A file, as the kernel knows it: (device, inode).
pub type InodeId = (u64, u64);

/// A permission event waiting for a verdict.
pub struct Waiter {
    pub pending: Arc<Pending>,
    pub pid: i32,
    pub access: Access,
}

/// Scans waiting for a worker, all users together. Past this, events are allowed unscanned
/// and counted.
const MAX_JOBS: usize = 4096;
/// Scans one uid may have waiting.
const MAX_JOBS_PER_UID: usize = 1024;

/// What [`ScanQueue::submit`] did with an event.
pub enum Submitted {
    /// A new scan was queued for it.
    Queued,
    /// It waits for a scan of the same file already queued or running.
    Joined,
    /// Its user's share (or the whole queue) is full: the caller allows it, counted.
    Full(Waiter),
}

/// Events to answer from one scan of one file.
pub struct Batch {
    pub inode: InodeId,
    pub waiters: Vec<Waiter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    uid: u32,
    inode: InodeId,
    exec: bool,
}

/// One user's scans waiting: execs first.
#[derive(Default)]
struct UserQueue {
    exec: VecDeque<InodeId>,
    open: VecDeque<InodeId>,
}

/// Users served in turn.
#[derive(Default)]
struct Lanes {
    per_uid: HashMap<u32, UserQueue>,
    turn: VecDeque<u32>,
}

impl Lanes {
    fn push(&mut self, e: Entry) {
        let q = self.per_uid.entry(e.uid).or_default();
        if q.exec.is_empty() && q.open.is_empty() {
            self.turn.push_back(e.uid);
        }
        if e.exec {
            q.exec.push_back(e.inode);
        } else {
            q.open.push_back(e.inode);
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        let uid = self.turn.pop_front()?;
        let q = self.per_uid.get_mut(&uid)?;
        let (inode, exec) = match q.exec.pop_front() {
            Some(i) => (i, true),
            None => (q.open.pop_front()?, false),
        };
        if q.exec.is_empty() && q.open.is_empty() {
            self.per_uid.remove(&uid);
        } else {
            self.turn.push_back(uid);
        }
        Some(Entry { uid, inode, exec })
    }
}

#[derive(Default)]
struct FileScans {
    /// Events for the next scan of this file (not started yet).
    queued: Vec<Waiter>,
    /// The uid charged for the queued scan.
    owner: u32,
    /// The running scan: the file's metadata when it started, and events that joined it.
    running: Option<(Option<FileKey>, Vec<Waiter>)>,
    /// The queued scan's lane entry, held back while a scan of this file runs.
    parked: Option<Entry>,
}

#[derive(Default)]
struct State {
    lanes: Lanes,
    files: HashMap<InodeId, FileScans>,
    jobs: usize,
    jobs_per_uid: HashMap<u32, usize>,
}

#[derive(Default)]
pub struct ScanQueue {
    state: Mutex<State>,
    ready: Condvar,
}

impl ScanQueue {
    /// Queues `w`, an event on file `inode` whose metadata is now `key`, from user `uid`.
    pub fn submit(&self, inode: InodeId, key: FileKey, uid: u32, w: Waiter) -> Submitted {
        let exec = w.access == Access::Exec;
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        if let Some(f) = st.files.get_mut(&inode) {
            if let Some((Some(k), joined)) = &mut f.running
                && *k == key
            {
                joined.push(w);
                return Submitted::Joined;
            }
            // An exec joining a queued open waits with it: at most one turn.
            if !f.queued.is_empty() {
                f.queued.push(w);
                return Submitted::Joined;
            }
        }
        let mine = st.jobs_per_uid.get(&uid).copied().unwrap_or(0);
        if st.jobs >= MAX_JOBS || mine >= MAX_JOBS_PER_UID {
            return Submitted::Full(w);
        }
        st.jobs += 1;
        *st.jobs_per_uid.entry(uid).or_default() += 1;
        let f = st.files.entry(inode).or_default();
        f.queued.push(w);
        f.owner = uid;
        st.lanes.push(Entry { uid, inode, exec });
        self.ready.notify_one();
        Submitted::Queued
    }

    /// The next file to scan with the events waiting for it, users in turn (execs first in
    /// each turn); None after `wait` with nothing to do. `key_of` reads the file's metadata as the scan
    /// starts, for events that arrive while it runs.
    pub fn next(
        &self,
        wait: Duration,
        key_of: impl Fn(&Waiter) -> Option<FileKey>,
    ) -> Option<Batch> {
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(b) = take_next(&mut st, &key_of) {
                return Some(b);
            }
            let (guard, timeout) = self.ready.wait_timeout(st, wait).unwrap();
            st = guard;
            if timeout.timed_out() {
                return take_next(&mut st, &key_of);
            }
        }
    }

    /// Ends the scan of `inode`: returns the events that joined it while it ran, and puts a
    /// scan queued behind it back in line.
    pub fn finish(&self, inode: InodeId) -> Vec<Waiter> {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        let Some(f) = st.files.get_mut(&inode) else {
            return Vec::new();
        };
        let joined = f.running.take().map(|(_, j)| j).unwrap_or_default();
        if let Some(e) = f.parked.take() {
            st.lanes.push(e);
            self.ready.notify_one();
        } else if f.queued.is_empty() {
            st.files.remove(&inode);
        }
        joined
    }
}

fn take_next(st: &mut State, key_of: &impl Fn(&Waiter) -> Option<FileKey>) -> Option<Batch> {
    loop {
        let e = st.lanes.pop()?;
        let Some(f) = st.files.get_mut(&e.inode) else {
            continue;
        };
        if f.queued.is_empty() {
            continue;
        }
        // One scan of a file at a time: the queued one waits for the running one to end.
        if f.running.is_some() {
            f.parked = Some(e);
            continue;
        }
        let waiters = std::mem::take(&mut f.queued);
        f.running = Some((key_of(&waiters[0]), Vec::new()));
        st.jobs -= 1;
        if let Some(n) = st.jobs_per_uid.get_mut(&f.owner) {
            *n -= 1;
            if *n == 0 {
                st.jobs_per_uid.remove(&f.owner);
            }
        }
        return Some(Batch {
            inode: e.inode,
            waiters,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: u32, ino: u64, exec: bool) -> Entry {
        Entry {
            uid,
            inode: (0, ino),
            exec,
        }
    }

    #[test]
    fn users_take_turns_and_each_runs_its_execs_first() {
        let mut l = Lanes::default();
        for i in 0..3 {
            l.push(entry(65534, i, true));
        }
        l.push(entry(65534, 9, false));
        l.push(entry(0, 100, false));
        l.push(entry(0, 101, true));
        let order: Vec<Entry> = std::iter::from_fn(|| l.pop()).collect();
        assert_eq!(
            order,
            vec![
                entry(65534, 0, true),
                entry(0, 101, true),
                entry(65534, 1, true),
                entry(0, 100, false),
                entry(65534, 2, true),
                entry(65534, 9, false),
            ]
        );
    }
}
