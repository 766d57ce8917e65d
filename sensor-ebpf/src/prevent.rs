//! Which exec images blocking mode stops, decided once for both ways of stopping them: the
//! BPF LSM program denies the exec where the kernel runs BPF LSM (`lsm.rs`), and the exec
//! tracepoint kills the task before its first instruction everywhere else (`process.rs`).

use aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns;
use sensor_common::{DENIED_DROPPED, DENIED_UNLINKED};

use crate::{
    kernel::{
        files::{file_identity, file_name},
        globals::{blocking, in_blocking_scope, off},
        task::read_ptr,
    },
    maps::DROPPED,
};

/// Why the image of `bprm` (a `struct linux_binprm *`), executed by `task`, must not run
/// ([`DENIED_UNLINKED`], [`DENIED_DROPPED`]), or `None`. Unreadable kernel memory lets the
/// exec run: the detection from userspace still follows.
#[inline(always)]
pub fn doomed(task: usize, bprm: usize) -> Option<u32> {
    if !blocking() {
        return None;
    }
    let file = read_ptr(bprm, off().binprm_file).ok()?;
    let (ino, dev, nlink) = file_identity(file).ok()?;
    let reason = if nlink == 0 {
        if runc_clone(file) {
            return None;
        }
        DENIED_UNLINKED
    } else if dropped(ino, dev) {
        DENIED_DROPPED
    } else {
        return None;
    };
    in_blocking_scope(task).then_some(reason)
}

#[inline(always)]
fn dropped(ino: u64, dev: u32) -> bool {
    match unsafe { DROPPED.get([ino, u64::from(dev)]) } {
        Some(&deadline) => deadline >= unsafe { bpf_ktime_get_boot_ns() },
        None => false,
    }
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
