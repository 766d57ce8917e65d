//! x86_64 syscall numbers of the calls the sensor follows.
//!
//! Syscall tracepoints carry the number in `__syscall_nr`; one exit program per hook family
//! dispatches on it, so the numbers are part of the ABI between the two sides.

pub const MMAP: u64 = 9;
pub const MPROTECT: u64 = 10;
pub const DUP2: u64 = 33;
pub const CONNECT: u64 = 42;
pub const ACCEPT: u64 = 43;
pub const SENDTO: u64 = 44;
pub const SENDMSG: u64 = 46;
pub const BIND: u64 = 49;
pub const LISTEN: u64 = 50;
pub const OPEN: u64 = 2;
pub const TRUNCATE: u64 = 76;
pub const FTRUNCATE: u64 = 77;
pub const RENAME: u64 = 82;
pub const CREAT: u64 = 85;
pub const LINK: u64 = 86;
pub const UNLINK: u64 = 87;
pub const SYMLINK: u64 = 88;
pub const CHMOD: u64 = 90;
pub const FCHMOD: u64 = 91;
pub const CHOWN: u64 = 92;
pub const FCHOWN: u64 = 93;
pub const LCHOWN: u64 = 94;
pub const PTRACE: u64 = 101;
pub const SETUID: u64 = 105;
pub const SETGID: u64 = 106;
pub const SETREUID: u64 = 113;
pub const SETREGID: u64 = 114;
pub const SETRESUID: u64 = 117;
pub const SETRESGID: u64 = 119;
pub const INIT_MODULE: u64 = 175;
pub const OPENAT: u64 = 257;
pub const FCHOWNAT: u64 = 260;
pub const UNLINKAT: u64 = 263;
pub const RENAMEAT: u64 = 264;
pub const LINKAT: u64 = 265;
pub const SYMLINKAT: u64 = 266;
pub const FCHMODAT: u64 = 268;
pub const ACCEPT4: u64 = 288;
pub const DUP3: u64 = 292;
pub const SENDMMSG: u64 = 307;
pub const FINIT_MODULE: u64 = 313;
pub const RENAMEAT2: u64 = 316;
pub const MEMFD_CREATE: u64 = 319;
pub const BPF: u64 = 321;
pub const OPENAT2: u64 = 437;
pub const FCHMODAT2: u64 = 452;
pub const KILL: u64 = 62;
pub const TKILL: u64 = 200;
pub const TGKILL: u64 = 234;
pub const UTIME: u64 = 132;
pub const UTIMES: u64 = 235;
pub const FUTIMESAT: u64 = 261;
pub const UTIMENSAT: u64 = 280;
pub const PROCESS_VM_WRITEV: u64 = 311;

/// Tracepoint names (`syscalls/sys_enter_<name>`, `syscalls/sys_exit_<name>`) per family.
pub const FILE_SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "truncate",
    "ftruncate",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
];
pub const NET_SYSCALLS: &[&str] = &["connect", "accept", "accept4", "bind", "listen"];
pub const DNS_SYSCALLS: &[&str] = &["sendto", "sendmsg", "sendmmsg"];
pub const SECURITY_SYSCALLS: &[&str] = &[
    "ptrace",
    "init_module",
    "finit_module",
    "bpf",
    "memfd_create",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "dup2",
    "dup3",
    "mprotect",
    "mmap",
    "kill",
    "tkill",
    "tgkill",
    "process_vm_writev",
];

/// Name of a followed syscall, for display.
pub fn name(nr: u64) -> &'static str {
    match nr {
        MMAP => "mmap",
        MPROTECT => "mprotect",
        DUP2 => "dup2",
        CONNECT => "connect",
        ACCEPT => "accept",
        SENDTO => "sendto",
        SENDMSG => "sendmsg",
        BIND => "bind",
        LISTEN => "listen",
        OPEN => "open",
        TRUNCATE => "truncate",
        FTRUNCATE => "ftruncate",
        RENAME => "rename",
        CREAT => "creat",
        LINK => "link",
        UNLINK => "unlink",
        SYMLINK => "symlink",
        CHMOD => "chmod",
        FCHMOD => "fchmod",
        CHOWN => "chown",
        FCHOWN => "fchown",
        LCHOWN => "lchown",
        PTRACE => "ptrace",
        SETUID => "setuid",
        SETGID => "setgid",
        SETREUID => "setreuid",
        SETREGID => "setregid",
        SETRESUID => "setresuid",
        SETRESGID => "setresgid",
        INIT_MODULE => "init_module",
        OPENAT => "openat",
        FCHOWNAT => "fchownat",
        UNLINKAT => "unlinkat",
        RENAMEAT => "renameat",
        LINKAT => "linkat",
        SYMLINKAT => "symlinkat",
        FCHMODAT => "fchmodat",
        ACCEPT4 => "accept4",
        DUP3 => "dup3",
        SENDMMSG => "sendmmsg",
        FINIT_MODULE => "finit_module",
        RENAMEAT2 => "renameat2",
        MEMFD_CREATE => "memfd_create",
        BPF => "bpf",
        OPENAT2 => "openat2",
        FCHMODAT2 => "fchmodat2",
        KILL => "kill",
        TKILL => "tkill",
        TGKILL => "tgkill",
        UTIME => "utime",
        UTIMES => "utimes",
        FUTIMESAT => "futimesat",
        UTIMENSAT => "utimensat",
        PROCESS_VM_WRITEV => "process_vm_writev",
        _ => "unknown",
    }
}
