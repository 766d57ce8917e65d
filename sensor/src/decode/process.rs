//! Decoder for `sensor-ebpf/src/process.rs`: exec and exit (fork carries only the header).

use sensor_common::{EXEC_ARGS_TRUNCATED, EXEC_KILLED, ExecEvent, ExitEvent};

use super::{DecodeError, read_record, text};
use crate::proto;

/// Fills `event.exec` and returns argv.
pub fn exec(bytes: &[u8], event: &mut proto::Event) -> Result<Vec<String>, DecodeError> {
    let e: ExecEvent = read_record(bytes, e_kind())?;
    let len = (e.args_len as usize).min(e.args.len());
    let args = split_args(&e.args[..len]);
    event.exec = Some(proto::ExecInfo {
        filename: text(&e.filename, e.filename_len),
        inode: e.exe_ino,
        dev: e.exe_dev,
        nlink: e.exe_nlink,
        args_truncated: e.flags & EXEC_ARGS_TRUNCATED != 0,
        name: text(&e.name, e.name_len),
        killed: e.flags & EXEC_KILLED != 0,
    });
    Ok(args)
}

fn e_kind() -> u32 {
    sensor_common::EventKind::ProcessExec as u32
}

/// argv as the kernel laid it out: NUL-separated, the last one possibly cut short.
pub fn split_args(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

pub fn exit(bytes: &[u8], event: &mut proto::Event) -> Result<(), DecodeError> {
    let e: ExitEvent = read_record(bytes, sensor_common::EventKind::ProcessExit as u32)?;
    event.exit = Some(proto::ExitInfo {
        exit_code: ((e.exit_code >> 8) & 0xff) as i32,
        signal: (e.exit_code & 0x7f) as i32,
        core_dumped: e.exit_code & 0x80 != 0,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_split() {
        assert_eq!(split_args(b"a\0b c\0"), vec!["a", "b c"]);
        assert_eq!(split_args(b"a\0trunc"), vec!["a", "trunc"]);
        assert!(split_args(b"").is_empty());
        assert_eq!(split_args(b"a\0\0b\0"), vec!["a", "", "b"]);
    }
}
