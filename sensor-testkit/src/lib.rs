//! What the sensor's tests and benches share: starting the real daemon and stopping it
//! ([`daemon`]), the private tmpfs real-time protection may mark ([`tmpfs`]), gathering
//! its event stream ([`collect`]), events built by hand for the detection engine
//! ([`events`]), and real behaviours the detections are about ([`behaviour`]).
//!
//! It depends on the protocol crate only, never on the daemon's crate, so a test or a
//! bench that talks to a daemon builds without the scan engine.

pub mod behaviour;
pub mod collect;
pub mod daemon;
pub mod events;
pub mod tmpfs;

pub use behaviour::{as_nobody, dev_tcp_reverse_shell, load_bpf, nobody_uid};
pub use collect::{Collector, from, is, pid_of, summary};
pub use daemon::{
    Daemon, DaemonSpec, TempDir, client, health, health_blocking, sensor_bin, shared_daemon,
};
pub use sensor_proto::{self as proto, Event};
pub use tmpfs::Tmpfs;

/// The EICAR test file: every engine must detect it.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\n";
