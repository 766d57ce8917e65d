//! Decoder for `sensor-ebpf/src/file.rs`.

use sensor_common::{EventKind, FileEvent, syscalls};

use super::paths::{self, KernelPath};
use super::{DecodeError, read_prefix};
use crate::proto;

/// Fills `event.file`; returns how many of its paths a kernel bound cut short.
pub fn decode(bytes: &[u8], event: &mut proto::Event) -> Result<u32, DecodeError> {
    let e: FileEvent = read_prefix(bytes, FileEvent::FIXED_LEN)?;
    let used = FileEvent::used_len(e.path_len, e.path2_len);
    if bytes.len() < used {
        // Its path words claim bytes the record does not have.
        return Err(DecodeError::Truncated {
            kind: e.header.kind,
            len: bytes.len(),
            need: used,
        });
    }
    // The first path is exactly the bytes before the second one starts.
    let (first, second) = e.paths.split_at(FileEvent::second_at(e.path_len));
    let mut path = KernelPath::decode(first, e.path_len);
    let new_path = (e.path2_len != 0).then(|| KernelPath::decode(second, e.path2_len));
    if matches!(e.syscall as u64, syscalls::SYMLINK | syscalls::SYMLINKAT)
        && let (Some(target), Some(link)) = (&path.given, &new_path)
    {
        // A symlink's relative target is relative to the link's directory, not the caller's.
        path.path = paths::join(&paths::join(&link.path, ".."), target);
    }
    let truncated =
        u32::from(path.truncated) + u32::from(new_path.as_ref().is_some_and(|p| p.truncated));
    let resolved = path.resolved && new_path.as_ref().is_none_or(|p| p.resolved);
    let kind = e.header.kind;
    let read = kind == EventKind::FileRead as u32;
    event.file = Some(proto::FileInfo {
        path: path.path,
        new_path: new_path.map(|p| p.path).unwrap_or_default(),
        mode: if read { 0 } else { e.mode & 0o7777 },
        flags: if read { 0 } else { e.flags },
        uid: e.uid,
        gid: e.gid,
        inode: e.ino,
        syscall: syscalls::name(e.syscall as u64).to_string(),
        path_resolved: resolved,
        explicit_times: kind == EventKind::FileTimes as u32 && e.flags != 0,
    });
    Ok(truncated)
}
