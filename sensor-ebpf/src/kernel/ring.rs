//! Records on the `EVENTS` ring buffer: reserved for a kind, stamped with the common
//! header from a task, submitted with a wake-up policy.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_boot_ns,
    },
    maps::ring_buf::RingBufEntry,
};
use sensor_common::{EventHeader, EventKind, Record};

use super::{
    counters::count_lost,
    globals::off,
    task::{current_task, read, read_ptr},
};
use crate::maps::EVENTS;

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
pub fn reserve<T: Record>(kind: EventKind) -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_lost(kind);
    }
    entry
}

/// Fills the header of a reserved record from `task` and submits it; the record is sent
/// even when a header field could not be read (the error is returned for counting).
#[inline(always)]
pub fn send<T: Record>(
    mut entry: RingBufEntry<T>,
    task: usize,
    kind: EventKind,
) -> Result<(), i64> {
    // SAFETY: the entry holds a `T`, reserved above.
    let header = unsafe { T::header_ptr(entry.as_mut_ptr()) };
    let r = fill_header(header, task, kind, size_of::<T>());
    entry.submit(wakeup());
    r
}

/// Fills the header of a record built outside the ring buffer and sends its first `len`
/// bytes (at least the header, at most the layout), counting it as lost when it does not
/// fit; as with [`send`], a header read that failed is returned for counting.
#[inline(always)]
pub fn send_prefix<T: Record>(
    record: *mut T,
    len: usize,
    task: usize,
    kind: EventKind,
) -> Result<(), i64> {
    let len = if len > size_of::<T>() {
        size_of::<T>()
    } else if len < size_of::<EventHeader>() {
        size_of::<EventHeader>()
    } else {
        len
    };
    // SAFETY: `record` points to a `T`.
    let header = unsafe { T::header_ptr(record) };
    let r = fill_header(header, task, kind, len);
    // SAFETY: `len` is within the `T` at `record`.
    let bytes = unsafe { core::slice::from_raw_parts(record as *const u8, len) };
    if EVENTS.output::<[u8]>(bytes, wakeup()).is_err() {
        count_lost(kind);
    }
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
        // Most records are about the current task, whose ids and name the kernel hands
        // out without a read of its memory.
        if task == current_task() {
            let ids = bpf_get_current_pid_tgid();
            (*h).tgid = (ids >> 32) as u32;
            (*h).pid = ids as u32;
            (*h).comm = bpf_get_current_comm().map_err(|e| e as i64)?;
        } else {
            (*h).tgid = read::<u32>(task, o.task_tgid)?;
            (*h).pid = read::<u32>(task, o.task_pid)?;
            (*h).comm = read::<[u8; 16]>(task, o.task_comm)?;
        }
        let leader = read_ptr(task, o.task_group_leader)?;
        (*h).start_ns = read::<u64>(leader, o.task_start_boottime)?;
        let cred = read_ptr(task, o.task_cred)?;
        // struct cred has held uid, gid, suid, sgid, euid, egid in a row since 2.6.29:
        // one read when the offsets say so.
        if o.cred_gid == o.cred_uid + 4
            && o.cred_euid == o.cred_uid + 16
            && o.cred_egid == o.cred_uid + 20
        {
            let ids = read::<[u32; 6]>(cred, o.cred_uid)?;
            (*h).uid = ids[0];
            (*h).gid = ids[1];
            (*h).euid = ids[4];
            (*h).egid = ids[5];
        } else {
            (*h).uid = read::<u32>(cred, o.cred_uid)?;
            (*h).gid = read::<u32>(cred, o.cred_gid)?;
            (*h).euid = read::<u32>(cred, o.cred_euid)?;
            (*h).egid = read::<u32>(cred, o.cred_egid)?;
        }
        let parent = read_ptr(leader, o.task_real_parent)?;
        (*h).ppid = read::<u32>(parent, o.task_tgid)?;
        let parent_leader = read_ptr(parent, o.task_group_leader)?;
        (*h).parent_start_ns = read::<u64>(parent_leader, o.task_start_boottime)?;
    }
    Ok(())
}
