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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eicar_is_the_published_file() {
        assert_eq!(EICAR.len(), 69);
        assert!(EICAR.starts_with(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"));
    }

    #[test]
    fn a_child_descends_from_its_parent_and_its_ancestry() {
        let shell = events::process(2000, "/usr/bin/bash", &["bash"]);
        let sh = events::child(&shell, 2001, "/bin/sh", &["sh", "-c", "id"]);
        assert_eq!((sh.ppid, sh.parent_exe.as_str()), (2000, "/usr/bin/bash"));
        let chain: Vec<u32> = sh.ancestors.iter().map(|a| a.pid).collect();
        assert_eq!(chain, [2000, events::SHELL_PID, 1]);
        assert_eq!(sh.ancestors[0].start_time, shell.start_time);
    }

    #[test]
    fn numbering_keeps_times_events_carry() {
        let p = events::process(2000, "/usr/bin/true", &[]);
        let mut late = events::exec(&p);
        late.timestamp_ns = 5_000_000_000;
        let n = events::numbered(vec![events::exec(&p), late]);
        assert_eq!((n[0].seq, n[1].seq), (1, 2));
        assert_eq!(
            (n[0].timestamp_ns, n[1].timestamp_ns),
            (1_000_000, 5_000_000_000)
        );
    }
}
