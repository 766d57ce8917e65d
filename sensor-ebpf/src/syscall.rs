//! Carrying syscall arguments from `sys_enter_*` to `sys_exit_*`.
//!
//! Syscall tracepoint records share one layout: `__syscall_nr` at offset 8, then the six
//! arguments (entry) or the return value (exit) from offset 16. The families attach one
//! entry and one exit program to each of their syscalls and dispatch on the number, so
//! the result of a call is known before it is reported.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext};
use sensor_common::PendingCall;

use crate::maps::PENDING;

/// Arguments of the call being entered.
#[inline(always)]
pub fn entry_args(ctx: &TracePointContext) -> Result<PendingCall, i64> {
    let mut call = PendingCall::default();
    unsafe {
        call.nr = ctx.read_at::<i32>(8).map_err(|e| e as i64)? as u64;
        let mut i = 0;
        while i < 6 {
            call.args[i] = ctx.read_at::<u64>(16 + 8 * i).map_err(|e| e as i64)?;
            i += 1;
        }
    }
    Ok(call)
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

/// Return value of the call being left.
#[inline(always)]
pub fn exit_ret(ctx: &TracePointContext) -> i64 {
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0)
}
