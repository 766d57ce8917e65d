//! The blocking scope: which processes blocking mode may stop.
//!
//! `--blocking-scope-pid` limits blocking to one process and its descendants (a staged
//! roll-out); everywhere else the sensor acts as in passive mode. Detections, real-time
//! protection and scans all ask this one type, so the promise in `--help` holds for all of
//! them. The scope's root is never pid 0: the kernel programs read 0 as "no scope", so a
//! scope of 0 would mean everything there and nothing here.

use std::num::NonZeroU32;

/// How many parents are followed before giving up: a guard against a chain that never
/// reaches pid 0 (it cannot on Linux, but /proc is read, not trusted).
const MAX_DEPTH: usize = 4096;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockingScope {
    root: Option<NonZeroU32>,
}

#[derive(Debug)]
pub struct ZeroScope;

impl std::fmt::Display for ZeroScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the blocking scope must be a process id from 1 up, not 0")
    }
}

impl std::error::Error for ZeroScope {}

impl BlockingScope {
    /// No scope: blocking applies to every process.
    pub fn everywhere() -> Self {
        Self { root: None }
    }

    /// The scope of `--blocking-scope-pid`; 0 is refused.
    pub fn new(root: Option<u32>) -> Result<Self, ZeroScope> {
        match root {
            None => Ok(Self::everywhere()),
            Some(pid) => Ok(Self {
                root: Some(NonZeroU32::new(pid).ok_or(ZeroScope)?),
            }),
        }
    }

    /// The scope's root process, if blocking is limited.
    pub fn root(&self) -> Option<u32> {
        self.root.map(NonZeroU32::get)
    }

    pub fn is_everywhere(&self) -> bool {
        self.root.is_none()
    }

    /// Whether blocking applies to `pid`: no scope is set, or `pid` is the root or descends
    /// from it (parents read from /proc now). A process that is gone, or pid 0 (no known
    /// process, e.g. a file found by a scan), is outside a set scope.
    pub fn covers(&self, pid: u32) -> bool {
        let Some(root) = self.root() else {
            return true;
        };
        let mut pid = pid;
        for _ in 0..MAX_DEPTH {
            if pid == root {
                return true;
            }
            match parent_of(pid) {
                Some(ppid) if ppid != 0 => pid = ppid,
                _ => return false,
            }
        }
        false
    }

    /// `covers` for a process whose ancestry was recorded when its event was made: a
    /// process that has exited since is still judged by the parents it had.
    pub fn covers_lineage(&self, pid: u32, ancestors: impl IntoIterator<Item = u32>) -> bool {
        match self.root() {
            None => true,
            Some(root) => {
                pid == root || ancestors.into_iter().any(|a| a == root) || self.covers(pid)
            }
        }
    }

    /// For health: what the scope is.
    pub fn describe(&self) -> String {
        match self.root() {
            Some(pid) => format!(" (only pid {pid} and its descendants)"),
            None => String::new(),
        }
    }
}

/// The parent pid in /proc/PID/stat: the field after the state, which follows the last
/// ')' (the command name may hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ppid(&stat)
}

fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_refused_and_none_covers_everything() {
        assert!(BlockingScope::new(Some(0)).is_err());
        let all = BlockingScope::new(None).unwrap();
        assert!(all.covers(0) && all.covers(1) && all.covers(u32::MAX));
    }

    #[test]
    fn parent_is_read_past_a_hostile_command_name() {
        assert_eq!(parse_ppid("42 (a) b (c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("42 (x"), None);
        assert_eq!(parse_ppid(""), None);
    }

    #[test]
    fn descendants_are_covered_and_others_not() {
        let me = std::process::id();
        let mine = BlockingScope::new(Some(me)).unwrap();
        assert!(mine.covers(me));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(mine.covers(child.id()));
        let parent = parent_of(me).unwrap();
        assert!(!mine.covers(parent));
        assert!(!mine.covers(0));
        let theirs = BlockingScope::new(Some(child.id())).unwrap();
        assert!(!theirs.covers(me));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!theirs.covers(u32::MAX));
        assert!(mine.covers_lineage(u32::MAX, [123, me]));
    }
}
