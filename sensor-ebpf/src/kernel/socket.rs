//! Sockets: what the kernel holds for a socket file, and the address a caller passed.

use sensor_common::{AF_INET, AF_INET6, SockInfo};

use super::{
    globals::off,
    task::{read, read_ptr},
    user::read_user,
};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// Describes the socket behind `file`; `family` stays 0 if it is not one.
#[inline(always)]
pub fn sock_info(file: usize, out: *mut SockInfo) -> Result<(), i64> {
    unsafe {
        (*out) = SockInfo::default();
    }
    let sk = sock_of(file)?;
    if sk == 0 {
        return Ok(());
    }
    sk_info(sk, out)
}

/// The `struct sock` behind `file`, or 0 if `file` is not a socket.
#[inline(always)]
pub fn sock_of(file: usize) -> Result<usize, i64> {
    let o = off();
    if file == 0 {
        return Ok(0);
    }
    let inode = read_ptr(file, o.file_inode)?;
    let mode: u16 = read(inode, o.inode_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return Ok(0);
    }
    let socket = read_ptr(file, o.file_private_data)?;
    read_ptr(socket, o.socket_sk)
}

/// The socket type (`SOCK_STREAM`, `SOCK_DGRAM`, ...) of `sk`.
#[inline(always)]
pub fn sk_type(sk: usize) -> Result<u16, i64> {
    read(sk, off().sk_type)
}

/// Describes `sk` (a non-null `struct sock`) into `out`.
#[inline(always)]
pub fn sk_info(sk: usize, out: *mut SockInfo) -> Result<(), i64> {
    let o = off();
    // struct sock_common opens with daddr, rcv_saddr, hash, dport, num, family (since
    // 2.6.x): one read of those 18 bytes when the offsets say so.
    let head = o.sk_daddr;
    let (family, d, s, dport, num) = if o.sk_rcv_saddr == head + 4
        && o.sk_dport == head + 12
        && o.sk_num == head + 14
        && o.sk_family == head + 16
    {
        let b: [u8; 18] = read(sk, head)?;
        (
            u16::from_ne_bytes([b[16], b[17]]),
            [b[0], b[1], b[2], b[3]],
            [b[4], b[5], b[6], b[7]],
            u16::from_ne_bytes([b[12], b[13]]),
            u16::from_ne_bytes([b[14], b[15]]),
        )
    } else {
        (
            read(sk, o.sk_family)?,
            read(sk, o.sk_daddr)?,
            read(sk, o.sk_rcv_saddr)?,
            read(sk, o.sk_dport)?,
            read(sk, o.sk_num)?,
        )
    };
    unsafe {
        (*out).family = family;
        // Two u16 in a row since 5.6 (bitfields before, which BTF offsets cannot name).
        if o.sk_protocol == o.sk_type + 2 {
            let tp: [u16; 2] = read(sk, o.sk_type)?;
            (*out).sock_type = tp[0];
            (*out).protocol = tp[1];
        } else {
            (*out).sock_type = read(sk, o.sk_type)?;
            (*out).protocol = read(sk, o.sk_protocol)?;
        }
        (*out).lport = num;
        (*out).rport = u16::from_be(dport);
        if family == AF_INET {
            (*out).raddr = [d[0], d[1], d[2], d[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            (*out).laddr = [s[0], s[1], s[2], s[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        } else if family == AF_INET6 {
            (*out).raddr = read(sk, o.sk_v6_daddr)?;
            (*out).laddr = read(sk, o.sk_v6_rcv_saddr)?;
        }
    }
    Ok(())
}

/// Parses a user `struct sockaddr` into `out` (family, port, address); AF_INET/AF_INET6 only.
#[inline(always)]
pub fn user_sockaddr(addr: u64, out: *mut SockInfo) -> Result<u16, i64> {
    if addr == 0 {
        return Ok(0);
    }
    let family: u16 = read_user(addr)?;
    let port: u16 = read_user(addr + 2)?;
    unsafe {
        (*out).family = family;
        (*out).rport = u16::from_be(port);
        if family == AF_INET {
            let a: [u8; 4] = read_user(addr + 4)?;
            (*out).raddr = [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        } else if family == AF_INET6 {
            (*out).raddr = read_user(addr + 8)?;
        }
    }
    Ok(family)
}
