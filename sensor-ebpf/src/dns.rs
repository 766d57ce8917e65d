//! DNS queries: UDP datagrams sent to port 53, captured from the sending syscall.
//!
//! Syscall tracepoints `syscalls/sys_enter_{sendto,sendmsg,sendmmsg}`. The destination is
//! the address passed to sendto, or else the peer of a connected socket (glibc's resolver
//! connects and then uses sendmmsg/send). Only the first datagram of a sendmmsg and the
//! first iovec of a message are read: a query fits in them. The query name is parsed in
//! userspace.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{DnsEvent, EventKind, SockInfo, syscalls as nr};

use crate::{
    kernel::{
        counters::guarded,
        files::fd_file,
        ring::{reserve, send},
        socket::{sk_info, sk_type, sock_of, user_sockaddr},
        task::current_task,
        user::{read_user, read_user_bytes},
    },
    syscall::entry_args,
};

const SOCK_DGRAM: u16 = 2;
const DNS_PORT: u16 = 53;

#[tracepoint]
pub fn dns_enter(ctx: TracePointContext) -> u32 {
    guarded(EventKind::DnsQuery, || try_dns(&ctx));
    0
}

fn try_dns(ctx: &TracePointContext) -> Result<(), i64> {
    let call = entry_args(ctx)?;
    let a = &call.args;
    let task = current_task();
    // Every TCP send comes through here: its type is checked before anything else of the
    // socket is read.
    let sk = sock_of(fd_file(task, a[0] as i64))?;
    if sk == 0 || sk_type(sk)? != SOCK_DGRAM {
        return Ok(());
    }
    let mut sock = SockInfo::default();
    sk_info(sk, &mut sock)?;
    // (payload, length) of the first buffer, and an explicit destination if any.
    let (buf, len, dest) = match call.nr {
        nr::SENDTO => (a[1], a[2], a[4]),
        nr::SENDMSG => first_iov(a[1])?,
        nr::SENDMMSG => first_iov(a[1])?,
        _ => return Ok(()),
    };
    if dest != 0 {
        let mut to = SockInfo::default();
        if user_sockaddr(dest, &mut to)? != 0 {
            sock.rport = to.rport;
            sock.raddr = to.raddr;
        }
    }
    if sock.rport != DNS_PORT || buf == 0 {
        return Ok(());
    }
    let Some(mut entry) = reserve::<DnsEvent>(EventKind::DnsQuery) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    let copied = read_user_bytes(unsafe { &raw mut (*e).payload }, len, buf).unwrap_or(0);
    unsafe {
        (*e).syscall = call.nr as u32;
        (*e).fd = a[0] as i32;
        (*e).len = copied;
        (*e)._pad = 0;
        (*e).sock = sock;
    }
    send(entry, task, EventKind::DnsQuery)
}

/// `(iov_base, iov_len, msg_name)` of a `struct msghdr` (also the head of `struct mmsghdr`).
fn first_iov(msg: u64) -> Result<(u64, u64, u64), i64> {
    let name: u64 = read_user(msg)?;
    let iov: u64 = read_user(msg + 16)?;
    let iovlen: u64 = read_user(msg + 24)?;
    if iov == 0 || iovlen == 0 {
        return Ok((0, 0, name));
    }
    let base: u64 = read_user(iov)?;
    let len: u64 = read_user(iov + 8)?;
    Ok((base, len, name))
}
