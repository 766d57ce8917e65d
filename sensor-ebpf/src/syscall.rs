//! The skeleton of a syscall hook family: `sys_enter_*` saves the arguments of a call
//! worth reporting, `sys_exit_*` takes them back and reports the call with its result.
//!
//! Syscall tracepoint records share one layout: `__syscall_nr` at offset 8, then the six
//! arguments (entry) or the return value (exit) from offset 16. The families attach one
//! entry and one exit program to each of their syscalls and dispatch on the number, so
//! the result of a call is known before it is reported.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    programs::TracePointContext,
};
use sensor_common::{EventKind, PendingCall};

use crate::{
    kernel::counters::{counted, enabled, ignored},
    maps::PENDING,
};

/// Entry half of a family: the call is saved for its exit when it is not the sensor's
/// own and `wanted` keeps it (entry filters keep the map traffic to calls that matter).
#[inline(always)]
pub fn enter(ctx: &TracePointContext, wanted: impl FnOnce(&PendingCall) -> bool) -> u32 {
    if ignored() {
        return 0;
    }
    if let Ok(call) = entry_args(ctx)
        && wanted(&call)
    {
        stash(&call);
    }
    0
}

/// Exit half of a family: takes the call saved at entry, `classify` names its kind from
/// its number and result (`None`: not reported), and `emit` reports it when that kind is
/// on, a failed kernel read counted. Returns false when nothing was saved at entry.
#[inline(always)]
pub fn exit(
    ctx: &TracePointContext,
    classify: impl FnOnce(&PendingCall, i64) -> Option<EventKind>,
    emit: impl FnOnce(EventKind, &PendingCall, i64) -> Result<(), i64>,
) -> bool {
    let Some(call) = take() else { return false };
    let ret = exit_ret(ctx);
    if let Some(kind) = classify(&call, ret)
        && enabled(kind)
    {
        counted(kind, || emit(kind, &call, ret));
    }
    true
}

/// Exit half for a call whose report needs only its number and result (no entry
/// program is attached for it, so nothing was saved): skips the sensor's own tasks, then
/// as [`exit`].
#[inline(always)]
pub fn exit_only(
    ctx: &TracePointContext,
    classify: impl FnOnce(&PendingCall, i64) -> Option<EventKind>,
    emit: impl FnOnce(EventKind, &PendingCall, i64) -> Result<(), i64>,
) {
    if ignored() {
        return;
    }
    let call = PendingCall {
        nr: syscall_nr(ctx),
        args: [0; 6],
    };
    let ret = exit_ret(ctx);
    if let Some(kind) = classify(&call, ret)
        && enabled(kind)
    {
        counted(kind, || emit(kind, &call, ret));
    }
}

/// Number of the syscall of an entry or exit record.
#[inline(always)]
pub fn syscall_nr(ctx: &TracePointContext) -> u64 {
    (unsafe { *(ctx.as_ptr() as *const u32).add(2) }) as u64
}

/// Arguments of the call being entered.
///
/// One helper call copies all six slots. Direct context loads would be cheaper, but the
/// kernel refuses to attach a program whose loads reach past the record of a syscall with
/// fewer arguments; slots past a call's arity hold whatever follows in the trace buffer
/// and are never used.
#[inline(always)]
pub fn entry_args(ctx: &TracePointContext) -> Result<PendingCall, i64> {
    let args: [u64; 6] = unsafe {
        bpf_probe_read_kernel((ctx.as_ptr() as *const u8).add(16) as *const [u64; 6])
            .map_err(|e| e as i64)?
    };
    Ok(PendingCall {
        nr: syscall_nr(ctx),
        args,
    })
}

/// Saves `call` until the same thread leaves the syscall.
#[inline(always)]
fn stash(call: &PendingCall) {
    let _ = PENDING.insert(bpf_get_current_pid_tgid(), call, 0);
}

/// The arguments saved at entry by this thread, removed from the map.
#[inline(always)]
fn take() -> Option<PendingCall> {
    let key = bpf_get_current_pid_tgid();
    let call = unsafe { PENDING.get(key) }.copied();
    if call.is_some() {
        let _ = PENDING.remove(key);
    }
    call
}

/// Return value of the call being left (every exit record holds it at offset 16).
#[inline(always)]
pub fn exit_ret(ctx: &TracePointContext) -> i64 {
    unsafe { *(ctx.as_ptr() as *const i64).add(2) }
}
