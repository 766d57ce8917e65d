//! Reading kernel structures without CO-RE: member offsets come from userspace (read from
//! the running kernel's BTF) through the `OFFSETS` global, and every dereference goes
//! through `bpf_probe_read_kernel`, so a wrong offset yields a failed read, never a crash.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
    bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
};
use sensor_common::{EventHeader, EventKind, KernelOffsets, SockInfo};

use aya_ebpf::maps::ring_buf::RingBufEntry;

use crate::maps::{ENABLED, ERRORS, EVENTS, IGNORED_TGIDS, LOST};

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
};

/// Non-zero in blocking mode (patched by userspace at load).
#[unsafe(no_mangle)]
static BLOCKING: u32 = 0;

/// When non-zero, blocking applies only to descendants of this thread group (a staged
/// roll-out, and how tests confine blocking to what they start).
#[unsafe(no_mangle)]
static BLOCK_SCOPE_TGID: u32 = 0;

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

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T: Copy>(base: usize, offset: u32) -> Result<T, i64> {
    if base == 0 {
        return Err(-1);
    }
    unsafe { bpf_probe_read_kernel((base + offset as usize) as *const T).map_err(|e| e as i64) }
}

#[inline(always)]
pub fn read_ptr(base: usize, offset: u32) -> Result<usize, i64> {
    let p: u64 = read(base, offset)?;
    Ok(p as usize)
}

#[inline(always)]
pub fn current_task() -> usize {
    unsafe { bpf_get_current_task() as usize }
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// True when the current task belongs to the sensor or the kind is switched off.
#[inline(always)]
pub fn skip(kind: EventKind) -> bool {
    ignored() || !enabled(kind)
}

/// True when the current task belongs to the sensor.
#[inline(always)]
pub fn ignored() -> bool {
    let tgid = current_tgid();
    unsafe { IGNORED_TGIDS.get(tgid) }.is_some()
}

#[inline(always)]
pub fn enabled(kind: EventKind) -> bool {
    matches!(ENABLED.get(kind as u32), Some(v) if *v != 0)
}

#[inline(always)]
fn count_lost(kind: EventKind) {
    bump(&LOST, kind);
}

#[inline(always)]
pub fn count_error(kind: EventKind) {
    bump(&ERRORS, kind);
}

#[inline(always)]
fn bump(map: &aya_ebpf::maps::PerCpuArray<u64>, kind: EventKind) {
    if let Some(p) = map.get_ptr_mut(kind as u32) {
        unsafe { *p += 1 };
    }
}

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// Submit flags for a record: the reader is woken only once the buffer is an eighth
/// full; otherwise it finds the records on its next poll (every few milliseconds).
/// Waking it for every record costs a cross-CPU interrupt per event, which on a VM made
/// short-lived processes a third slower.
#[inline(always)]
pub fn wakeup() -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA);
    let size = EVENTS.query(BPF_RB_RING_SIZE);
    if avail > size / 8 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Reserves a record of `kind`, counting it as lost when the ring buffer is full: the one
/// place a hook gives up a record, so none goes uncounted.
#[inline(always)]
pub fn reserve<T: 'static>(kind: EventKind) -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_lost(kind);
    }
    entry
}

/// Fills the header of a reserved record from `task` and submits it; the record is sent
/// even when a header field could not be read (the error is returned for counting).
/// Every event layout starts with its `EventHeader`.
#[inline(always)]
pub fn send<T: 'static>(
    mut entry: RingBufEntry<T>,
    task: usize,
    kind: EventKind,
) -> Result<(), i64> {
    let r = fill_header(
        entry.as_mut_ptr().cast::<EventHeader>(),
        task,
        kind,
        size_of::<T>(),
    );
    entry.submit(wakeup());
    r
}

/// Fills the common header from `task` (which need not be the current task: a fork
/// reports the child). Returns `Err` if any read failed; the fields read so far stay.
#[inline(always)]
fn fill_header(h: *mut EventHeader, task: usize, kind: EventKind, size: usize) -> Result<(), i64> {
    let o = off();
    unsafe {
        (*h).kind = kind as u32;
        (*h).size = size as u32;
        (*h).ts_ns = bpf_ktime_get_boot_ns();
        (*h).cgroup_id = bpf_get_current_cgroup_id();
        (*h).tgid = 0;
        (*h).pid = 0;
        (*h).start_ns = 0;
        (*h).ppid = 0;
        (*h).parent_start_ns = 0;
        (*h).uid = 0;
        (*h).gid = 0;
        (*h).euid = 0;
        (*h).egid = 0;
        (*h)._pad = 0;
        (*h).comm = [0; 16];
        (*h).tgid = read::<u32>(task, o.task_tgid)?;
        (*h).pid = read::<u32>(task, o.task_pid)?;
        (*h).comm = read::<[u8; 16]>(task, o.task_comm)?;
        let leader = read_ptr(task, o.task_group_leader)?;
        (*h).start_ns = read::<u64>(leader, o.task_start_boottime)?;
        let cred = read_ptr(task, o.task_cred)?;
        (*h).uid = read::<u32>(cred, o.cred_uid)?;
        (*h).gid = read::<u32>(cred, o.cred_gid)?;
        (*h).euid = read::<u32>(cred, o.cred_euid)?;
        (*h).egid = read::<u32>(cred, o.cred_egid)?;
        let parent = read_ptr(leader, o.task_real_parent)?;
        (*h).ppid = read::<u32>(parent, o.task_tgid)?;
        let parent_leader = read_ptr(parent, o.task_group_leader)?;
        (*h).parent_start_ns = read::<u64>(parent_leader, o.task_start_boottime)?;
    }
    Ok(())
}

/// `struct file *` behind descriptor `fd` of `task`, or 0.
#[inline(always)]
pub fn fd_file(task: usize, fd: i64) -> usize {
    fd_file_inner(task, fd).unwrap_or(0)
}

#[inline(always)]
fn fd_file_inner(task: usize, fd: i64) -> Result<usize, i64> {
    if fd < 0 {
        return Err(-1);
    }
    let o = off();
    let files = read_ptr(task, o.task_files)?;
    let fdt = read_ptr(files, o.files_fdt)?;
    let max: u32 = read(fdt, o.fdt_max_fds)?;
    if fd as u64 >= max as u64 {
        return Err(-1);
    }
    let fds = read_ptr(fdt, o.fdt_fd)?;
    read_ptr(fds, (fd as u32) * 8)
}

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Describes the socket behind `file`; `family` stays 0 if it is not one.
#[inline(always)]
pub fn sock_info(file: usize, out: *mut SockInfo) -> Result<(), i64> {
    let o = off();
    unsafe {
        (*out) = SockInfo::default();
    }
    if file == 0 {
        return Ok(());
    }
    let inode = read_ptr(file, o.file_inode)?;
    let mode: u16 = read(inode, o.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return Ok(());
    }
    let socket = read_ptr(file, o.file_private_data)?;
    let sk = read_ptr(socket, o.socket_sk)?;
    let family: u16 = read(sk, o.sk_family)?;
    unsafe {
        (*out).family = family;
        (*out).sock_type = read(sk, o.sk_type)?;
        (*out).protocol = read(sk, o.sk_protocol)?;
        (*out).lport = read(sk, o.sk_num)?;
        (*out).rport = u16::from_be(read(sk, o.sk_dport)?);
        if family == AF_INET {
            let d: [u8; 4] = read(sk, o.sk_daddr)?;
            let s: [u8; 4] = read(sk, o.sk_rcv_saddr)?;
            (*out).raddr = [d[0], d[1], d[2], d[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            (*out).laddr = [s[0], s[1], s[2], s[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        } else if family == AF_INET6 {
            (*out).raddr = read(sk, o.sk_v6_daddr)?;
            (*out).laddr = read(sk, o.sk_v6_rcv_saddr)?;
        }
    }
    Ok(())
}

/// Parses a user `struct sockaddr` into `out` (family, port, address); AF_INET/AF_INET6 only.
#[inline(always)]
pub fn user_sockaddr(addr: u64, out: *mut SockInfo) -> Result<u16, i64> {
    if addr == 0 {
        return Ok(0);
    }
    let family: u16 = read_user(addr)?;
    let port: u16 = read_user(addr + 2)?;
    unsafe {
        (*out).family = family;
        (*out).rport = u16::from_be(port);
        if family == AF_INET {
            let a: [u8; 4] = read_user(addr + 4)?;
            (*out).raddr = [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        } else if family == AF_INET6 {
            (*out).raddr = read_user(addr + 8)?;
        }
    }
    Ok(family)
}

#[inline(always)]
pub fn read_user<T: Copy>(addr: u64) -> Result<T, i64> {
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(addr as *const T).map_err(|e| e as i64) }
}

/// Copies `len` bytes (at most `N - 1`; `N` is a power of two) of user memory at `src`
/// into `dst`; returns how many.
///
/// The bound is a mask applied to a volatile copy of `len` right before the helper call.
/// A bound the compiler can see lets it drop the check, or check a copy and spill the
/// value to the stack, and older verifiers lose a spilled value's bounds: 6.1 refused the
/// exec and DNS programs with "R2 min value is negative", where 6.12 accepted them.
#[inline(always)]
pub fn read_user_bytes<const N: usize>(dst: *mut [u8; N], len: u64, src: u64) -> Result<u32, i64> {
    const { assert!(N.is_power_of_two()) };
    let len = len.min(N as u64 - 1);
    let n = unsafe { core::ptr::read_volatile(&len) } & (N as u64 - 1);
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            dst as *mut c_void,
            n as u32,
            src as *const c_void,
        )
    };
    if r == 0 { Ok(n as u32) } else { Err(r) }
}

/// Copies a NUL-terminated user string into `dst` (at most `N` bytes). Returns the length
/// without the terminator.
#[inline(always)]
pub fn user_str<const N: usize>(src: u64, dst: *mut [u8; N]) -> u32 {
    copy_str(
        src as usize,
        dst,
        aya_ebpf::helpers::generated::bpf_probe_read_user_str,
    )
}

/// Copies a NUL-terminated kernel string into `dst` (at most `N` bytes).
#[inline(always)]
pub fn kernel_str<const N: usize>(src: usize, dst: *mut [u8; N]) -> u32 {
    copy_str(
        src,
        dst,
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str,
    )
}

type StrHelper = unsafe fn(*mut c_void, u32, *const c_void) -> i64;

#[inline(always)]
fn copy_str<const N: usize>(src: usize, dst: *mut [u8; N], helper: StrHelper) -> u32 {
    if src == 0 {
        return 0;
    }
    let n = unsafe { helper(dst as *mut c_void, N as u32, src as *const c_void) };
    if n > 0 { (n - 1) as u32 } else { 0 }
}

/// Inode number of the file behind `file`, 0 if unreadable.
#[inline(always)]
pub fn file_ino(file: usize) -> u64 {
    let o = off();
    read_ptr(file, o.file_inode)
        .and_then(|inode| read::<u64>(inode, o.inode_ino))
        .unwrap_or(0)
}

/// Inode number, device and link count of the file behind `file`.
#[inline(always)]
pub fn file_identity(file: usize) -> Result<(u64, u32, u32), i64> {
    let o = off();
    let inode = read_ptr(file, o.file_inode)?;
    let ino: u64 = read(inode, o.inode_ino)?;
    let nlink: u32 = read(inode, o.inode_nlink)?;
    let sb = read_ptr(inode, o.inode_sb)?;
    let dev: u32 = read(sb, o.sb_dev)?;
    Ok((ino, dev, nlink))
}
