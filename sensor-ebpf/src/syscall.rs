//! Carrying syscall arguments from `sys_enter_*` to `sys_exit_*`.
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
use sensor_common::PendingCall;

use crate::maps::PENDING;

/// Arguments of the call being entered.
///
/// One helper call copies the number and all six slots. Direct context loads would be
/// cheaper, but the kernel refuses to attach a program whose loads reach past the
/// record of a syscall with fewer arguments; slots past a call's arity hold whatever
/// follows in the trace buffer and are never used.
#[inline(always)]
pub fn entry_args(ctx: &TracePointContext) -> Result<PendingCall, i64> {
    let raw: [u64; 7] = unsafe {
        bpf_probe_read_kernel((ctx.as_ptr() as *const u8).add(8) as *const [u64; 7])
            .map_err(|e| e as i64)?
    };
    Ok(PendingCall {
        nr: raw[0] & 0xffff_ffff,
        args: [raw[1], raw[2], raw[3], raw[4], raw[5], raw[6]],
    })
}

/// Saves `call` until the same thread leaves the syscall.
#[inline(always)]
pub fn stash(call: &PendingCall) {
    let _ = PENDING.insert(bpf_get_current_pid_tgid(), call, 0);
}

/// The arguments saved at entry by this thread, removed from the map.
#[inline(always)]
pub fn take() -> Option<PendingCall> {
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
