//! Network activity: connect, accept, bind, listen (IPv4 and IPv6).
//!
//! Syscall tracepoints `syscalls/sys_{enter,exit}_<call>`. connect and bind report the
//! address the caller asked for (and the result: a non-blocking connect returns
//! -EINPROGRESS); accept and listen report the socket as the kernel holds it after the
//! call, read through the task's fd table, so no user buffer is needed.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{EventKind, NetEvent, PendingCall, syscalls as nr};

use crate::{
    kernel::{
        count_error, current_task, enabled, fd_file, ignored, reserve, send, sock_info,
        user_sockaddr,
    },
    syscall::{entry_args, exit_ret, stash, take},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[tracepoint]
pub fn net_enter(ctx: TracePointContext) -> u32 {
    if ignored() {
        return 0;
    }
    if let Ok(call) = entry_args(&ctx) {
        stash(&call);
    }
    0
}

#[tracepoint]
pub fn net_exit(ctx: TracePointContext) -> u32 {
    let Some(call) = take() else { return 0 };
    let ret = exit_ret(&ctx);
    let kind = match call.nr {
        nr::CONNECT => EventKind::NetConnect,
        nr::ACCEPT | nr::ACCEPT4 => EventKind::NetAccept,
        nr::BIND => EventKind::NetBind,
        nr::LISTEN => EventKind::NetListen,
        _ => return 0,
    };
    if !enabled(kind) {
        return 0;
    }
    // Only connect reports failures: a refused or pending connection is itself telling.
    if ret < 0 && kind != EventKind::NetConnect {
        return 0;
    }
    if emit(kind, &call, ret).is_err() {
        count_error(kind);
    }
    0
}

fn emit(kind: EventKind, call: &PendingCall, ret: i64) -> Result<(), i64> {
    let Some(mut entry) = reserve::<NetEvent>(kind) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    let task = current_task();
    let fd = match kind {
        EventKind::NetAccept => ret,
        _ => call.args[0] as i64,
    };
    unsafe {
        (*e).ret = ret;
        (*e).syscall = call.nr as u32;
        (*e).fd = fd as i32;
        (*e).backlog = if kind == EventKind::NetListen {
            call.args[1] as u32
        } else {
            0
        };
        (*e)._pad = 0;
    }
    let sock = unsafe { &raw mut (*e).sock };
    // What the socket holds (type, protocol, local port) comes first; for connect and bind
    // the requested address then overrides the remote end.
    let r = sock_info(fd_file(task, fd), sock);
    let family = match kind {
        EventKind::NetConnect | EventKind::NetBind => {
            let mut wanted = sensor_common::SockInfo::default();
            let fam = user_sockaddr(call.args[1], &mut wanted).unwrap_or(0);
            unsafe {
                (*sock).family = fam;
                if kind == EventKind::NetConnect {
                    (*sock).rport = wanted.rport;
                    (*sock).raddr = wanted.raddr;
                } else {
                    (*sock).lport = wanted.rport;
                    (*sock).laddr = wanted.raddr;
                    (*sock).rport = 0;
                    (*sock).raddr = [0; 16];
                }
            }
            fam
        }
        _ => unsafe { (*sock).family },
    };
    if family != AF_INET && family != AF_INET6 {
        entry.discard(0);
        return Ok(());
    }
    let h = send(entry, task, kind);
    h.and(r)
}
