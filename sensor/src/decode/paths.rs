//! Paths as the kernel programs built them (`sensor_common::PATH_BUF`): the name the caller
//! passed, if any, and the names of the directory chain from the leaf up, turned into one
//! absolute path. Nothing here asks `/proc`: the process may be gone by now, and the
//! kernel already knew where it was.

use sensor_common::{PATH_BYTES, PATH_COMPLETE, PATH_NAMED, PATH_TRUNCATED, PATH_UNREACHABLE};

/// A path from the kernel.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelPath {
    pub path: String,
    /// Whole and absolute: the walk reached the process's root (or the caller gave an
    /// absolute name).
    pub resolved: bool,
    /// A bound (length, depth) cut the walk short: counted for health.
    pub truncated: bool,
    /// The name the caller passed, when the call took one.
    pub given: Option<String>,
}

impl KernelPath {
    /// Decodes `buf` as described by its path word.
    pub fn decode(buf: &[u8], word: u32) -> Self {
        let used = ((word & PATH_BYTES) as usize).min(buf.len());
        let mut strings = buf[..used]
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s));
        let given = if word & PATH_NAMED != 0 {
            strings.next()
        } else {
            None
        };
        let truncated = word & PATH_TRUNCATED != 0;
        if let Some(g) = &given
            && g.starts_with('/')
        {
            return Self {
                path: join("/", g),
                resolved: !truncated,
                truncated,
                given: Some(g.to_string()),
            };
        }
        let mut names: Vec<_> = strings.filter(|s| !s.is_empty()).collect();
        if word & PATH_UNREACHABLE != 0 && given.is_none() {
            // memfd, pipe, a detached mount: its own name is all there is.
            return Self {
                path: names.first().map(|n| n.to_string()).unwrap_or_default(),
                resolved: true,
                truncated,
                given: None,
            };
        }
        names.reverse();
        let dir = format!("/{}", names.join("/"));
        let path = match &given {
            Some(g) => join(&dir, g),
            None => dir,
        };
        Self {
            path,
            resolved: word & PATH_COMPLETE != 0 && !truncated,
            truncated,
            given: given.map(|g| g.into_owned()),
        }
    }
}

/// Joins and normalises `.` and `..` lexically (the kernel resolved the real thing).
pub fn join(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if rel.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|s| !s.is_empty()).collect()
    };
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

    fn buf(strings: &[&str]) -> (Vec<u8>, u32) {
        let mut b = Vec::new();
        for s in strings {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        let n = b.len() as u32;
        b.resize(64, 0xaa);
        (b, n)
    }

    #[test]
    fn joins_relative_paths() {
        assert_eq!(join("/tmp/a", "b/c"), "/tmp/a/b/c");
        assert_eq!(join("/tmp/a", "../b"), "/tmp/b");
        assert_eq!(join("/", "./x"), "/x");
        assert_eq!(join("/tmp", "/etc/./passwd"), "/etc/passwd");
    }

    #[test]
    fn chains_become_paths() {
        let (b, n) = buf(&["a.out", "x", "tmp"]);
        let p = KernelPath::decode(&b, n | PATH_COMPLETE);
        assert_eq!((p.path.as_str(), p.resolved), ("/tmp/x/a.out", true));

        // A relative name and the chain of its directory.
        let (b, n) = buf(&["../y/./f", "x", "tmp"]);
        let p = KernelPath::decode(&b, n | PATH_NAMED | PATH_COMPLETE);
        assert_eq!((p.path.as_str(), p.resolved), ("/tmp/y/f", true));

        // An absolute name is taken as given.
        let (b, n) = buf(&["/etc//passwd"]);
        let p = KernelPath::decode(&b, n | PATH_NAMED | PATH_COMPLETE);
        assert_eq!(p.path, "/etc/passwd");

        // The root itself: no names.
        let p = KernelPath::decode(&[], PATH_COMPLETE);
        assert_eq!((p.path.as_str(), p.resolved), ("/", true));

        // Cut short by a bound: marked, never passed off as whole.
        let (b, n) = buf(&["f", "deep"]);
        let p = KernelPath::decode(&b, n | PATH_TRUNCATED);
        assert!(!p.resolved && p.truncated);

        // memfd: its name alone.
        let (b, n) = buf(&["memfd:x"]);
        let p = KernelPath::decode(&b, n | PATH_UNREACHABLE);
        assert_eq!(p.path, "memfd:x");

        // A length past the buffer is clamped, not trusted.
        let (b, _) = buf(&["a", "b"]);
        let p = KernelPath::decode(&b, 0xffff | PATH_COMPLETE);
        assert!(p.path.starts_with("/"));
    }
}
