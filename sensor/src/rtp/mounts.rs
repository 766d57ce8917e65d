//! Which mounts real-time protection marks.
//!
//! By default every mount of a local filesystem kind that holds files people run or open
//! (the kinds Defender for Endpoint lists, minus network and FUSE filesystems, whose
//! servers could be stuck behind our own permission events). An include list replaces
//! the default; each entry must be a mount point, because marking a plain directory would
//! silently mark the whole filesystem under it.

use std::path::PathBuf;

use anyhow::{Result, bail};

pub const LOCAL_KINDS: &[&str] = &[
    "btrfs", "ext2", "ext3", "ext4", "xfs", "tmpfs", "ramfs", "overlay", "vfat", "exfat", "jfs",
    "reiserfs", "udf", "f2fs", "zfs",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
}

/// Mounts from a mountinfo text (`/proc/self/mountinfo`), with octal escapes decoded.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split(' ').nth(4)?;
            let fstype = post.split(' ').next()?;
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points to mark, from this process's mount table.
pub fn current(include: &[PathBuf], exclude: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let all = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?);
    select(&all, include, exclude)
}

/// The mount points to mark.
pub fn select(all: &[Mount], include: &[PathBuf], exclude: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    if include.is_empty() {
        for m in all {
            // /proc and /sys hold kernel interfaces even where a tmpfs is mounted (the
            // cgroup v1 root); /dev is devtmpfs, but /dev/shm, a classic drop place, is
            // tmpfs and marked.
            let kernel_tree = m.point.starts_with("/proc") || m.point.starts_with("/sys");
            if LOCAL_KINDS.contains(&m.fstype.as_str()) && !kernel_tree && !out.contains(&m.point) {
                out.push(m.point.clone());
            }
        }
    } else {
        for p in include {
            let p = match p.canonicalize() {
                Ok(p) => p,
                Err(e) => bail!("{}: {e}", p.display()),
            };
            if !all.iter().any(|m| m.point == p) {
                bail!("{} is not a mount point", p.display());
            }
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out.retain(|p| !exclude.iter().any(|x| x == p));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /proc rw - proc proc rw
24 22 0:6 / /dev rw - devtmpfs udev rw
25 24 0:7 / /dev/shm rw - tmpfs tmpfs rw
26 22 0:8 / /run rw - tmpfs tmpfs rw
27 22 0:9 / /mnt/with\\040space rw - xfs /dev/sdb rw
28 22 0:10 / /mnt/nfs rw - nfs4 srv:/x rw
30 22 0:12 / /sys/fs/cgroup ro - tmpfs tmpfs ro
29 22 0:11 / /home/u/fuse rw - fuse.sshfs x rw
";

    #[test]
    fn default_is_local_filesystems() {
        let all = parse_mountinfo(INFO);
        assert_eq!(all[5].point, PathBuf::from("/mnt/with space"));
        let sel = select(&all, &[], &[PathBuf::from("/run")]).unwrap();
        assert_eq!(
            sel,
            vec![
                PathBuf::from("/"),
                PathBuf::from("/dev/shm"),
                PathBuf::from("/mnt/with space")
            ]
        );
    }

    #[test]
    fn include_entries_must_be_mount_points() {
        let all = parse_mountinfo(INFO);
        let sel = select(&all, &[PathBuf::from("/run")], &[]).unwrap();
        assert_eq!(sel, vec![PathBuf::from("/run")]);
        assert!(select(&all, &[PathBuf::from("/run/sub")], &[]).is_err());
    }
}
