//! File activity: creation and open-for-write, rename, unlink, chmod, chown, truncate,
//! link and symlink.
//!
//! Syscall tracepoints `syscalls/sys_{enter,exit}_<call>` (stable ABI; x86_64 numbers in
//! `sensor_common::syscalls`). Only successful calls are reported. Opens for reading are
//! not followed (they are most syscalls a machine makes), except of files whose name is in
//! `SENSITIVE_NAMES`: those are checked at exit, on the opened file's dentry, and reported
//! as `file_read`. Paths are built here, while the caller and its descriptors exist
//! (`kernel::paths`): the file's own chain for opens and descriptor calls, the caller's
//! name with the chain of its directory (dirfd or working directory) for calls that take
//! a path.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{
    EventKind, FileEvent, PATH_BUF, PendingCall, SENSITIVE_NAME_LEN, syscalls as nr,
};

use crate::{
    kernel::{
        counters::{counted, enabled, ignored},
        files::{dentry_name, fd_file, file_dentry, file_ino},
        globals::off,
        paths::{chain, named, of_file, root_of},
        ring::send_prefix,
        task::{current_task, read},
        user::read_user,
    },
    maps::{FILE_SCRATCH, SENSITIVE_NAMES},
    syscall::{self, exit_ret, syscall_nr},
};

const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const WRITE_FLAGS: u64 = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;
const AT_FDCWD: i32 = -100;
/// `file->f_mode` bit the kernel sets when this open created the file.
const FMODE_CREATED: u32 = 1 << 20;

#[tracepoint]
pub fn file_enter(ctx: TracePointContext) -> u32 {
    syscall::enter(&ctx, |call| match call.nr {
        nr::OPEN => call.args[1] & WRITE_FLAGS != 0,
        nr::OPENAT => call.args[2] & WRITE_FLAGS != 0,
        nr::OPENAT2 => read_user::<u64>(call.args[2])
            .map(|f| f & WRITE_FLAGS != 0)
            .unwrap_or(false),
        _ => true,
    })
}

#[tracepoint]
pub fn file_exit(ctx: TracePointContext) -> u32 {
    // Reads are not saved at entry: a read-only open is checked here, on its result.
    if !syscall::exit(&ctx, kind_of, emit) {
        counted(EventKind::FileRead, || sensitive_read(&ctx));
    }
    0
}

/// Only successful calls are reported.
fn kind_of(call: &PendingCall, ret: i64) -> Option<EventKind> {
    if ret < 0 {
        return None;
    }
    let a = &call.args;
    Some(match call.nr {
        nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT => {
            let file = fd_file(current_task(), ret);
            let mode: u32 = read(file, off().file_mode).unwrap_or(0);
            let excl_create = call.nr == nr::OPENAT && a[2] & 0o300 == 0o300;
            if mode & FMODE_CREATED != 0 || excl_create {
                EventKind::FileCreate
            } else {
                EventKind::FileWrite
            }
        }
        nr::RENAME | nr::RENAMEAT | nr::RENAMEAT2 => EventKind::FileRename,
        nr::UNLINK | nr::UNLINKAT => EventKind::FileUnlink,
        nr::CHMOD | nr::FCHMOD | nr::FCHMODAT | nr::FCHMODAT2 => EventKind::FileChmod,
        nr::CHOWN | nr::FCHOWN | nr::LCHOWN | nr::FCHOWNAT => EventKind::FileChown,
        nr::TRUNCATE | nr::FTRUNCATE => EventKind::FileTruncate,
        nr::LINK | nr::LINKAT => EventKind::FileLink,
        nr::SYMLINK | nr::SYMLINKAT => EventKind::FileSymlink,
        nr::UTIME | nr::UTIMES | nr::FUTIMESAT | nr::UTIMENSAT => EventKind::FileTimes,
        _ => return None,
    })
}

/// Where each syscall keeps the fields of a [`FileEvent`].
struct Fields {
    dirfd: i32,
    path: u64,
    dirfd2: i32,
    path2: u64,
    flags: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    fd: i32,
}

impl Fields {
    /// No path, no descriptor, no owner change.
    const NONE: Fields = Fields {
        dirfd: AT_FDCWD,
        path: 0,
        dirfd2: AT_FDCWD,
        path2: 0,
        flags: 0,
        mode: 0,
        uid: u32::MAX,
        gid: u32::MAX,
        fd: -1,
    };
}

fn fields(call: &PendingCall, ret: i64) -> Fields {
    let a = &call.args;
    let mut f = Fields::NONE;
    match call.nr {
        nr::OPEN => (f.path, f.flags, f.mode, f.fd) = (a[0], a[1] as u32, a[2] as u32, ret as i32),
        nr::OPENAT => {
            (f.dirfd, f.path, f.flags, f.mode) = (a[0] as i32, a[1], a[2] as u32, a[3] as u32);
            f.fd = ret as i32;
        }
        nr::OPENAT2 => {
            (f.dirfd, f.path, f.fd) = (a[0] as i32, a[1], ret as i32);
            f.flags = read_user::<u64>(a[2]).unwrap_or(0) as u32;
            f.mode = read_user::<u64>(a[2] + 8).unwrap_or(0) as u32;
        }
        nr::CREAT => (f.path, f.mode, f.flags, f.fd) = (a[0], a[1] as u32, 0o1101, ret as i32),
        nr::RENAME | nr::LINK | nr::SYMLINK => (f.path, f.path2) = (a[0], a[1]),
        nr::RENAMEAT | nr::RENAMEAT2 | nr::LINKAT => {
            (f.dirfd, f.path, f.dirfd2, f.path2) = (a[0] as i32, a[1], a[2] as i32, a[3]);
            f.flags = a[4] as u32;
        }
        nr::SYMLINKAT => (f.path, f.dirfd2, f.path2) = (a[0], a[1] as i32, a[2]),
        nr::UNLINK | nr::TRUNCATE => f.path = a[0],
        nr::UNLINKAT => (f.dirfd, f.path, f.flags) = (a[0] as i32, a[1], a[2] as u32),
        nr::CHMOD => (f.path, f.mode) = (a[0], a[1] as u32),
        nr::FCHMOD => (f.fd, f.mode) = (a[0] as i32, a[1] as u32),
        nr::FCHMODAT | nr::FCHMODAT2 => {
            (f.dirfd, f.path, f.mode, f.flags) = (a[0] as i32, a[1], a[2] as u32, a[3] as u32)
        }
        nr::CHOWN | nr::LCHOWN => (f.path, f.uid, f.gid) = (a[0], a[1] as u32, a[2] as u32),
        nr::FCHOWN => (f.fd, f.uid, f.gid) = (a[0] as i32, a[1] as u32, a[2] as u32),
        nr::FCHOWNAT => {
            (f.dirfd, f.path, f.uid, f.gid) = (a[0] as i32, a[1], a[2] as u32, a[3] as u32);
            f.flags = a[4] as u32;
        }
        nr::FTRUNCATE => f.fd = a[0] as i32,
        // flags carries whether explicit times were given (not "now").
        nr::UTIME | nr::UTIMES => (f.path, f.flags) = (a[0], (a[1] != 0) as u32),
        nr::FUTIMESAT => (f.dirfd, f.path, f.flags) = (a[0] as i32, a[1], (a[2] != 0) as u32),
        nr::UTIMENSAT => {
            (f.dirfd, f.path, f.flags) = (a[0] as i32, a[1], explicit_times(a[2]) as u32);
            if a[1] == 0 {
                // futimens(fd): the path is the descriptor.
                f.fd = a[0] as i32;
            }
        }
        _ => {}
    }
    f
}

const UTIME_NOW: u64 = (1 << 30) - 1;
const UTIME_OMIT: u64 = (1 << 30) - 2;

/// Whether a `struct timespec[2]` sets a time of the caller's choosing (not now, not
/// omitted): how timestamps are forged.
fn explicit_times(times: u64) -> bool {
    if times == 0 {
        return false;
    }
    let Ok(t) = read_user::<[u64; 4]>(times) else {
        return false;
    };
    let set = |nsec: u64| nsec != UTIME_NOW && nsec != UTIME_OMIT;
    set(t[1]) || set(t[3])
}

fn emit(kind: EventKind, call: &PendingCall, ret: i64) -> Result<(), i64> {
    let f = fields(call, ret);
    let Some(e) = FILE_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let task = current_task();
    let file = if f.fd >= 0 {
        fd_file(task, f.fd as i64)
    } else {
        0
    };
    fill(e, call.nr, ret, &f, file_ino(file));
    unsafe {
        if file != 0 {
            // The open or fd-only call's own file: its chain, whatever name it was given.
            file_chain(first(e), &raw mut (*e).path_len, file, task);
        } else {
            named(first(e), &raw mut (*e).path_len, f.path, task, f.dirfd);
        }
        named(second(e), &raw mut (*e).path2_len, f.path2, task, f.dirfd2);
    }
    send_trimmed(e, task, kind)
}

/// The first path's buffer in a record's `paths`.
#[inline(always)]
fn first(e: *mut FileEvent) -> *mut [u8; PATH_BUF] {
    unsafe { (&raw mut (*e).paths).cast() }
}

/// The second path's buffer: right after the first path's bytes, which are at most
/// `PATH_LEN`, so its `PATH_BUF` stays inside `paths`.
#[inline(always)]
fn second(e: *mut FileEvent) -> *mut [u8; PATH_BUF] {
    let at = FileEvent::second_at(unsafe { (*e).path_len });
    unsafe { (&raw mut (*e).paths).cast::<u8>().add(at).cast() }
}

/// Sends the bytes of a file record built in `FILE_SCRATCH` that its paths use.
#[inline(always)]
fn send_trimmed(e: *mut FileEvent, task: usize, kind: EventKind) -> Result<(), i64> {
    let len = unsafe { FileEvent::used_len((*e).path_len, (*e).path2_len) };
    send_prefix(e, len, task, kind)
}

/// The chain of an open file, up to the task's root.
#[inline(always)]
fn file_chain(buf: *mut [u8; PATH_BUF], word: *mut u32, file: usize, task: usize) {
    match (of_file(file), root_of(task)) {
        (Ok(loc), Ok(root)) => chain(buf, word, loc, root),
        _ => unsafe { *word = 0 },
    }
}

/// Everything of a [`FileEvent`] but its paths.
#[inline(always)]
fn fill(e: *mut FileEvent, nr: u64, ret: i64, f: &Fields, ino: u64) {
    unsafe {
        (*e).ret = ret;
        (*e).syscall = nr as u32;
        (*e).flags = f.flags;
        (*e).mode = f.mode;
        (*e).uid = f.uid;
        (*e).gid = f.gid;
        (*e).fd = f.fd;
        (*e).dirfd = f.dirfd;
        (*e).dirfd2 = f.dirfd2;
        (*e).ino = ino;
    }
}

/// A read-only open of a file named in `SENSITIVE_NAMES` (nothing was saved at entry).
fn sensitive_read(ctx: &TracePointContext) -> Result<(), i64> {
    let kind = EventKind::FileRead;
    let nr = syscall_nr(ctx);
    if nr != nr::OPEN && nr != nr::OPENAT && nr != nr::OPENAT2 {
        return Ok(());
    }
    let ret = exit_ret(ctx);
    if ret < 0 || !enabled(kind) || ignored() {
        return Ok(());
    }
    let task = current_task();
    let file = fd_file(task, ret);
    let Ok(dentry) = file_dentry(file) else {
        return Ok(());
    };
    let mut key = [0u8; SENSITIVE_NAME_LEN];
    if dentry_name(dentry, &mut key).is_err() || unsafe { SENSITIVE_NAMES.get(key) }.is_none() {
        return Ok(());
    }
    let Some(e) = FILE_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let f = Fields {
        fd: ret as i32,
        ..Fields::NONE
    };
    fill(e, nr, ret, &f, file_ino(file));
    unsafe {
        file_chain(first(e), &raw mut (*e).path_len, file, task);
        (*e).path2_len = 0;
    }
    send_trimmed(e, task, kind)
}
