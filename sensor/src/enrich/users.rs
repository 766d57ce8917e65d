//! User names for uids, from /etc/passwd, reread when the file changes.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

/// uid -> name from /etc/passwd, reread when the file changes.
#[derive(Default)]
pub(crate) struct UserNames {
    names: HashMap<u32, String>,
    mtime: Option<SystemTime>,
    checked: Option<Instant>,
    /// Counts rereads: a name given out before a reread may have changed.
    generation: u64,
}

impl UserNames {
    pub(crate) fn name(&mut self, uid: u32) -> String {
        self.refresh();
        self.names.get(&uid).cloned().unwrap_or_default()
    }

    /// Rereads /etc/passwd if it changed (looked at every two seconds at most); returns
    /// the generation of the names now in use.
    pub(crate) fn refresh(&mut self) -> u64 {
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
                self.generation += 1;
                self.names = std::fs::read_to_string("/etc/passwd")
                    .map(|s| parse_passwd(&s))
                    .unwrap_or_default();
            }
        }
        self.generation
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_parsing() {
        let m =
            parse_passwd("root:x:0:0:root:/root:/bin/bash\nbad line\nnobody:x:65534:65534::/:/x\n");
        assert_eq!(m.get(&0).unwrap(), "root");
        assert_eq!(m.get(&65534).unwrap(), "nobody");
    }
}
