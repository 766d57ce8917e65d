//! Decoder for `sensor-ebpf/src/security.rs`.

use sensor_common::{EventKind, SyscallEvent, syscalls as nr};

use super::{DecodeError, net::sock_to_net, read_record, text};
use crate::proto;

pub fn decode(kind: EventKind, bytes: &[u8], event: &mut proto::Event) -> Result<(), DecodeError> {
    let e: SyscallEvent = read_record(bytes)?;
    let a = e.args;
    let syscall = nr::name(e.syscall as u64).to_string();
    let msg = text(&e.text, e.text_len);
    match kind {
        EventKind::Ptrace if e.syscall as u64 == nr::PROCESS_VM_WRITEV => {
            event.ptrace = Some(proto::PtraceInfo {
                request: "process_vm_writev".into(),
                request_code: 0,
                target_pid: a[0] as u32,
                result: e.ret,
            })
        }
        EventKind::Ptrace => {
            event.ptrace = Some(proto::PtraceInfo {
                request: ptrace_request(a[0]).to_string(),
                request_code: a[0] as u32,
                target_pid: a[1] as u32,
                result: e.ret,
            })
        }
        EventKind::Signal => {
            let (target, sig) = match e.syscall as u64 {
                nr::TGKILL => (a[0], a[2]),
                _ => (a[0], a[1]),
            };
            event.signal = Some(proto::SignalInfo {
                syscall,
                target_pid: target as u32,
                signal: sig as i32,
                result: e.ret,
            })
        }
        EventKind::ModuleLoad => {
            event.module = Some(proto::ModuleInfo {
                syscall,
                params: msg,
                result: e.ret,
                at_entry: e.aux[0] == sensor_common::MODULE_AT_ENTRY,
            })
        }
        EventKind::BpfLoad => {
            event.bpf = Some(proto::BpfInfo {
                prog_type: e.aux[0],
                insn_count: e.aux[1],
                prog_name: msg,
                result: e.ret,
            })
        }
        EventKind::MemfdCreate => {
            event.memfd = Some(proto::MemfdInfo {
                name: msg,
                flags: a[1] as u32,
                result: e.ret,
            })
        }
        EventKind::Setuid | EventKind::Setgid => {
            let n = match e.syscall as u64 {
                nr::SETUID | nr::SETGID => 1,
                nr::SETREUID | nr::SETREGID => 2,
                _ => 3,
            };
            let ids = a[..n].iter().map(|&v| v as u32 as i32 as i64).collect();
            event.setid = Some(proto::SetIdInfo {
                syscall,
                ids,
                result: e.ret,
            })
        }
        EventKind::FdDup => {
            let socket = (e.sock.family != 0).then(|| sock_to_net(&e.sock));
            event.fd_dup = Some(proto::FdDupInfo {
                syscall,
                oldfd: a[0] as i32,
                newfd: a[1] as i32,
                result: e.ret,
                socket,
            })
        }
        EventKind::MprotectExec => {
            event.mem_exec = Some(proto::MemExecInfo {
                syscall,
                addr: a[0],
                len: a[1],
                prot: a[2] as u32,
                flags: if e.syscall as u64 == nr::MMAP {
                    a[3] as u32
                } else {
                    0
                },
                result: e.ret,
            })
        }
        _ => {}
    }
    Ok(())
}

fn ptrace_request(code: u64) -> &'static str {
    match code {
        0 => "PTRACE_TRACEME",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        13 => "PTRACE_SETREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        _ => "other",
    }
}
