//! The kernel side, seen from userspace: loading and attaching the eBPF programs with
//! the settings they read ([`probes`]), and the struct offsets they need, read from the
//! running kernel's BTF ([`btf`]).

mod btf;
pub mod probes;
