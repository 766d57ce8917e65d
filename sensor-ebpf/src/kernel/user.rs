//! Copies out of user memory, and string copies from either side, sized for the verifier.

use core::ffi::c_void;

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
