//! Reading the kernel and reporting to userspace, shared by every hook family.
//!
//! No CO-RE here: member offsets come from userspace (read from the running kernel's BTF)
//! through the [`globals`] the loader patches, and every dereference goes through
//! `bpf_probe_read_kernel`, so a wrong offset yields a failed read, never a crash.
//! Everything is `#[inline(always)]`: older verifiers (6.1) lose the bounds of values
//! passed through a BPF-to-BPF call or spilled to the stack, and helper calls need them.

/// Switches and per-kind counters: whether a hook reports at all, and what it failed to.
pub mod counters;
/// `struct file` and `struct dentry`: descriptors, inodes and names.
pub mod files;
/// Read-only globals userspace patches at load: struct offsets, blocking mode.
pub mod globals;
/// Reserving, stamping and submitting records on the `EVENTS` ring buffer.
pub mod ring;
/// Sockets, from the kernel's `struct sock` or the caller's `struct sockaddr`.
pub mod socket;
/// Absolute paths built from dentry and mount chains.
pub mod paths;
/// `task_struct` and plain kernel reads.
pub mod task;
/// Copies of user memory and of strings, bounded for the verifier.
pub mod user;
