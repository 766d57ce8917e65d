//! Decoder for `sensor-ebpf/src/file.rs`.

use sensor_common::{EventHeader, FileEvent, syscalls};

use super::{DecodeError, read_record, text};
use crate::{paths, proto};

pub fn decode(
    bytes: &[u8],
    event: &mut proto::Event,
    open_files: &mut paths::OpenFiles,
) -> Result<(), DecodeError> {
    let e: FileEvent = read_record(bytes, header_kind(bytes))?;
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
    });
    Ok(())
}

fn header_kind(bytes: &[u8]) -> u32 {
    read_record::<EventHeader>(bytes, 0)
        .map(|h| h.kind)
        .unwrap_or(0)
}
