//! Event layouts shared by the kernel programs (`sensor-ebpf`) and the daemon (`sensor`).
//!
//! Every record written to the ring buffer starts with an [`EventHeader`] (the [`Record`]
//! trait, checked at compile time); its `kind` says which struct follows and its `size`
//! how many bytes the kernel wrote. Event kinds and syscalls are each written once, in the
//! tables below and in [`syscalls`], and everything else about them is derived. Layouts are
//! `#[repr(C)]`, fixed-size and defined only here, so both sides agree by construction;
//! the compile-time size checks at the bottom catch accidental changes.
//!
//! Strings are fixed buffers with an explicit length: the kernel never has to allocate and
//! userspace never trusts a terminator.
#![no_std]

pub mod syscalls;

/// Bytes of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bound on a captured path (bytes, including the terminating NUL). Power of two so the
/// verifier can bound variable-length copies with a mask.
pub const PATH_LEN: usize = 512;
/// Bound on the captured command line (NUL-separated argv), in bytes.
pub const ARGS_LEN: usize = 1024;
/// Bound on the environment captured at exec (the start of it: shells put `VAR=x cmd`
/// assignments first).
pub const ENV_LEN: usize = 4096;
/// Bound on the dentry name of an executable (memfd names, deleted files).
pub const NAME_LEN: usize = 64;
/// Bound on a short string argument (module parameters, memfd name, BPF program name).
pub const TEXT_LEN: usize = 256;
/// Bound on the DNS payload captured from a query.
pub const DNS_LEN: usize = 256;
/// Slots in the per-kind kernel maps (enable switches, lost counters).
pub const KIND_SLOTS: usize = 64;

/// The kernel hooks that produce a kind: userspace attaches a family's programs only when
/// one of its kinds is enabled, and decodes each family's layout in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookFamily {
    /// `sched_process_{exec,fork,exit}` raw tracepoints.
    Process,
    /// `lsm/bprm_check_security`, loaded in blocking mode only.
    ExecDenial,
    /// `file_enter`/`file_exit` on the file syscalls.
    File,
    /// `net_enter`/`net_exit` on the socket syscalls.
    Net,
    /// `dns_enter` on the send syscalls.
    Dns,
    /// `security_enter`/`security_exit` on the security-relevant syscalls.
    Security,
}

/// Writes [`EventKind`] and everything derived from it from one table, so a kind cannot
/// exist without its wire name, its family or its place in [`EventKind::ALL`].
macro_rules! event_kinds {
    ($($kind:ident = $value:literal => $name:literal, $family:ident;)*) => {
        /// What a record describes. Discriminants are part of the kernel/userspace ABI.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($kind = $value,)*
        }

        impl EventKind {
            pub const ALL: [EventKind; [$($value),*].len()] = [$(EventKind::$kind),*];

            pub const fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($value => Some(EventKind::$kind),)*
                    _ => None,
                }
            }

            /// The name used on the wire (gRPC, JSON, configuration).
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $name,)*
                }
            }

            /// The kind a wire name stands for (`None`: no kind of this build).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(EventKind::$kind),)*
                    _ => None,
                }
            }

            /// The hooks that produce this kind.
            pub const fn family(self) -> HookFamily {
                match self {
                    $(EventKind::$kind => HookFamily::$family,)*
                }
            }
        }
    };
}

event_kinds! {
    ProcessExec = 1 => "process_exec", Process;
    ProcessFork = 2 => "process_fork", Process;
    ProcessExit = 3 => "process_exit", Process;
    ProcessExecDenied = 4 => "process_exec_denied", ExecDenial;
    FileCreate = 10 => "file_create", File;
    FileWrite = 11 => "file_write", File;
    FileRename = 12 => "file_rename", File;
    FileUnlink = 13 => "file_unlink", File;
    FileChmod = 14 => "file_chmod", File;
    FileChown = 15 => "file_chown", File;
    FileTruncate = 16 => "file_truncate", File;
    FileLink = 17 => "file_link", File;
    FileSymlink = 18 => "file_symlink", File;
    FileRead = 19 => "file_read", File;
    NetConnect = 20 => "net_connect", Net;
    NetAccept = 21 => "net_accept", Net;
    NetBind = 22 => "net_bind", Net;
    NetListen = 23 => "net_listen", Net;
    DnsQuery = 24 => "dns_query", Dns;
    Ptrace = 30 => "ptrace", Security;
    ModuleLoad = 31 => "module_load", Security;
    BpfLoad = 32 => "bpf_load", Security;
    MemfdCreate = 33 => "memfd_create", Security;
    Setuid = 34 => "setuid", Security;
    Setgid = 35 => "setgid", Security;
    FdDup = 36 => "fd_dup", Security;
    MprotectExec = 37 => "mprotect_exec", Security;
    FileTimes = 40 => "file_times", File;
    Signal = 41 => "signal", Security;
}

impl EventKind {
    /// The kinds one family of hooks produces.
    pub fn of_family(family: HookFamily) -> impl Iterator<Item = EventKind> {
        Self::ALL.into_iter().filter(move |k| k.family() == family)
    }
}

// Every kind has a slot in the per-kind kernel maps, and no wire name is used twice (the
// compiler already refuses a repeated discriminant).
const _: () = {
    let all = EventKind::ALL;
    let mut i = 0;
    while i < all.len() {
        assert!((all[i] as usize) < KIND_SLOTS);
        let mut j = i + 1;
        while j < all.len() {
            assert!(!str_eq(all[i].name(), all[j].name()));
            j += 1;
        }
        i += 1;
    }
};

/// `==` on strings, usable in the compile-time checks of the tables.
pub(crate) const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Common prefix of every record, filled by one kernel helper for all hooks.
///
/// The process key is `(tgid, start_ns)`: the boot-time start of the thread-group leader,
/// which survives exec and cannot repeat for a reused pid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    pub kind: u32,
    /// Bytes written for the whole record, header included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was made.
    pub ts_ns: u64,
    pub tgid: u32,
    /// Thread id of the task that acted.
    pub pid: u32,
    pub start_ns: u64,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub _pad: u32,
    pub parent_start_ns: u64,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// The file an exec runs, as `linux_binprm` names it: shared by the exec record and the
/// record of a denied exec.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecImage {
    pub ino: u64,
    /// Kernel `s_dev` of the executable's filesystem (`major << 20 | minor`).
    pub dev: u32,
    /// Link count of the executable: 0 means it was deleted (or is a memfd).
    pub nlink: u32,
    pub filename_len: u32,
    pub name_len: u32,
    /// [`PATH_BUF`] word of `path`.
    pub path_len: u32,
    pub _pad: u32,
    /// The path given to execve, as the kernel saw it (`linux_binprm.filename`).
    pub filename: [u8; PATH_LEN],
    /// Name of the executable's dentry (e.g. `memfd:x (deleted)` shows as `memfd:x`).
    pub name: [u8; NAME_LEN],
    /// The executable's own path, from its dentry and mount chain ([`PATH_BUF`]).
    pub path: [u8; PATH_BUF],
}

/// `sched_process_exec`: the new image of a process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub image: ExecImage,
    pub args_len: u32,
    /// [`EXEC_ARGS_TRUNCATED`] and friends.
    pub flags: u32,
    pub env_len: u32,
    /// [`PATH_BUF`] word of `cwd`.
    pub cwd_len: u32,
    /// The working directory the exec ran in (relative `filename`s are relative to it).
    pub cwd: [u8; PATH_BUF],
    /// NUL-separated argv read from the new image's stack.
    pub args: [u8; ARGS_LEN],
    /// NUL-separated environment of the new image, from its start.
    pub env: [u8; ENV_LEN],
}

pub const EXEC_ARGS_TRUNCATED: u32 = 1;
/// Blocking mode killed the task at exec, before its first instruction.
pub const EXEC_KILLED: u32 = 2;
/// The environment is longer than [`ENV_LEN`].
pub const EXEC_ENV_TRUNCATED: u32 = 4;
/// The image was dropped: its inode changed within the drop window and one of its
/// ancestor directories is world-writable. Set in every mode.
pub const EXEC_DROPPED: u32 = 8;

/// `lsm/bprm_check_security` refused an exec (blocking mode, where BPF LSM runs). The
/// header describes the caller, which keeps its old image; the fields describe the file it
/// tried to run.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecDeniedEvent {
    pub header: EventHeader,
    pub image: ExecImage,
    /// [`DENIED_UNLINKED`] or [`DENIED_DROPPED`].
    pub reason: u32,
    pub _pad: u32,
}

/// The image has no name on disk: a memfd or a deleted file.
pub const DENIED_UNLINKED: u32 = 1;
/// The image was dropped in a world-writable directory within the window ([`EXEC_DROPPED`]).
pub const DENIED_DROPPED: u32 = 2;

/// `SyscallEvent.aux[0]` of a module load reported at syscall entry (result unknown).
pub const MODULE_AT_ENTRY: u32 = 1;

/// `sched_process_fork` for a new process (threads are not reported). The header
/// describes the child.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ForkEvent {
    pub header: EventHeader,
}

/// `sched_process_exit` of the last thread of a process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// Raw wait status: `(code << 8) | signal`.
    pub exit_code: u32,
    pub _pad: u32,
}

/// Bytes of a sensitive-file name key (`SENSITIVE_NAMES` map), NUL-padded.
pub const SENSITIVE_NAME_LEN: usize = 16;

/// Paths built by the kernel programs from the dentry and mount chains, as the process
/// sees them (up to its own root: a container's or a chroot's).
///
/// A buffer of [`PATH_BUF`] bytes holds NUL-terminated strings: first, when the word has
/// [`PATH_NAMED`], the name the caller passed (for calls that take a path); then the names
/// of the directories (or of the file itself) from the leaf up, one per component, mount
/// points crossed. Userspace reverses the chain and joins the caller's name to it when it
/// is relative. The buffer is twice [`PATH_LEN`] so each copy can be bounded by a mask;
/// what a path may use is [`PATH_LEN`] bytes and [`PATH_DEPTH`] components.
///
/// The word beside each buffer: bytes used (low 16 bits) and the flags below.
pub const PATH_BUF: usize = 2 * PATH_LEN;
/// Directories and mount crossings walked at most.
pub const PATH_DEPTH: usize = 40;
pub const PATH_BYTES: u32 = 0xffff;
/// The buffer starts with the name the caller passed.
pub const PATH_NAMED: u32 = 1 << 31;
/// The walk reached the process's root: the path is whole.
pub const PATH_COMPLETE: u32 = 1 << 30;
/// A bound ([`PATH_LEN`], [`PATH_DEPTH`]) was hit: the leading components are missing.
pub const PATH_TRUNCATED: u32 = 1 << 29;
/// The file's mount is not reachable from the process's root (memfd, pipe, a detached
/// mount, a file outside a chroot): only its own name is meaningful.
pub const PATH_UNREACHABLE: u32 = 1 << 28;

/// File operations decoded from syscall exits. Sent trimmed to
/// [`FileEvent::used_len`]: the path bytes past it are not sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileEvent {
    pub header: EventHeader,
    /// Syscall return value.
    pub ret: i64,
    pub syscall: u32,
    /// Open flags, unlink flags or rename flags, by syscall.
    pub flags: u32,
    /// New mode (chmod) or create mode (open).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// File descriptor for fd-based calls (fchmod, ftruncate), or the one open returned.
    pub fd: i32,
    pub dirfd: i32,
    pub dirfd2: i32,
    /// Path words ([`PATH_BUF`]) of the two paths in `paths`.
    pub path_len: u32,
    pub path2_len: u32,
    pub ino: u64,
    /// Two paths, each laid out as [`PATH_BUF`] describes, the second right after the
    /// bytes of the first ([`FileEvent::second_at`]): first the file (the opened or
    /// named file, or the caller's name and the chain of the directory it is relative
    /// to), then, the same way, the rename or link destination or the symlink location.
    /// A path uses at most [`PATH_LEN`] bytes and writes within [`PATH_BUF`], so both fit.
    pub paths: [u8; 2 * PATH_BUF],
}

impl FileEvent {
    /// What every file record holds: everything before its paths.
    pub const FIXED_LEN: usize = core::mem::offset_of!(FileEvent, paths);

    /// Bytes a path word says its path uses, within the [`PATH_LEN`] bound.
    #[inline(always)]
    fn bytes(word: u32) -> usize {
        let n = (word & PATH_BYTES) as usize;
        if n > PATH_LEN { PATH_LEN } else { n }
    }

    /// Where in `paths` the second path starts, given the first's word.
    #[inline(always)]
    pub fn second_at(path_len: u32) -> usize {
        Self::bytes(path_len)
    }

    /// The bytes of a record with these path words that carry anything: up to the last
    /// byte its paths use. The kernel sends only these (a file record with a short path
    /// takes a few hundred bytes of the ring buffer instead of the layout's size), so a
    /// storm fills the ring buffer that much later.
    #[inline(always)]
    pub fn used_len(path_len: u32, path2_len: u32) -> usize {
        Self::FIXED_LEN + Self::second_at(path_len) + Self::bytes(path2_len)
    }
}

/// `SockInfo.family` values the sensor decodes (`AF_INET`, `AF_INET6`).
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// A socket as the kernel knows it, read through the task's fd table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockInfo {
    /// 0 when the fd is not a socket (or could not be read).
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    pub lport: u16,
    pub rport: u16,
    pub _pad: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

/// connect, accept, bind, listen.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetEvent {
    pub header: EventHeader,
    pub ret: i64,
    pub syscall: u32,
    pub fd: i32,
    pub backlog: u32,
    pub _pad: u32,
    /// For connect and bind: the address the caller passed. For accept and listen: what
    /// the socket holds after the call.
    pub sock: SockInfo,
}

/// A UDP datagram sent to port 53.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsEvent {
    pub header: EventHeader,
    pub syscall: u32,
    pub fd: i32,
    pub len: u32,
    pub _pad: u32,
    pub sock: SockInfo,
    pub payload: [u8; DNS_LEN],
}

/// Security-relevant calls: ptrace, module and BPF loads, memfd_create, set*id, dup onto
/// stdio, executable anonymous memory. `args` are the raw syscall arguments.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallEvent {
    pub header: EventHeader,
    pub ret: i64,
    pub syscall: u32,
    pub text_len: u32,
    pub args: [u64; 6],
    /// dup2/dup3: the descriptor being duplicated, when it is a socket.
    pub sock: SockInfo,
    /// memfd name, module parameters, BPF program name.
    pub text: [u8; TEXT_LEN],
    /// bpf(BPF_PROG_LOAD): program type and instruction count.
    pub aux: [u32; 2],
}

/// Member offsets of kernel structs, read from the running kernel's BTF at load time and
/// handed to the programs as a read-only global (Rust eBPF gets no CO-RE relocations).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOffsets {
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_start_boottime: u32,
    pub task_comm: u32,
    pub task_mm: u32,
    pub task_cred: u32,
    pub task_files: u32,
    pub task_signal: u32,
    pub task_exit_code: u32,
    pub signal_live: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub mm_exe_file: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub binprm_file: u32,
    pub binprm_filename: u32,
    pub file_inode: u32,
    pub file_mode: u32,
    pub file_dentry: u32,
    pub file_private_data: u32,
    pub dentry_name: u32,
    pub dentry_parent: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_nlink: u32,
    pub inode_mode: u32,
    pub sb_dev: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub socket_sk: u32,
    pub sk_family: u32,
    pub sk_num: u32,
    pub sk_dport: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub sk_type: u32,
    pub sk_protocol: u32,
    /// `task_struct.fs` and the two `struct path`s of `fs_struct` the process resolves
    /// names against: its root (chroot, container) and its working directory.
    pub task_fs: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    /// `struct path` members, and where `file.f_path` sits.
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub file_path: u32,
    /// `struct mount`: the `vfsmount` embedded in it (to go from a `vfsmount *` back to
    /// its mount), the mount it is attached to and the dentry it covers there.
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub vfsmount_root: u32,
    pub dentry_inode: u32,
    /// Seconds of the inode's change time (`i_ctime_sec`, `__i_ctime` or `i_ctime` by
    /// kernel version; seconds come first in each).
    pub inode_ctime_sec: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}

/// Value of the per-thread map that carries syscall arguments from entry to exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingCall {
    pub nr: u64,
    pub args: [u64; 6],
}

/// A ring-buffer record: a layout that starts with the [`EventHeader`]. The kernel fills
/// the header of every record through this, instead of casting the record's pointer and
/// trusting that the header comes first.
pub trait Record: Copy + 'static {
    /// The header of the record at `record`; no memory is read.
    ///
    /// # Safety
    /// `record` must point to (possibly uninitialised) memory of a `Self`.
    unsafe fn header_ptr(record: *mut Self) -> *mut EventHeader;
}

macro_rules! records {
    ($($layout:ty),* $(,)?) => {$(
        impl Record for $layout {
            #[inline(always)]
            unsafe fn header_ptr(record: *mut Self) -> *mut EventHeader {
                unsafe { &raw mut (*record).header }
            }
        }

        // Userspace reads the header of a record before it knows the record's layout.
        const _: () = assert!(core::mem::offset_of!($layout, header) == 0);
    )*};
}

records!(
    ExecEvent,
    ExecDeniedEvent,
    ForkEvent,
    ExitEvent,
    FileEvent,
    NetEvent,
    DnsEvent,
    SyscallEvent,
);

const _: () = assert!(core::mem::size_of::<EventHeader>() == 88);
const _: () = assert!(core::mem::size_of::<ExecImage>() == 32 + PATH_LEN + NAME_LEN + PATH_BUF);
const _: () =
    assert!(core::mem::size_of::<ExecEvent>() == 88 + 1632 + 16 + PATH_BUF + ARGS_LEN + ENV_LEN);
const _: () = assert!(core::mem::size_of::<ExecDeniedEvent>() == 88 + 1632 + 8);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 88);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 96);
const _: () = assert!(core::mem::size_of::<SockInfo>() == 44);
const _: () = assert!(core::mem::size_of::<FileEvent>() == 88 + 56 + 2 * PATH_BUF);
const _: () = assert!(core::mem::size_of::<NetEvent>() == 88 + 24 + 48);
const _: () = assert!(core::mem::size_of::<DnsEvent>() == 88 + 16 + 44 + DNS_LEN + 4);
const _: () = assert!(core::mem::size_of::<SyscallEvent>() == 88 + 16 + 48 + 44 + TEXT_LEN + 12);

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    #[test]
    fn kinds_round_trip_through_number_and_name() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_u32(k as u32), Some(k));
            assert_eq!(EventKind::from_name(k.name()), Some(k));
        }
        assert_eq!(EventKind::from_u32(0), None);
        assert_eq!(EventKind::from_name("process"), None);
    }

    #[test]
    fn kind_numbers_and_names_are_unique() {
        for (i, a) in EventKind::ALL.iter().enumerate() {
            for b in &EventKind::ALL[i + 1..] {
                assert_ne!(*a as u32, *b as u32);
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn every_syscall_family_produces_kinds() {
        for s in syscalls::ALL {
            assert!(
                EventKind::of_family(s.family).next().is_some(),
                "{}",
                s.name
            );
        }
        assert_eq!(
            EventKind::of_family(HookFamily::Net).collect::<Vec<_>>(),
            [
                EventKind::NetConnect,
                EventKind::NetAccept,
                EventKind::NetBind,
                EventKind::NetListen
            ]
        );
    }

    #[test]
    fn syscalls_round_trip_and_are_unique() {
        for (i, s) in syscalls::ALL.iter().enumerate() {
            assert_eq!(syscalls::name(s.nr), s.name);
            for t in &syscalls::ALL[i + 1..] {
                assert_ne!(s.nr, t.nr);
                assert_ne!(s.name, t.name);
            }
        }
        assert_eq!(syscalls::name(syscalls::OPENAT), "openat");
        assert_eq!(syscalls::name(100_000), "unknown");
        assert_eq!(
            syscalls::names_of(HookFamily::Dns).collect::<Vec<_>>(),
            ["sendto", "sendmsg", "sendmmsg"]
        );
    }
}
