//! Decoder for `sensor-ebpf/src/net.rs` and `sensor-ebpf/src/dns.rs`.

use std::net::{Ipv4Addr, Ipv6Addr};

use sensor_common::{AF_INET, AF_INET6, DnsEvent, NetEvent, SockInfo, syscalls};

use super::{DecodeError, read_record};
use crate::proto;

pub fn socket_call(bytes: &[u8], event: &mut proto::Event) -> Result<(), DecodeError> {
    let e: NetEvent = read_record(bytes)?;
    let mut net = sock_to_net(&e.sock);
    net.result = e.ret;
    net.backlog = e.backlog;
    net.fd = e.fd;
    net.syscall = syscalls::name(e.syscall as u64).to_string();
    event.net = Some(net);
    Ok(())
}

/// The socket as source (local) and destination (remote) endpoints.
pub fn sock_to_net(s: &SockInfo) -> proto::NetInfo {
    // An all-zero address on port 0 is "no endpoint" (a listening socket's peer).
    let addr = |a: &[u8; 16], port: u16| match s.family {
        _ if port == 0 && a.iter().all(|&b| b == 0) => String::new(),
        AF_INET => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        AF_INET6 => Ipv6Addr::from(*a).to_string(),
        _ => String::new(),
    };
    proto::NetInfo {
        protocol: match (s.protocol, s.sock_type) {
            (6, _) | (0, 1) => "tcp".into(),
            (17, _) | (0, 2) => "udp".into(),
            (p, _) => p.to_string(),
        },
        family: match s.family {
            AF_INET => "inet".into(),
            AF_INET6 => "inet6".into(),
            f => f.to_string(),
        },
        src_addr: addr(&s.laddr, s.lport),
        src_port: s.lport as u32,
        dst_addr: addr(&s.raddr, s.rport),
        dst_port: s.rport as u32,
        ..Default::default()
    }
}

pub fn dns(bytes: &[u8], event: &mut proto::Event) -> Result<(), DecodeError> {
    let e: DnsEvent = read_record(bytes)?;
    let len = (e.len as usize).min(e.payload.len());
    let (query, qtype) = parse_query(&e.payload[..len]).unwrap_or_default();
    let net = sock_to_net(&e.sock);
    event.dns = Some(proto::DnsInfo {
        query,
        qtype: qtype as u32,
        server: net.dst_addr,
        server_port: net.dst_port,
    });
    Ok(())
}

/// First question of a DNS message: (name, qtype). `None` if it does not parse.
pub fn parse_query(msg: &[u8]) -> Option<(String, u16)> {
    let qdcount = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    if qdcount == 0 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression pointers never appear in a query's first name.
        if len > 63 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    Some((labels.join("."), qtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_name() {
        let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x1c\x00\x01");
        assert_eq!(parse_query(&m), Some(("example.com".to_string(), 28)));
        assert_eq!(parse_query(&m[..15]), None);
        assert_eq!(parse_query(&[]), None);
    }
}
