//! Absolute paths from the kernel's own chains, as the process sees them: the dentry's
//! parents up to its mount's root, then the mount point in the parent mount, until the
//! task's root (`task->fs->root`). Userspace never has to ask `/proc` about a process that
//! may already be gone. Layout of the result: `sensor_common::PATH_BUF`.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str};
use sensor_common::{
    PATH_BUF, PATH_BYTES, PATH_COMPLETE, PATH_DEPTH, PATH_LEN, PATH_NAMED, PATH_TRUNCATED,
    PATH_UNREACHABLE,
};

use super::{
    files::fd_file,
    globals::off,
    task::read_ptr,
};

const AT_FDCWD: i32 = -100;

/// A `struct path`: a dentry and the mount it is seen through.
#[derive(Clone, Copy)]
pub struct Location {
    pub mnt: usize,
    pub dentry: usize,
}

impl Location {
    /// Matches no real path: a walk bounded by it goes up to the top of the mount tree.
    pub const NOWHERE: Location = Location { mnt: 0, dentry: 0 };
}

/// Where `file` (a `struct file *`) was opened.
#[inline(always)]
pub fn of_file(file: usize) -> Result<Location, i64> {
    at(file, off().file_path)
}

/// The task's root directory: paths stop there, so a container's or a chroot's process
/// gets its own view.
#[inline(always)]
pub fn root_of(task: usize) -> Result<Location, i64> {
    let o = off();
    at(read_ptr(task, o.task_fs)?, o.fs_root)
}

/// The task's working directory.
#[inline(always)]
pub fn cwd_of(task: usize) -> Result<Location, i64> {
    let o = off();
    at(read_ptr(task, o.task_fs)?, o.fs_pwd)
}

/// The directory a `*at` call's relative name starts from: `dirfd`'s, or the working
/// directory for `AT_FDCWD`.
#[inline(always)]
pub fn dir_of(task: usize, dirfd: i32) -> Result<Location, i64> {
    if dirfd == AT_FDCWD {
        cwd_of(task)
    } else {
        of_file(fd_file(task, dirfd as i64))
    }
}

/// The `struct path` at `base + offset`.
#[inline(always)]
fn at(base: usize, offset: u32) -> Result<Location, i64> {
    let o = off();
    Ok(Location {
        mnt: read_ptr(base, offset + o.path_mnt)?,
        dentry: read_ptr(base, offset + o.path_dentry)?,
    })
}

/// Writes the chain of `loc` into `buf`: its name first, then each parent's, up to
/// `root`; `word` gets the bytes used and the flags.
#[inline(always)]
pub fn chain(buf: *mut [u8; PATH_BUF], word: *mut u32, loc: Location, root: Location) {
    unsafe { *word = 0 };
    walk(buf, word, loc, root);
}

/// Writes the name the caller passed (user memory at `name`), then, when it is relative,
/// the chain of the directory it is relative to (`dirfd`'s, or the working directory's).
#[inline(always)]
pub fn named(buf: *mut [u8; PATH_BUF], word: *mut u32, name: u64, task: usize, dirfd: i32) {
    unsafe { *word = 0 };
    if name == 0 {
        return;
    }
    let n = unsafe {
        bpf_probe_read_user_str(buf as *mut c_void, PATH_LEN as u32, name as *const c_void)
    };
    if n <= 0 {
        return;
    }
    unsafe { *word = n as u32 | PATH_NAMED };
    if n as usize >= PATH_LEN {
        // The name alone fills the bound: it was cut.
        unsafe { *word |= PATH_TRUNCATED };
        return;
    }
    if unsafe { (*buf)[0] } == b'/' {
        // Absolute for the caller, who resolves it from its own root: as it sees it.
        unsafe { *word |= PATH_COMPLETE };
        return;
    }
    if let (Ok(dir), Ok(root)) = (dir_of(task, dirfd), root_of(task)) {
        walk(buf, word, dir, root);
    }
}

/// The walk itself, appending at the byte count already in `word`.
///
/// Each name is copied at an offset masked into the first half of the buffer with at most
/// `PATH_LEN` bytes, which the verifier can prove stays inside it; a name that would end
/// past `PATH_LEN` marks the path truncated. Unreadable kernel memory ends the walk with
/// the path incomplete, never wrong.
///
/// The running length and the flags live in the record, not in registers: the verifier
/// then sees the same state however the walk ended, and a second walk after this one is
/// checked once instead of once per way this one can end.
#[inline(always)]
fn walk(buf: *mut [u8; PATH_BUF], word: *mut u32, loc: Location, root: Location) {
    let o = off();
    let mut d = loc.dentry;
    let mut mnt = loc.mnt;
    let mut i = 0;
    while i < PATH_DEPTH {
        if d == root.dentry && mnt == root.mnt {
            unsafe { *word |= PATH_COMPLETE };
            return;
        }
        let Ok(parent) = read_ptr(d, o.dentry_parent) else {
            return;
        };
        let Ok(mnt_root) = read_ptr(mnt, o.vfsmount_root) else {
            return;
        };
        if d == mnt_root {
            // The top of a mount: go on from where it is mounted.
            let mount = mnt - o.mount_mnt as usize;
            let Ok(up) = read_ptr(mount, o.mount_parent) else {
                return;
            };
            if up == mount {
                unsafe { *word |= PATH_UNREACHABLE };
                return;
            }
            let Ok(point) = read_ptr(mount, o.mount_mountpoint) else {
                return;
            };
            d = point;
            mnt = up + o.mount_mnt as usize;
            i += 1;
            continue;
        }
        let Ok(name) = read_ptr(d, o.dentry_name) else {
            return;
        };
        let w = unsafe { core::ptr::read_volatile(word) };
        let at = w & (PATH_LEN as u32 - 1);
        let n = unsafe {
            bpf_probe_read_kernel_str(
                (buf as *mut u8).add(at as usize) as *mut c_void,
                PATH_LEN as u32,
                name as *const c_void,
            )
        };
        if n <= 0 {
            return;
        }
        let end = (w & PATH_BYTES) + n as u32;
        if end >= PATH_LEN as u32 {
            unsafe { *word = w | PATH_TRUNCATED };
            return;
        }
        unsafe { *word = (w & !PATH_BYTES) | end };
        if d == parent {
            // Its own parent without being a mount's root: a pseudo file (memfd) or a
            // disconnected dentry. Its name is all there is.
            unsafe { *word |= PATH_UNREACHABLE };
            return;
        }
        d = parent;
        i += 1;
    }
    unsafe { *word |= PATH_TRUNCATED };
}
