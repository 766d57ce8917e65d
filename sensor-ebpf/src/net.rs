//! Network activity: connect, accept, bind, listen (IPv4 and IPv6).
//!
//! Syscall tracepoints `syscalls/sys_{enter,exit}_<call>`. connect and bind report the
//! address the caller asked for (and the result: a non-blocking connect returns
//! -EINPROGRESS); accept and listen report the socket as the kernel holds it after the
//! call, read through the task's fd table, so no user buffer is needed.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{
    AF_INET, AF_INET6, EventKind, NetEvent, PendingCall, SockInfo, syscalls as nr,
};

use crate::{
    kernel::{
        files::fd_file,
        ring::{reserve, send},
        socket::{sock_info, user_sockaddr},
        task::current_task,
    },
    syscall,
};

#[tracepoint]
pub fn net_enter(ctx: TracePointContext) -> u32 {
    syscall::enter(&ctx, |_| true)
}

/// Syscalls whose report needs only the exit record: accept's socket is read from the
/// fd table through its result. Userspace attaches no entry program to them, which
/// spares each accepted connection a map write and a lookup.
pub const EXIT_ONLY: [u64; 2] = [nr::ACCEPT, nr::ACCEPT4];

#[tracepoint]
pub fn net_exit(ctx: TracePointContext) -> u32 {
    if EXIT_ONLY.contains(&syscall::syscall_nr(&ctx)) {
        syscall::exit_only(&ctx, kind_of, emit);
    } else {
        syscall::exit(&ctx, kind_of, emit);
    }
    0
}

fn kind_of(call: &PendingCall, ret: i64) -> Option<EventKind> {
    let kind = match call.nr {
        nr::CONNECT => EventKind::NetConnect,
        nr::ACCEPT | nr::ACCEPT4 => EventKind::NetAccept,
        nr::BIND => EventKind::NetBind,
        nr::LISTEN => EventKind::NetListen,
        _ => return None,
    };
    // Only connect reports failures: a refused or pending connection is itself telling.
    if ret < 0 && kind != EventKind::NetConnect {
        return None;
    }
    Some(kind)
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
            let mut wanted = SockInfo::default();
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
