//! The loader overrides these read-only globals before the programs are verified; reads
//! are volatile so the compiler cannot fold the zeros it sees at build time.

use sensor_common::KernelOffsets;

use super::task::{read, read_ptr};

/// Member offsets of the kernel structs the programs read (from BTF, see `sensor/src/btf.rs`).
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    task_real_parent: 0,
    task_group_leader: 0,
    task_tgid: 0,
    task_pid: 0,
    task_start_boottime: 0,
    task_comm: 0,
    task_mm: 0,
    task_cred: 0,
    task_files: 0,
    task_signal: 0,
    task_exit_code: 0,
    signal_live: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_env_start: 0,
    mm_env_end: 0,
    mm_exe_file: 0,
    cred_uid: 0,
    cred_gid: 0,
    cred_euid: 0,
    cred_egid: 0,
    binprm_file: 0,
    binprm_filename: 0,
    file_inode: 0,
    file_mode: 0,
    file_dentry: 0,
    file_private_data: 0,
    dentry_name: 0,
    dentry_parent: 0,
    inode_ino: 0,
    inode_sb: 0,
    inode_nlink: 0,
    inode_mode: 0,
    sb_dev: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    socket_sk: 0,
    sk_family: 0,
    sk_num: 0,
    sk_dport: 0,
    sk_daddr: 0,
    sk_rcv_saddr: 0,
    sk_v6_daddr: 0,
    sk_v6_rcv_saddr: 0,
    sk_type: 0,
    sk_protocol: 0,
    task_fs: 0,
    fs_root: 0,
    fs_pwd: 0,
    path_mnt: 0,
    path_dentry: 0,
    file_path: 0,
    mount_mnt: 0,
    mount_parent: 0,
    mount_mountpoint: 0,
    vfsmount_root: 0,
    dentry_inode: 0,
    inode_ctime_sec: 0,
};

/// Non-zero in blocking mode (patched by userspace at load).
#[unsafe(no_mangle)]
static BLOCKING: u32 = 0;

/// When non-zero, blocking applies only to descendants of this thread group (a staged
/// roll-out, and how tests confine blocking to what they start).
#[unsafe(no_mangle)]
static BLOCK_SCOPE_TGID: u32 = 0;

/// How many seconds after its inode last changed an image below a world-writable
/// directory counts as dropped (`drop_exec_window_secs`).
#[unsafe(no_mangle)]
static DROP_WINDOW_SECS: u64 = 0;

#[inline(always)]
pub fn drop_window_secs() -> u64 {
    unsafe { core::ptr::read_volatile(&DROP_WINDOW_SECS) }
}

#[inline(always)]
pub fn blocking() -> bool {
    unsafe { core::ptr::read_volatile(&BLOCKING) != 0 }
}

/// Whether `task` is inside the blocking scope (its own tgid or an ancestor's matches).
#[inline(always)]
pub fn in_blocking_scope(task: usize) -> bool {
    let scope = unsafe { core::ptr::read_volatile(&BLOCK_SCOPE_TGID) };
    if scope == 0 {
        return true;
    }
    let o = off();
    let mut t = task;
    let mut i = 0;
    while i < 32 {
        let Ok(tgid) = read::<u32>(t, o.task_tgid) else {
            return false;
        };
        if tgid == scope {
            return true;
        }
        let Ok(parent) = read_ptr(t, o.task_real_parent) else {
            return false;
        };
        if parent == t || parent == 0 {
            return false;
        }
        t = parent;
        i += 1;
    }
    false
}

/// The offsets table as userspace patched it (volatile: the compiler must not fold the
/// zeros it sees at build time).
#[inline(always)]
pub fn off() -> &'static KernelOffsets {
    unsafe { core::ptr::read_volatile(&&OFFSETS) }
}
