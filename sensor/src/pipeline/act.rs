//! Act: stopping what blocking mode is asked to stop.
//!
//! Each rule says what blocking mode does about it ([`crate::detect::Rule::response`]);
//! this stage asks the rule, so a detection's response is written once, next to the
//! detection (today reverse shell, fileless execution, drop and execute and crypto miner
//! are stopped). Fileless images are stopped by the kernel at exec: denied through BPF
//! LSM where the kernel runs it, else killed before their first instruction; so are
//! dropped files, once this stage has seen the drop and armed the kernel with the file's
//! inode (`DROPPED`). This stage records those denials and kills.
//! The rest is decided in userspace and killed from here: the offending process (also a
//! drop executed faster than its file event reached userspace) and, where the rule's
//! response says so (a reverse shell), the shells it started. Passive mode never kills.
//!
//! A process is killed only after checking that its pid still names the same process
//! (start time from /proc), so a reused pid is never hit.

use std::os::unix::fs::MetadataExt;

use aya::maps::{HashMap, MapData};

use crate::{
    detect::{Response, drop_exec::dropped_path},
    enrich::process_table::{ProcessKey, ProcessTable},
    kernel::probes::ExecDenial,
    proto,
    scope::BlockingScope,
};

/// (inode, kernel s_dev) -> boot-time deadline of the kill, in the kernel program.
pub type DroppedMap = HashMap<MapData, [u64; 2], u64>;

pub struct Responder {
    blocking: bool,
    /// Which processes blocking may stop.
    scope: BlockingScope,
    /// The kernel's map of dropped files, and how long after the drop an exec is killed.
    dropped: Option<(DroppedMap, u64)>,
}

impl Responder {
    pub fn new(blocking: bool, scope: BlockingScope) -> Self {
        Self {
            blocking,
            scope,
            dropped: None,
        }
    }

    /// Arms the kernel program with files dropped in world-writable directories, so their
    /// exec within `window_ns` is killed before the first instruction.
    pub fn with_dropped_map(mut self, map: DroppedMap, window_ns: u64) -> Self {
        self.dropped = Some((map, window_ns));
        self
    }

    /// Sees every event before detection, so the kernel is armed as early as possible.
    pub fn observe(&mut self, e: &proto::Event) {
        if !self.blocking {
            return;
        }
        let (Some((map, window)), Some(path)) = (&mut self.dropped, dropped_path(e)) else {
            return;
        };
        // The kernel knows files by inode and its own device numbering.
        let Ok(m) = std::fs::metadata(path) else {
            return;
        };
        if !m.is_file() {
            return;
        }
        let dev = (u64::from(libc::major(m.dev())) << 20) | u64::from(libc::minor(m.dev()));
        if let Err(err) = map.insert([m.ino(), dev], e.timestamp_ns + *window, 0) {
            log::debug!("arming the kernel for {path}: {err}");
        }
    }

    /// How prevention works here, for health.
    pub fn describe(&self, exec_denial: &ExecDenial) -> String {
        if !self.blocking {
            return "passive mode: detections are reported, nothing is stopped".into();
        }
        let scope = self.scope.describe();
        let at_exec = if exec_denial.active {
            "fileless images and files dropped in world-writable directories denied at exec \
             with EPERM by BPF LSM (bprm_check_security), with the kill by the exec \
             tracepoint (bpf_send_signal in sched_process_exec) behind it"
                .to_string()
        } else {
            format!(
                "fileless images and files dropped in world-writable directories killed at \
                 exec by the kernel program (bpf_send_signal in sched_process_exec); exec \
                 denial through BPF LSM not used ({})",
                exec_denial.reason
            )
        };
        format!(
            "blocking{scope}: {at_exec}; reverse shells, miners, and drops executed before \
             their file event arrived killed from userspace after detection"
        )
    }

    /// Acts on `detection` (raised by `trigger`) and records the action in it.
    pub fn respond(
        &self,
        trigger: &proto::Event,
        detection: &mut proto::Event,
        table: &ProcessTable,
    ) {
        let Some(d) = detection.detection.as_mut() else {
            return;
        };
        if !self.blocking {
            return;
        }
        let Some(rule) = crate::detect::rule(&d.id).filter(|r| r.preventable()) else {
            return;
        };
        let Some(p) = detection.process.as_ref() else {
            return;
        };
        if !self
            .scope
            .covers_lineage(p.pid, p.ancestors.iter().map(|a| a.pid))
        {
            d.details
                .insert("blocking".into(), "outside the blocking scope".into());
            return;
        }
        if let Some(x) = trigger.exec.as_ref().filter(|x| !x.denied.is_empty()) {
            d.action = "denied".into();
            d.details.insert(
                "denied_by".into(),
                "kernel, BPF LSM bprm_check_security".into(),
            );
            d.details.insert("denied_reason".into(), x.denied.clone());
            return;
        }
        if trigger.exec.as_ref().is_some_and(|x| x.killed) {
            d.action = "killed".into();
            d.details
                .insert("killed_by".into(), "kernel, at exec".into());
            return;
        }
        let key = ProcessKey::new(p.pid, p.start_time);
        let mut targets = vec![key];
        if rule.response == Response::StopWithShells {
            targets.extend(
                table
                    .children(&key)
                    .into_iter()
                    .filter(|(_, e)| crate::detect::is_shell(&e.exe))
                    .map(|(k, _)| k),
            );
        }
        let killed: Vec<String> = targets
            .iter()
            .filter(|k| kill_if_same(k))
            .map(|k| k.tgid.to_string())
            .collect();
        if killed.is_empty() {
            d.details
                .insert("kill_error".into(), "process already gone".into());
        } else {
            d.action = "killed".into();
            d.details.insert("killed_pids".into(), killed.join(","));
        }
    }
}

/// SIGKILL to `key.tgid` if it is still the process `key` names.
fn kill_if_same(key: &ProcessKey) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", key.tgid)) else {
        return false;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return false;
    };
    let start: Option<u64> = rest.split(' ').nth(19).and_then(|s| s.parse().ok());
    if start != Some(key.start_ticks) {
        return false;
    }
    // SAFETY: plain syscall; the pid was just checked.
    unsafe { libc::kill(key.tgid as i32, libc::SIGKILL) == 0 }
}
