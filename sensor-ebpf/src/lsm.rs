//! Exec denial through BPF LSM, where the kernel runs it (`bpf` in the active LSM list and
//! BPF trampolines allowed): blocking mode refuses the exec of a [`doomed`] image with
//! EPERM, so the caller keeps running its old image and the new one never maps. Userspace
//! loads this program only in blocking mode and only where it attaches; elsewhere the
//! exec tracepoint kills instead (`process.rs`).
//!
//! Hook: `lsm/bprm_check_security(struct linux_binprm *bprm)`, stable since BPF LSM
//! appeared in 5.7. The kernel calls it for the file being executed and again for each
//! interpreter (`#!` scripts, binfmt_misc), so a doomed script or interpreter is refused
//! too. The last argument is the verdict of the BPF LSM programs before this one.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use sensor_common::{EventKind, ExecDeniedEvent};

use crate::{
    kernel::{
        counters::{counted, enabled, ignored},
        ring::{reserve, send},
        task::current_task,
    },
    prevent::doomed,
    process::read_image,
};

const EPERM: i32 = 1;

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let bprm: usize = ctx.arg::<u64>(0) as usize;
    let earlier: i32 = ctx.arg(1);
    if earlier != 0 {
        return earlier;
    }
    if ignored() {
        return 0;
    }
    let task = current_task();
    let Some(reason) = doomed(task, bprm) else {
        return 0;
    };
    let kind = EventKind::ProcessExecDenied;
    // The exec is refused whether or not its record can be made.
    if enabled(kind) {
        counted(kind, || report(task, bprm, reason));
    }
    -EPERM
}

fn report(task: usize, bprm: usize, reason: u32) -> Result<(), i64> {
    let kind = EventKind::ProcessExecDenied;
    let Some(mut entry) = reserve::<ExecDeniedEvent>(kind) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    unsafe {
        (*e).reason = reason;
        (*e)._pad = 0;
    }
    let image = read_image(bprm, unsafe { &raw mut (*e).image });
    send(entry, task, kind).and(image)
}
