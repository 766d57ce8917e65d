//! Kernel struct member offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust eBPF programs get no CO-RE relocations, so the daemon looks up the few offsets the
//! programs need at load time and passes them as a read-only global. aya-obj parses BTF
//! but keeps type lookups private; this module reads only what it needs: struct and union
//! members, descending into anonymous members (many fields of `task_struct`, `mm_struct`
//! and `sock_common` live inside anonymous unions).

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail};
use sensor_common::KernelOffsets;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
}

struct Type {
    kind: u32,
    name: String,
    /// Struct and union members; empty for other kinds.
    members: Vec<Member>,
    /// Referenced type for typedef/const/volatile/restrict/type_tag.
    target: u32,
}

/// The parsed type section: only what offset lookups need.
pub struct Btf {
    types: Vec<Type>,
    by_name: HashMap<String, u32>,
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")
            .context("reading /sys/kernel/btf/vmlinux (kernel built without BTF?)")?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self> {
        let u16_at = |o: usize| -> Result<u16> {
            Ok(u16::from_le_bytes(
                data.get(o..o + 2)
                    .ok_or_else(|| anyhow!("BTF truncated"))?
                    .try_into()?,
            ))
        };
        let u32_at = |o: usize| -> Result<u32> {
            Ok(u32::from_le_bytes(
                data.get(o..o + 4)
                    .ok_or_else(|| anyhow!("BTF truncated"))?
                    .try_into()?,
            ))
        };
        if u16_at(0)? != BTF_MAGIC {
            bail!("not little-endian BTF");
        }
        let hdr_len = u32_at(4)? as usize;
        let type_off = hdr_len + u32_at(8)? as usize;
        let type_len = u32_at(12)? as usize;
        let str_off = hdr_len + u32_at(16)? as usize;
        let str_len = u32_at(20)? as usize;
        let strings = data
            .get(str_off..str_off + str_len)
            .ok_or_else(|| anyhow!("BTF strings truncated"))?;
        let string = |o: u32| -> String {
            let s = &strings[(o as usize).min(strings.len())..];
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };

        // Type ids start at 1; slot 0 is `void`.
        let mut types = vec![Type {
            kind: 0,
            name: String::new(),
            members: vec![],
            target: 0,
        }];
        let mut pos = type_off;
        let end = type_off + type_len;
        while pos < end {
            let name_off = u32_at(pos)?;
            let info = u32_at(pos + 4)?;
            let size_or_type = u32_at(pos + 8)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            pos += 12;
            let mut members = Vec::new();
            let extra = match kind {
                1 => 4,  // int
                3 => 12, // array
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let off = u32_at(m + 8)?;
                        members.push(Member {
                            name: string(u32_at(m)?),
                            type_id: u32_at(m + 4)?,
                            bit_offset: if kind_flag { off & 0xff_ffff } else { off },
                        });
                    }
                    vlen * 12
                }
                6 => vlen * 8,   // enum
                13 => vlen * 8,  // func_proto
                14 => 4,         // var
                15 => vlen * 12, // datasec
                17 => 4,         // decl_tag
                19 => vlen * 12, // enum64
                _ => 0,
            };
            pos += extra;
            types.push(Type {
                kind,
                name: string(name_off),
                members,
                target: size_or_type,
            });
        }
        let mut by_name = HashMap::new();
        for (id, t) in types.iter().enumerate() {
            if (t.kind == KIND_STRUCT || t.kind == KIND_UNION) && !t.name.is_empty() {
                by_name.entry(t.name.clone()).or_insert(id as u32);
            }
        }
        Ok(Self { types, by_name })
    }

    /// Byte offset of `member` in struct `ty`, looking through anonymous members.
    pub fn offset(&self, ty: &str, member: &str) -> Result<u32> {
        let id = *self
            .by_name
            .get(ty)
            .ok_or_else(|| anyhow!("struct {ty} not in kernel BTF"))?;
        let bits = self
            .find(id, member, 0)
            .ok_or_else(|| anyhow!("member {ty}.{member} not in kernel BTF"))?;
        Ok(bits / 8)
    }

    fn find(&self, id: u32, member: &str, depth: u32) -> Option<u32> {
        let t = self.types.get(self.resolve(id) as usize)?;
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name == member {
                return Some(m.bit_offset);
            }
        }
        for m in t.members.iter().filter(|m| m.name.is_empty()) {
            if let Some(inner) = self.find(m.type_id, member, depth + 1) {
                return Some(m.bit_offset + inner);
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            match self.types.get(id as usize) {
                Some(t) if matches!(t.kind, 8..=11 | 18) => id = t.target,
                _ => break,
            }
        }
        id
    }
}

/// Every offset the programs use; a missing one is an error naming the member.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets> {
    let o = |t: &str, m: &str| btf.offset(t, m);
    Ok(KernelOffsets {
        task_real_parent: o("task_struct", "real_parent")?,
        task_group_leader: o("task_struct", "group_leader")?,
        task_tgid: o("task_struct", "tgid")?,
        task_pid: o("task_struct", "pid")?,
        task_start_boottime: o("task_struct", "start_boottime")?,
        task_comm: o("task_struct", "comm")?,
        task_mm: o("task_struct", "mm")?,
        task_cred: o("task_struct", "cred")?,
        task_files: o("task_struct", "files")?,
        task_signal: o("task_struct", "signal")?,
        task_exit_code: o("task_struct", "exit_code")?,
        signal_live: o("signal_struct", "live")?,
        mm_arg_start: o("mm_struct", "arg_start")?,
        mm_arg_end: o("mm_struct", "arg_end")?,
        mm_env_start: o("mm_struct", "env_start")?,
        mm_env_end: o("mm_struct", "env_end")?,
        mm_exe_file: o("mm_struct", "exe_file")?,
        cred_uid: o("cred", "uid")?,
        cred_gid: o("cred", "gid")?,
        cred_euid: o("cred", "euid")?,
        cred_egid: o("cred", "egid")?,
        binprm_file: o("linux_binprm", "file")?,
        binprm_filename: o("linux_binprm", "filename")?,
        file_inode: o("file", "f_inode")?,
        file_mode: o("file", "f_mode")?,
        file_dentry: o("file", "f_path")? + o("path", "dentry")?,
        file_private_data: o("file", "private_data")?,
        dentry_name: o("dentry", "d_name")? + o("qstr", "name")?,
        dentry_parent: o("dentry", "d_parent")?,
        inode_ino: o("inode", "i_ino")?,
        inode_sb: o("inode", "i_sb")?,
        inode_nlink: o("inode", "i_nlink")?,
        inode_mode: o("inode", "i_mode")?,
        sb_dev: o("super_block", "s_dev")?,
        files_fdt: o("files_struct", "fdt")?,
        fdt_max_fds: o("fdtable", "max_fds")?,
        fdt_fd: o("fdtable", "fd")?,
        socket_sk: o("socket", "sk")?,
        sk_family: o("sock_common", "skc_family")?,
        sk_num: o("sock_common", "skc_num")?,
        sk_dport: o("sock_common", "skc_dport")?,
        sk_daddr: o("sock_common", "skc_daddr")?,
        sk_rcv_saddr: o("sock_common", "skc_rcv_saddr")?,
        sk_v6_daddr: o("sock_common", "skc_v6_daddr")?,
        sk_v6_rcv_saddr: o("sock_common", "skc_v6_rcv_saddr")?,
        sk_type: o("sock", "sk_type")?,
        sk_protocol: o("sock", "sk_protocol")?,
        task_fs: o("task_struct", "fs")?,
        fs_root: o("fs_struct", "root")?,
        fs_pwd: o("fs_struct", "pwd")?,
        path_mnt: o("path", "mnt")?,
        path_dentry: o("path", "dentry")?,
        file_path: o("file", "f_path")?,
        mount_mnt: o("mount", "mnt")?,
        mount_parent: o("mount", "mnt_parent")?,
        mount_mountpoint: o("mount", "mnt_mountpoint")?,
        vfsmount_root: o("vfsmount", "mnt_root")?,
        dentry_inode: o("dentry", "d_inode")?,
        inode_ctime_sec: ["i_ctime_sec", "__i_ctime", "i_ctime"]
            .iter()
            .find_map(|m| o("inode", m).ok())
            .ok_or_else(|| anyhow!("member inode.i_ctime_sec not in kernel BTF"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_offsets_in_running_kernel() {
        let btf = Btf::from_sys_fs().unwrap();
        let off = kernel_offsets(&btf).unwrap();
        // Sanity rather than exact values: fields inside big structs are far from 0, and
        // sock_common starts with the address pair.
        assert!(off.task_tgid > 0 && off.task_comm > off.task_pid);
        assert_eq!(off.sk_daddr, 0);
        assert_eq!(off.sk_rcv_saddr, 4);
        assert!(btf.offset("task_struct", "no_such_member").is_err());
        // struct mount is private to fs/: it must still be in BTF for mount crossing.
        assert!(off.mount_mnt > off.mount_parent && off.inode_ctime_sec > 0);
    }
}
