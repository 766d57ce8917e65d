//! Which exec images blocking mode stops, decided once for both ways of stopping them: the
//! BPF LSM program denies the exec where the kernel runs BPF LSM (`lsm.rs`), and the exec
//! tracepoint kills the task before its first instruction everywhere else (`process.rs`).
//!
//! A *dropped* image is decided here too, from the kernel's own records and nothing
//! userspace had to see first, so a drop executed in the same millisecond is caught: the
//! inode's change time (set to now by create, write, chmod, rename and link, and which no
//! unprivileged caller can set back) lies within the drop window, and one of the image's
//! ancestor directories, up to the task's root, is world-writable (/tmp, /var/tmp,
//! /dev/shm and anything below them).

use aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns;
use sensor_common::{DENIED_DROPPED, DENIED_UNLINKED};

use crate::{
    kernel::{
        files::{file_identity, file_name},
        globals::{blocking, drop_window_secs, in_blocking_scope, off},
        paths::{Location, of_file, root_of},
        task::{read, read_ptr},
    },
    maps::WALL_CLOCK,
};

/// Whether the image of `bprm` (a `struct linux_binprm *`), executed by `task`, was
/// dropped, and why it must not run ([`DENIED_UNLINKED`], [`DENIED_DROPPED`]) or `None`.
/// Unreadable kernel memory lets the exec run: the detection from userspace still follows.
#[inline(always)]
pub fn assess(task: usize, bprm: usize) -> (bool, Option<u32>) {
    let Ok(file) = read_ptr(bprm, off().binprm_file) else {
        return (false, None);
    };
    let dropped = recently_changed(file) && below_world_writable(task, file);
    if !blocking() {
        return (dropped, None);
    }
    let Ok((_, _, nlink)) = file_identity(file) else {
        return (dropped, None);
    };
    let reason = if nlink == 0 {
        if runc_clone(file) {
            return (dropped, None);
        }
        DENIED_UNLINKED
    } else if dropped {
        DENIED_DROPPED
    } else {
        return (dropped, None);
    };
    (dropped, in_blocking_scope(task).then_some(reason))
}

/// Why the image of `bprm` must not run, or `None` (see [`assess`]).
#[inline(always)]
pub fn doomed(task: usize, bprm: usize) -> Option<u32> {
    assess(task, bprm).1
}

/// The inode's change time is within the drop window of now. A change time in the future
/// (a clock stepped back) counts as recent.
#[inline(always)]
fn recently_changed(file: usize) -> bool {
    let o = off();
    let Ok(inode) = read_ptr(file, o.file_inode) else {
        return false;
    };
    let Ok(ctime) = read::<i64>(inode, o.inode_ctime_sec) else {
        return false;
    };
    // Change times are wall-clock; BPF reads only boot-relative clocks.
    let Some(&wall) = WALL_CLOCK.get(0) else {
        return false;
    };
    if wall == 0 {
        return false;
    }
    let now = (unsafe { bpf_ktime_get_boot_ns() } + wall) / 1_000_000_000;
    ctime >= (now as i64).saturating_sub(drop_window_secs() as i64)
}

const S_IWOTH: u16 = 0o002;
/// Directories and mount crossings looked at above an image: deeper drops are not seen.
const MAX_DEPTH: u32 = 24;

/// One of the directories above `file`, up to the task's root and across mount points, is
/// writable by everyone.
#[inline(always)]
fn below_world_writable(task: usize, file: usize) -> bool {
    let o = off();
    let Ok(Location {
        mut dentry,
        mnt: mut vfsmount,
    }) = of_file(file)
    else {
        return false;
    };
    // A chrooted or containerised task: what lies above its root is not its directory.
    let root = root_of(task).unwrap_or(Location::NOWHERE);
    let mut i = 0;
    while i < MAX_DEPTH {
        i += 1;
        if dentry == root.dentry && vfsmount == root.mnt {
            return false;
        }
        let Ok(mnt_root) = read_ptr(vfsmount, o.vfsmount_root) else {
            return false;
        };
        if dentry == mnt_root {
            // The root of a mount stands for the directory it covers: go on from there,
            // in the parent mount, without looking at the covered directory itself.
            let mount = vfsmount - o.mount_mnt as usize;
            let Ok(parent) = read_ptr(mount, o.mount_parent) else {
                return false;
            };
            if parent == mount {
                return false;
            }
            let Ok(mountpoint) = read_ptr(mount, o.mount_mountpoint) else {
                return false;
            };
            dentry = mountpoint;
            vfsmount = parent + o.mount_mnt as usize;
            continue;
        }
        let Ok(parent) = read_ptr(dentry, o.dentry_parent) else {
            return false;
        };
        if parent == dentry {
            return false;
        }
        let Ok(inode) = read_ptr(parent, o.dentry_inode) else {
            return false;
        };
        let Ok(mode) = read::<u16>(inode, o.inode_mode) else {
            return false;
        };
        if mode & S_IWOTH != 0 {
            return true;
        }
        dentry = parent;
    }
    false
}

/// runc's own memfd clone is exempt: every container start uses it.
#[inline(always)]
fn runc_clone(file: usize) -> bool {
    let mut name = [0u8; 24];
    let _ = file_name(file, &mut name);
    const RUNC: &[u8; 17] = b"memfd:runc_cloned";
    let mut i = 0;
    let mut runc = true;
    while i < RUNC.len() {
        if name[i] != RUNC[i] {
            runc = false;
        }
        i += 1;
    }
    runc
}
