//! What a hook may skip and what it must count. A hook reports nothing for the sensor's own
//! tasks or for a kind switched off; a record it could not make (`LOST`) or made with
//! fields it could not read (`ERRORS`) is counted per kind, never silently dropped.

use aya_ebpf::maps::PerCpuArray;
use sensor_common::EventKind;

use super::task::current_tgid;
use crate::maps::{ENABLED, ERRORS, IGNORED_TGIDS, LOST};

/// The body of a hook for one `kind`: skipped for the sensor's own tasks and when the kind
/// is off, otherwise run with a failed kernel read counted.
#[inline(always)]
pub fn guarded(kind: EventKind, body: impl FnOnce() -> Result<(), i64>) {
    if skip(kind) {
        return;
    }
    counted(kind, body);
}

/// Runs `body`, counting a failed kernel read against `kind`.
#[inline(always)]
pub fn counted(kind: EventKind, body: impl FnOnce() -> Result<(), i64>) {
    if body().is_err() {
        count_error(kind);
    }
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
pub fn count_lost(kind: EventKind) {
    bump(&LOST, kind);
}

#[inline(always)]
pub fn count_error(kind: EventKind) {
    bump(&ERRORS, kind);
}

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, kind: EventKind) {
    if let Some(p) = map.get_ptr_mut(kind as u32) {
        unsafe { *p += 1 };
    }
}
