//! The current task and reads of kernel memory at a patched offset.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel};

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
