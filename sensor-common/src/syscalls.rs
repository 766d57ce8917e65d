//! x86_64 syscall numbers of the calls the sensor follows.
//!
//! Syscall tracepoints carry the number in `__syscall_nr`; one exit program per hook family
//! dispatches on it, so the numbers are part of the ABI between the two sides. Each call is
//! written once in the table below: its number, its tracepoint name
//! (`syscalls/sys_{enter,exit}_<name>`) and the hook family whose programs follow it.

use crate::{HookFamily, str_eq};

/// A followed syscall, as the table writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    pub nr: u64,
    pub name: &'static str,
    pub family: HookFamily,
}

macro_rules! syscalls {
    ($($konst:ident = $nr:literal => $name:literal, $family:ident;)*) => {
        $(pub const $konst: u64 = $nr;)*

        /// Every followed syscall, grouped by family in the order their hooks are attached.
        pub const ALL: [Syscall; [$($nr),*].len()] = [
            $(Syscall { nr: $nr, name: $name, family: HookFamily::$family },)*
        ];

        /// Name of a followed syscall, for display.
        pub const fn name(nr: u64) -> &'static str {
            match nr {
                $($nr => $name,)*
                _ => "unknown",
            }
        }
    };
}

syscalls! {
    OPEN = 2 => "open", File;
    OPENAT = 257 => "openat", File;
    OPENAT2 = 437 => "openat2", File;
    CREAT = 85 => "creat", File;
    RENAME = 82 => "rename", File;
    RENAMEAT = 264 => "renameat", File;
    RENAMEAT2 = 316 => "renameat2", File;
    UNLINK = 87 => "unlink", File;
    UNLINKAT = 263 => "unlinkat", File;
    CHMOD = 90 => "chmod", File;
    FCHMOD = 91 => "fchmod", File;
    FCHMODAT = 268 => "fchmodat", File;
    FCHMODAT2 = 452 => "fchmodat2", File;
    CHOWN = 92 => "chown", File;
    FCHOWN = 93 => "fchown", File;
    LCHOWN = 94 => "lchown", File;
    FCHOWNAT = 260 => "fchownat", File;
    TRUNCATE = 76 => "truncate", File;
    FTRUNCATE = 77 => "ftruncate", File;
    LINK = 86 => "link", File;
    LINKAT = 265 => "linkat", File;
    SYMLINK = 88 => "symlink", File;
    SYMLINKAT = 266 => "symlinkat", File;
    UTIME = 132 => "utime", File;
    UTIMES = 235 => "utimes", File;
    FUTIMESAT = 261 => "futimesat", File;
    UTIMENSAT = 280 => "utimensat", File;
    CONNECT = 42 => "connect", Net;
    ACCEPT = 43 => "accept", Net;
    ACCEPT4 = 288 => "accept4", Net;
    BIND = 49 => "bind", Net;
    LISTEN = 50 => "listen", Net;
    SENDTO = 44 => "sendto", Dns;
    SENDMSG = 46 => "sendmsg", Dns;
    SENDMMSG = 307 => "sendmmsg", Dns;
    PTRACE = 101 => "ptrace", Security;
    INIT_MODULE = 175 => "init_module", Security;
    FINIT_MODULE = 313 => "finit_module", Security;
    BPF = 321 => "bpf", Security;
    MEMFD_CREATE = 319 => "memfd_create", Security;
    SETUID = 105 => "setuid", Security;
    SETGID = 106 => "setgid", Security;
    SETREUID = 113 => "setreuid", Security;
    SETREGID = 114 => "setregid", Security;
    SETRESUID = 117 => "setresuid", Security;
    SETRESGID = 119 => "setresgid", Security;
    DUP2 = 33 => "dup2", Security;
    DUP3 = 292 => "dup3", Security;
    MPROTECT = 10 => "mprotect", Security;
    MMAP = 9 => "mmap", Security;
    KILL = 62 => "kill", Security;
    TKILL = 200 => "tkill", Security;
    TGKILL = 234 => "tgkill", Security;
    PROCESS_VM_WRITEV = 311 => "process_vm_writev", Security;
}

/// Tracepoint names of the syscalls one family follows, in attach order.
pub fn names_of(family: HookFamily) -> impl Iterator<Item = &'static str> {
    ALL.into_iter()
        .filter(move |s| s.family == family)
        .map(|s| s.name)
}

/// The user address of a module load's parameter string (`init_module`, `finit_module`),
/// for both the exit hook and the raw-syscall fallback; `None` for other calls.
pub const fn module_params(nr: u64, args: &[u64; 6]) -> Option<u64> {
    match nr {
        INIT_MODULE => Some(args[2]),
        FINIT_MODULE => Some(args[1]),
        _ => None,
    }
}

// No number or name is written twice (a repeated number would also make `name` lie).
const _: () = {
    let mut i = 0;
    while i < ALL.len() {
        let mut j = i + 1;
        while j < ALL.len() {
            assert!(ALL[i].nr != ALL[j].nr);
            assert!(!str_eq(ALL[i].name, ALL[j].name));
            j += 1;
        }
        i += 1;
    }
};
