//! Decoder for `sensor-ebpf/src/process.rs` (exec and exit; fork carries only the header)
//! and for `sensor-ebpf/src/lsm.rs` (execs denied by BPF LSM).

use sensor_common::{
    DENIED_DROPPED, DENIED_UNLINKED, EXEC_ARGS_TRUNCATED, EXEC_DROPPED, EXEC_ENV_TRUNCATED,
    EXEC_KILLED, ExecDeniedEvent, ExecEvent, ExecImage, ExitEvent,
};

use super::paths::{self, KernelPath};
use super::{DecodeError, read_record, text};
use crate::proto;

/// Fills `event.exec` and returns argv.
pub fn exec(bytes: &[u8], event: &mut proto::Event) -> Result<Vec<String>, DecodeError> {
    let e: ExecEvent = read_record(bytes)?;
    let len = (e.args_len as usize).min(e.args.len());
    let args = split_args(&e.args[..len]);
    let env_len = (e.env_len as usize).min(e.env.len());
    let truncated = e.flags & EXEC_ENV_TRUNCATED != 0;
    let mut loader_env = loader_vars(&e.env[..env_len]);
    if truncated && loader_env.is_empty() {
        // The variable may sit past the captured start: ask /proc while the process lives.
        if let Ok(full) = std::fs::read(format!("/proc/{}/environ", e.header.tgid)) {
            loader_env = loader_vars(&full);
        }
    }
    let cwd = KernelPath::decode(&e.cwd, e.cwd_len);
    let mut info = image(&e.image);
    if !info.filename.starts_with('/') && cwd.resolved {
        // `./a.out` means the file in the directory the exec ran in (argv keeps the name
        // as given).
        info.filename = paths::join(&cwd.path, &info.filename);
    }
    event.exec = Some(proto::ExecInfo {
        args_truncated: e.flags & EXEC_ARGS_TRUNCATED != 0,
        killed: e.flags & EXEC_KILLED != 0,
        dropped: e.flags & EXEC_DROPPED != 0,
        loader_env,
        env_truncated: truncated,
        cwd: cwd.path,
        ..info
    });
    Ok(args)
}

/// Fills `event.exec` of a `process_exec_denied`: the file the caller was refused.
pub fn exec_denied(bytes: &[u8], event: &mut proto::Event) -> Result<(), DecodeError> {
    let e: ExecDeniedEvent = read_record(bytes)?;
    event.exec = Some(proto::ExecInfo {
        denied: match e.reason {
            DENIED_UNLINKED => "no name on disk (memfd or deleted file)",
            DENIED_DROPPED => "dropped in a world-writable directory",
            _ => "unknown reason",
        }
        .into(),
        dropped: e.reason == DENIED_DROPPED,
        ..image(&e.image)
    });
    Ok(())
}

fn image(i: &ExecImage) -> proto::ExecInfo {
    let path = KernelPath::decode(&i.path, i.path_len);
    proto::ExecInfo {
        filename: text(&i.filename, i.filename_len),
        inode: i.ino,
        dev: i.dev,
        nlink: i.nlink,
        name: text(&i.name, i.name_len),
        path: path.path,
        path_resolved: path.resolved,
        deleted: i.nlink == 0,
        ..Default::default()
    }
}

/// Variables that change what the dynamic loader loads.
const LOADER_VARS: [&str; 3] = ["LD_PRELOAD=", "LD_AUDIT=", "LD_LIBRARY_PATH="];

fn loader_vars(env: &[u8]) -> Vec<String> {
    split_args(env)
        .into_iter()
        .filter(|v| LOADER_VARS.iter().any(|p| v.starts_with(p)))
        .collect()
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
    let e: ExitEvent = read_record(bytes)?;
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

    #[test]
    fn loader_variables() {
        let env = b"LD_PRELOAD=/tmp/x.so\0HOME=/root\0LD_LIBRARY_PATH=/opt\0XLD_PRELOAD=no\0";
        assert_eq!(
            loader_vars(env),
            vec!["LD_PRELOAD=/tmp/x.so", "LD_LIBRARY_PATH=/opt"]
        );
    }
}
