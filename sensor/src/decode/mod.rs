//! Ring-buffer records to typed events.
//!
//! One decoder per kernel hook family (`process`, `file`, `net`, `security`), each turning
//! the family's `#[repr(C)]` record from `sensor-common` into the kind-specific part of a
//! [`proto::Event`]. Nothing here trusts the kernel's bytes: a record shorter than its
//! layout, of an unknown kind or with a size that disagrees is an error the caller counts
//! and skips.

mod file;
mod net;
pub(crate) mod paths;
pub(crate) mod process;
mod security;

use std::fmt;

use sensor_common::{EventHeader, EventKind, HookFamily, Record};

use crate::proto;

pub use process::split_args;

/// Who acted, as the kernel saw it.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub kind: Option<EventKind>,
    pub tgid: u32,
    pub tid: u32,
    pub start_ns: u64,
    pub ppid: u32,
    pub parent_start_ns: u64,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub cgroup_id: u64,
    pub comm: String,
}

/// A decoded record: the acting process plus the event with its kind-specific part set.
#[derive(Debug)]
pub struct Decoded {
    pub header: Header,
    pub event: proto::Event,
    /// argv of a `process_exec`.
    pub args: Vec<String>,
    /// Paths of this record that a kernel bound cut short (counted for health).
    pub paths_truncated: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated {
        kind: u32,
        len: usize,
        need: usize,
    },
    UnknownKind(u32),
    SizeMismatch {
        kind: u32,
        declared: u32,
        len: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { kind, len, need } => {
                write!(
                    f,
                    "record of kind {kind} has {len} bytes, layout needs {need}"
                )
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::SizeMismatch {
                kind,
                declared,
                len,
            } => {
                write!(
                    f,
                    "record of kind {kind} declares {declared} bytes but has {len}"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Copies the layout `T` out of a record, after checking the length against it. Errors
/// name the kind the record's header declares.
pub(crate) fn read_record<T: Record>(bytes: &[u8]) -> Result<T, DecodeError> {
    let kind = read_header(bytes)?.kind;
    copy_out(bytes, kind)
}

/// Copies out a record sent trimmed (at least `min` bytes, at most the layout): the bytes
/// not sent read as zeros.
pub(crate) fn read_prefix<T: Record>(bytes: &[u8], min: usize) -> Result<T, DecodeError> {
    let kind = read_header(bytes)?.kind;
    let need = size_of::<T>();
    if bytes.len() < min || bytes.len() > need {
        return Err(DecodeError::Truncated {
            kind,
            len: bytes.len(),
            need: if bytes.len() < min { min } else { need },
        });
    }
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: at most size_of::<T>() bytes go into it; the layouts are plain old data, so
    // zeros and any bytes are valid.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().cast::<u8>(), bytes.len());
        Ok(out.assume_init())
    }
}

/// The header every record starts with.
fn read_header(bytes: &[u8]) -> Result<EventHeader, DecodeError> {
    copy_out(bytes, 0)
}

fn copy_out<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Truncated {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; the layouts are plain old data, any bit pattern is valid.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The first `len` bytes of a fixed buffer as text (the kernel's length is clamped).
pub(crate) fn text(buf: &[u8], len: u32) -> String {
    let len = (len as usize).min(buf.len());
    let s = &buf[..len];
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let raw = read_header(bytes)?;
    let kind = EventKind::from_u32(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))?;
    if raw.size as usize != bytes.len() {
        return Err(DecodeError::SizeMismatch {
            kind: raw.kind,
            declared: raw.size,
            len: bytes.len(),
        });
    }
    let header = Header {
        kind: Some(kind),
        tgid: raw.tgid,
        tid: raw.pid,
        start_ns: raw.start_ns,
        ppid: raw.ppid,
        parent_start_ns: raw.parent_start_ns,
        uid: raw.uid,
        gid: raw.gid,
        euid: raw.euid,
        egid: raw.egid,
        cgroup_id: raw.cgroup_id,
        comm: text(&raw.comm, raw.comm.len() as u32),
    };
    let mut event = proto::Event {
        kind: kind.name().to_string(),
        timestamp_ns: raw.ts_ns,
        ..Default::default()
    };
    let mut args = Vec::new();
    let mut paths_truncated = 0;
    match kind.family() {
        HookFamily::Process | HookFamily::ExecDenial => match kind {
            EventKind::ProcessExec => args = process::exec(bytes, &mut event)?,
            EventKind::ProcessExecDenied => process::exec_denied(bytes, &mut event)?,
            EventKind::ProcessExit => process::exit(bytes, &mut event)?,
            _ => {}
        },
        HookFamily::File => paths_truncated = file::decode(bytes, &mut event)?,
        HookFamily::Net => net::socket_call(bytes, &mut event)?,
        HookFamily::Dns => net::dns(bytes, &mut event)?,
        HookFamily::Security => security::decode(kind, bytes, &mut event)?,
    }
    if let Some(x) = &event.exec
        && !x.path_resolved
        && !x.path.is_empty()
    {
        paths_truncated += 1;
    }
    Ok(Decoded {
        header,
        event,
        args,
        paths_truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::{
        ARGS_LEN, DENIED_UNLINKED, ENV_LEN, ExecDeniedEvent, ExecEvent, ExecImage, NAME_LEN,
        PATH_BUF, PATH_COMPLETE, PATH_LEN,
    };

    /// A kernel path buffer holding `names` (leaf first) and its word.
    fn chain(names: &[&str]) -> ([u8; PATH_BUF], u32) {
        let mut b = [0u8; PATH_BUF];
        let mut n = 0;
        for name in names {
            b[n..n + name.len()].copy_from_slice(name.as_bytes());
            n += name.len() + 1;
        }
        (b, n as u32 | PATH_COMPLETE)
    }

    fn image(filename: &str, name: &str) -> ExecImage {
        let mut i = ExecImage {
            ino: 7,
            dev: 1,
            nlink: 1,
            filename_len: filename.len() as u32,
            name_len: name.len() as u32,
            path_len: 0,
            _pad: 0,
            filename: [0; PATH_LEN],
            name: [0; NAME_LEN],
            path: [0; PATH_BUF],
        };
        i.filename[..filename.len()].copy_from_slice(filename.as_bytes());
        i.name[..name.len()].copy_from_slice(name.as_bytes());
        i
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        let p = (v as *const T).cast::<u8>();
        unsafe { std::slice::from_raw_parts(p, size_of::<T>()) }.to_vec()
    }

    fn exec_record(args: &[u8], filename: &str) -> Vec<u8> {
        let mut e = ExecEvent {
            header: EventHeader {
                kind: EventKind::ProcessExec as u32,
                size: size_of::<ExecEvent>() as u32,
                tgid: 42,
                pid: 42,
                ppid: 1,
                ..Default::default()
            },
            image: image(filename, ""),
            args_len: args.len() as u32,
            flags: 0,
            env_len: 0,
            cwd_len: 0,
            cwd: [0; PATH_BUF],
            args: [0; ARGS_LEN],
            env: [0; ENV_LEN],
        };
        e.args[..args.len()].copy_from_slice(args);
        bytes_of(&e)
    }

    #[test]
    fn decodes_a_denied_exec() {
        let mut e = ExecDeniedEvent {
            header: EventHeader {
                kind: EventKind::ProcessExecDenied as u32,
                size: size_of::<ExecDeniedEvent>() as u32,
                tgid: 42,
                ..Default::default()
            },
            image: image("/proc/self/fd/3", "memfd:x"),
            reason: DENIED_UNLINKED,
            _pad: 0,
        };
        e.image.nlink = 0;
        let d = decode(&bytes_of(&e)).unwrap();
        assert_eq!(d.event.kind, "process_exec_denied");
        let x = d.event.exec.unwrap();
        assert_eq!(
            (x.filename.as_str(), x.name.as_str()),
            ("/proc/self/fd/3", "memfd:x")
        );
        assert!(x.denied.contains("memfd") && !x.killed);
        // A reason this build does not know is named as such; lengths are clamped.
        e.reason = 99;
        e.image.filename_len = u32::MAX;
        let x = decode(&bytes_of(&e)).unwrap().event.exec.unwrap();
        assert_eq!(x.denied, "unknown reason");
        assert_eq!(x.filename, "/proc/self/fd/3");
    }

    #[test]
    fn decodes_exec_with_argv() {
        let rec = exec_record(b"/bin/echo\0hello\0world\0", "/bin/echo");
        let d = decode(&rec).unwrap();
        assert_eq!(d.event.kind, "process_exec");
        assert_eq!(d.args, vec!["/bin/echo", "hello", "world"]);
        assert_eq!(d.event.exec.unwrap().filename, "/bin/echo");
        assert_eq!(d.header.tgid, 42);
    }

    #[test]
    fn exec_paths_come_from_the_kernel_chains() {
        let mut rec = exec_record(b"./a.out\0", "./a.out");
        let mut e: ExecEvent = read_record(&rec).unwrap();
        (e.image.path, e.image.path_len) = chain(&["a.out", "x", "tmp"]);
        (e.cwd, e.cwd_len) = chain(&["x", "tmp"]);
        rec = bytes_of(&e);
        let x = decode(&rec).unwrap().event.exec.unwrap();
        assert_eq!(x.path, "/tmp/x/a.out");
        assert!(x.path_resolved && !x.deleted);
        assert_eq!(x.cwd, "/tmp/x");
        assert_eq!(x.filename, "/tmp/x/a.out", "made absolute against the cwd");
    }

    /// A file record as the kernel sends it: trimmed to the bytes its paths use.
    fn file_record(path: &[&str], path2: &[&str]) -> Vec<u8> {
        // SAFETY: plain old data; zeros are valid.
        let mut e: sensor_common::FileEvent = unsafe { std::mem::zeroed() };
        e.header.kind = EventKind::FileRename as u32;
        e.syscall = sensor_common::syscalls::RENAME as u32;
        let (first, word) = chain(path);
        e.paths[..PATH_BUF].copy_from_slice(&first);
        e.path_len = word;
        if !path2.is_empty() {
            let (second, word) = chain(path2);
            let at = sensor_common::FileEvent::second_at(e.path_len);
            e.paths[at..at + PATH_BUF].copy_from_slice(&second);
            e.path2_len = word;
        }
        let len = sensor_common::FileEvent::used_len(e.path_len, e.path2_len);
        e.header.size = len as u32;
        bytes_of(&e)[..len].to_vec()
    }

    #[test]
    fn file_records_come_trimmed_to_their_paths() {
        let one = file_record(&["a", "tmp"], &[]);
        assert!(one.len() < sensor_common::FileEvent::FIXED_LEN + 16);
        let f = decode(&one).unwrap().event.file.unwrap();
        assert_eq!((f.path.as_str(), f.new_path.as_str()), ("/tmp/a", ""));
        let two = file_record(&["a", "tmp"], &["b", "tmp"]);
        let f = decode(&two).unwrap().event.file.unwrap();
        assert_eq!((f.path.as_str(), f.new_path.as_str()), ("/tmp/a", "/tmp/b"));

        // Path words that claim bytes the record does not carry: an error, not a read of
        // zeros. Shorter than the fixed part, or longer than the layout: errors too.
        let sized = |mut r: Vec<u8>, len: usize| {
            r.resize(len, 0);
            let size = std::mem::offset_of!(EventHeader, size);
            r[size..size + 4].copy_from_slice(&(len as u32).to_le_bytes());
            decode(&r)
        };
        let fixed = sensor_common::FileEvent::FIXED_LEN;
        for (record, len) in [
            (two.clone(), two.len() - 2),
            (one, fixed - 1),
            (two, size_of::<sensor_common::FileEvent>() + 8),
        ] {
            assert!(matches!(
                sized(record, len),
                Err(DecodeError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn truncated_and_garbled_records_are_errors_not_panics() {
        let rec = exec_record(b"x\0", "/x");
        assert!(matches!(
            decode(&rec[..50]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&rec[..200]),
            Err(DecodeError::SizeMismatch { .. })
        ));
        let mut bad = rec.clone();
        bad[0] = 0xff;
        assert_eq!(decode(&bad).unwrap_err(), DecodeError::UnknownKind(0xff));
        // Lengths larger than the buffers are clamped, not trusted.
        let mut long = rec.clone();
        let off = std::mem::offset_of!(ExecEvent, args_len);
        long[off..off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&long).is_ok());
        // Arbitrary bytes never panic.
        for seed in 0..200u32 {
            let junk: Vec<u8> = (0..(seed as usize * 7 % 2000))
                .map(|i| (i as u32).wrapping_mul(seed).wrapping_add(seed) as u8)
                .collect();
            let _ = decode(&junk);
        }
    }
}
