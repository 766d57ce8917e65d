//! Kernel module loads on kernels whose `init_module`/`finit_module` have no syscall
//! tracepoints (built without module support: the syscalls exist and fail with ENOSYS,
//! but an attempt is still worth reporting).
//!
//! Raw tracepoint `sys_enter(struct pt_regs *regs, long id)` (raw_syscalls, stable since
//! 3.x). It runs on every syscall, so userspace attaches it only when the per-syscall
//! tracepoints are missing, and it returns at once for any other syscall. The call is
//! reported at entry: its result is unknown.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use sensor_common::{EventKind, MODULE_AT_ENTRY, SyscallEvent, syscalls as nr};

use crate::kernel::{
    counters::guarded,
    ring::{reserve, send},
    task::{current_task, read},
    user::user_str,
};

/// x86_64 `struct pt_regs` offsets of the first three syscall arguments (di, si, dx).
const REGS_ARGS: [u32; 3] = [112, 104, 96];

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn module_sys_enter(ctx: RawTracePointContext) -> i32 {
    let id: u64 = ctx.arg(1);
    if id != nr::INIT_MODULE && id != nr::FINIT_MODULE {
        return 0;
    }
    guarded(EventKind::ModuleLoad, || try_module(&ctx, id));
    0
}

fn try_module(ctx: &RawTracePointContext, id: u64) -> Result<(), i64> {
    let kind = EventKind::ModuleLoad;
    let regs: u64 = ctx.arg(0);
    let mut args = [0u64; 6];
    let mut i = 0;
    while i < 3 {
        args[i] = read(regs as usize, REGS_ARGS[i])?;
        i += 1;
    }
    let Some(mut entry) = reserve::<SyscallEvent>(kind) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    let params = nr::module_params(id, &args).unwrap_or(0);
    unsafe {
        (*e).ret = 0;
        (*e).syscall = id as u32;
        (*e).args = args;
        (*e).aux = [MODULE_AT_ENTRY, 0];
        (*e).sock = Default::default();
        (*e).text_len = user_str(params, &raw mut (*e).text);
    }
    send(entry, current_task(), kind)
}
