//! Security-relevant calls: ptrace and process_vm_writev, kernel module loads, BPF program
//! loads, memfd_create, the set*id family, dup2/dup3 onto stdin/stdout/stderr, executable
//! anonymous memory (mmap or mprotect with PROT_EXEC), and signals sent to protected
//! processes (the sensor, auditd).
//!
//! Syscall tracepoints `syscalls/sys_{enter,exit}_<call>`. Entry filters keep the map
//! traffic to the calls that matter (ptrace requests that attach or write, dups onto fds
//! 0-2, PROT_EXEC requests); the exit reports them with their result.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{EventKind, PendingCall, SyscallEvent, syscalls as nr};

use crate::{
    kernel::{
        files::fd_file,
        ring::{reserve, send},
        socket::sock_info,
        task::current_task,
        user::{read_user, user_str},
    },
    maps::PROTECTED_TGIDS,
    syscall,
};

const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;
const BPF_PROG_LOAD: u64 = 5;
/// Requests that take control of or write into another process.
const PTRACE_REPORTED: [u64; 9] = [0, 4, 5, 6, 13, 15, 16, 0x4205, 0x4206];

/// Whether `pid` (a thread group or one of its threads' ids) is protected. Thread ids of
/// a protected group other than its leader are not known here; signals go to the group.
#[inline(always)]
fn protected(pid: u64) -> bool {
    let pid = pid as i64;
    pid > 0 && unsafe { PROTECTED_TGIDS.get(pid as u32) }.is_some()
}

#[tracepoint]
pub fn security_enter(ctx: TracePointContext) -> u32 {
    syscall::enter(&ctx, |call| {
        let a = &call.args;
        match call.nr {
            nr::PTRACE => PTRACE_REPORTED.contains(&a[0]),
            nr::DUP2 | nr::DUP3 => a[1] <= 2,
            nr::MPROTECT => a[2] & PROT_EXEC != 0,
            nr::MMAP => a[2] & PROT_EXEC != 0 && a[3] & MAP_ANONYMOUS != 0,
            nr::BPF => a[0] == BPF_PROG_LOAD,
            // Signals matter only when aimed at a protected process (and sig 0 only probes).
            nr::KILL | nr::TKILL => protected(a[0]) && a[1] != 0,
            nr::TGKILL => protected(a[0]) && a[2] != 0,
            _ => true,
        }
    })
}

#[tracepoint]
pub fn security_exit(ctx: TracePointContext) -> u32 {
    syscall::exit(&ctx, kind_of, emit);
    0
}

/// Failures are reported too: a refused ptrace or module load is itself telling.
fn kind_of(call: &PendingCall, _ret: i64) -> Option<EventKind> {
    Some(match call.nr {
        nr::PTRACE | nr::PROCESS_VM_WRITEV => EventKind::Ptrace,
        nr::INIT_MODULE | nr::FINIT_MODULE => EventKind::ModuleLoad,
        nr::BPF => EventKind::BpfLoad,
        nr::MEMFD_CREATE => EventKind::MemfdCreate,
        nr::SETUID | nr::SETREUID | nr::SETRESUID => EventKind::Setuid,
        nr::SETGID | nr::SETREGID | nr::SETRESGID => EventKind::Setgid,
        nr::DUP2 | nr::DUP3 => EventKind::FdDup,
        nr::MPROTECT | nr::MMAP => EventKind::MprotectExec,
        nr::KILL | nr::TKILL | nr::TGKILL => EventKind::Signal,
        _ => return None,
    })
}

fn emit(kind: EventKind, call: &PendingCall, ret: i64) -> Result<(), i64> {
    let Some(mut entry) = reserve::<SyscallEvent>(kind) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    let task = current_task();
    let a = &call.args;
    unsafe {
        (*e).ret = ret;
        (*e).syscall = call.nr as u32;
        (*e).args = *a;
        (*e).aux = [0; 2];
        (*e).text_len = 0;
    }
    let sock = unsafe { &raw mut (*e).sock };
    let mut r = sock_info(0, sock);
    if let Some(params) = nr::module_params(call.nr, a) {
        unsafe { (*e).text_len = user_str(params, &raw mut (*e).text) };
    }
    match call.nr {
        nr::MEMFD_CREATE => unsafe { (*e).text_len = user_str(a[0], &raw mut (*e).text) },
        nr::BPF => {
            // union bpf_attr, BPF_PROG_LOAD: prog_type @0, insn_cnt @4, prog_name[16] @48.
            let head: [u32; 2] = read_user(a[1]).unwrap_or([0; 2]);
            let name: [u8; 16] = read_user(a[1] + 48).unwrap_or([0; 16]);
            unsafe {
                (*e).aux = head;
                let mut n = 0;
                while n < 16 && name[n] != 0 {
                    (*e).text[n] = name[n];
                    n += 1;
                }
                (*e).text_len = n as u32;
            }
        }
        nr::DUP2 | nr::DUP3 => r = sock_info(fd_file(task, a[0] as i64), sock),
        _ => {}
    }
    let h = send(entry, task, kind);
    h.and(r)
}
