//! Decoder for `sensor-ebpf/src/file.rs`.

use sensor_common::{
    COMPONENT_LEN, EventKind, FILE_PATH_COMPONENTS, FileEvent, MAX_COMPONENTS, syscalls,
};

use super::paths;
use super::{DecodeError, read_record, text};
use crate::proto;

pub fn decode(
    bytes: &[u8],
    event: &mut proto::Event,
    open_files: &mut paths::OpenFiles,
) -> Result<(), DecodeError> {
    let e: FileEvent = read_record(bytes)?;
    let tgid = e.header.tgid;
    let mut resolved = true;
    let mut path = text(&e.path, e.path_len);
    if path.is_empty() && e.fd >= 0 {
        // fd-based calls (fchmod, fchown, ftruncate) name no path.
        match open_files.path(tgid, e.fd, e.ino) {
            Some(p) => path = p,
            None => resolved = false,
        }
    } else {
        let (p, ok) = paths::absolute(tgid, e.dirfd, &path);
        path = p;
        resolved &= ok;
    }
    if e.path2_len & FILE_PATH_COMPONENTS != 0 {
        // A sensitive read: the kernel sent the dentry chain instead of the caller's string.
        let (p, ok) = match open_files.path(tgid, e.fd, e.ino) {
            Some(p) => (p, true),
            None => from_components(&e.path2, e.path2_len & !FILE_PATH_COMPONENTS),
        };
        event.file = Some(proto::FileInfo {
            path: p,
            inode: e.ino,
            uid: e.uid,
            gid: e.gid,
            syscall: syscalls::name(e.syscall as u64).to_string(),
            path_resolved: ok,
            ..Default::default()
        });
        return Ok(());
    }
    let mut new_path = text(&e.path2, e.path2_len);
    if !new_path.is_empty() {
        let (p, ok) = paths::absolute(tgid, e.dirfd2, &new_path);
        new_path = p;
        resolved &= ok;
    }
    if matches!(
        e.syscall as u64,
        syscalls::OPEN | syscalls::OPENAT | syscalls::OPENAT2 | syscalls::CREAT
    ) {
        open_files.opened(tgid, e.ret as i32, e.ino, &path);
    }
    event.file = Some(proto::FileInfo {
        path,
        new_path,
        mode: e.mode & 0o7777,
        flags: e.flags,
        uid: e.uid,
        gid: e.gid,
        inode: e.ino,
        syscall: syscalls::name(e.syscall as u64).to_string(),
        path_resolved: resolved,
        explicit_times: e.header.kind == EventKind::FileTimes as u32 && e.flags != 0,
    });
    Ok(())
}

/// Path from leaf-first dentry names. A chain that ends at a file system's root is absolute
/// if that root is "/" (true for the root file system; a separately mounted /home also
/// names its root "/", which is why /proc is asked first).
fn from_components(buf: &[u8], count: u32) -> (String, bool) {
    let names: Vec<String> = buf
        .chunks(COMPONENT_LEN)
        .take((count as usize).min(MAX_COMPONENTS))
        .map(|c| text(c, COMPONENT_LEN as u32))
        .take_while(|n| !n.is_empty())
        .collect();
    let complete = names.last().is_some_and(|n| n == "/");
    let parts: Vec<&str> = names
        .iter()
        .rev()
        .filter(|n| *n != "/")
        .map(String::as_str)
        .collect();
    (format!("/{}", parts.join("/")), complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_to_path() {
        let mut buf = [0u8; sensor_common::PATH_LEN];
        for (i, n) in ["shadow", "etc", "/"].iter().enumerate() {
            buf[i * COMPONENT_LEN..i * COMPONENT_LEN + n.len()].copy_from_slice(n.as_bytes());
        }
        assert_eq!(from_components(&buf, 3), ("/etc/shadow".to_string(), true));
        assert_eq!(from_components(&buf, 2), ("/etc/shadow".to_string(), false));
        assert!(from_components(&buf, 99).1);
    }
}
