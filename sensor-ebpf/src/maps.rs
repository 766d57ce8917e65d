//! Maps shared by every hook family.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{FileEvent, KIND_SLOTS, PendingCall, SENSITIVE_NAME_LEN};

/// Every record of every kind, in the order the kernel produced them: one buffer keeps a
/// process's exec ahead of its file and network activity. Userspace may resize it.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Where a file record is built before the bytes it uses are copied to `EVENTS`: its
/// size depends on its paths, known only once they are walked. Syscall tracepoint
/// programs run with preemption disabled and do not nest on a CPU, so one slot per CPU
/// is never shared by two records at once.
#[map]
pub static FILE_SCRATCH: PerCpuArray<FileEvent> = PerCpuArray::with_max_entries(1, 0);

/// Records that did not fit in `EVENTS`, per kind: loss is counted, never silent.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS as u32, 0);

/// Kernel reads that failed while building a record, per kind (the record is still sent).
#[map]
pub static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS as u32, 0);

/// Per-kind switch written by userspace at start-up: non-zero means report.
#[map]
pub static ENABLED: Array<u32> = Array::with_max_entries(KIND_SLOTS as u32, 0);

/// Thread groups whose activity is not reported: the sensor's own processes.
#[map]
pub static IGNORED_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

/// Syscall arguments saved at entry, keyed by pid_tgid, consumed at exit. LRU so a call
/// whose exit never fires (task killed mid-call) cannot fill the map.
#[map]
pub static PENDING: LruHashMap<u64, PendingCall> = LruHashMap::with_max_entries(16384, 0);

/// File names whose successful opens for reading are reported (`file_read`): shadow
/// files, SSH private keys. Filled by userspace.
#[map]
pub static SENSITIVE_NAMES: HashMap<[u8; SENSITIVE_NAME_LEN], u8> =
    HashMap::with_max_entries(256, 0);

/// Wall-clock minus boot-time nanoseconds, one entry: inode change times are wall-clock,
/// BPF reads only boot-relative clocks. Written by userspace before the programs attach and
/// refreshed every few seconds, since the wall clock can be stepped.
#[map]
pub static WALL_CLOCK: Array<u64> = Array::with_max_entries(1, 0);

/// Thread groups whose signals are reported (`signal` events): the sensor and auditd.
#[map]
pub static PROTECTED_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

/// Exec flags (`EXEC_KILLED`, `EXEC_DROPPED`) decided by `exec_verdict` for the exec
/// record `sched_process_exec` writes right after it, by pid_tgid. LRU: an entry whose
/// record never came (exec program not attached) cannot fill it.
#[map]
pub static EXEC_VERDICTS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(1024, 0);
