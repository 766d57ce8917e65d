//! Act: stopping what blocking mode is asked to stop.
//!
//! Each rule says what blocking mode does about it ([`crate::detect::Rule::response`]);
//! this stage asks the rule, so a detection's response is written once, next to the
//! detection (today reverse shell, fileless execution, drop and execute and crypto miner
//! are stopped). Fileless and dropped images are stopped in the kernel at exec, with no
//! help from this stage: denied through BPF LSM where the kernel runs it, else killed
//! before their first instruction (a dropped image is one whose inode changed within the
//! drop window below a world-writable directory, see `sensor-ebpf/src/prevent.rs`); on
//! mounts real-time protection marks, its exec permission check denies them first,
//! scripts included. This stage records those denials and kills.
//! The rest is decided in userspace and killed from here: the offending process and, where
//! the rule's response says so (a reverse shell), the shells it started. Passive mode
//! never kills.
//!
//! A process is killed only after checking that its pid still names the same process
//! (start time from /proc), so a reused pid is never hit.

use crate::{
    detect::Response,
    enrich::process_table::{ProcessKey, ProcessTable},
    kernel::probes::ExecDenial,
    proto,
    scope::BlockingScope,
};

pub struct Responder {
    blocking: bool,
    /// Which processes blocking may stop.
    scope: BlockingScope,
}

impl Responder {
    pub fn new(blocking: bool, scope: BlockingScope) -> Self {
        Self { blocking, scope }
    }

    /// How prevention works here, for health: in particular, what stops a dropped image
    /// (`rtp_marks`: the mounts whose execs real-time protection checks, if it runs).
    pub fn describe(&self, exec_denial: &ExecDenial, rtp_marks: &[String]) -> String {
        if !self.blocking {
            return "passive mode: detections are reported, nothing is stopped".into();
        }
        let scope = self.scope.describe();
        let at_exec = if exec_denial.active {
            "fileless and dropped images (changed within the drop window below a \
             world-writable directory) denied at exec with EPERM by BPF LSM \
             (bprm_check_security), dropped scripts included, with the kill by the exec \
             tracepoint (bpf_send_signal in sched_process_exec) behind it"
                .to_string()
        } else {
            format!(
                "fileless and dropped images (changed within the drop window below a \
                 world-writable directory) killed at exec by the kernel program \
                 (bpf_send_signal in sched_process_exec), ELF images only; exec denial \
                 through BPF LSM not used ({})",
                exec_denial.reason
            )
        };
        let rtp = if rtp_marks.is_empty() {
            if exec_denial.active {
                String::new()
            } else {
                "; dropped scripts are not stopped (neither BPF LSM nor real-time \
                 protection)"
                    .to_string()
            }
        } else {
            format!(
                "; on {}, real-time protection denies the exec of dropped files with EPERM \
                 (FAN_OPEN_EXEC_PERM), scripts included, before the kernel has to kill",
                rtp_marks.join(", ")
            )
        };
        format!(
            "blocking{scope}: {at_exec}{rtp}; reverse shells, miners and drops the kernel \
             did not stop killed from userspace after detection"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(active: bool) -> ExecDenial {
        ExecDenial {
            active,
            reason: if active {
                "bpf is an active LSM".into()
            } else {
                "bpf is not an active LSM".into()
            },
        }
    }

    /// Health says what stops a dropped image on this machine, scripts included.
    #[test]
    fn prevention_names_what_stops_dropped_images() {
        let responder = Responder::new(true, BlockingScope::new(None).unwrap());
        let bare = responder.describe(&denial(false), &[]);
        assert!(bare.contains("bpf_send_signal") && bare.contains("ELF images only"));
        assert!(bare.contains("scripts are not stopped"), "{bare}");
        let rtp = responder.describe(&denial(false), &["/srv".to_string()]);
        assert!(
            rtp.contains("on /srv") && rtp.contains("FAN_OPEN_EXEC_PERM"),
            "{rtp}"
        );
        assert!(!rtp.contains("scripts are not stopped"));
        let lsm = responder.describe(&denial(true), &[]);
        assert!(lsm.contains("BPF LSM") && lsm.contains("dropped scripts included"));
        assert!(!lsm.contains("scripts are not stopped"));
        let passive = Responder::new(false, BlockingScope::new(None).unwrap());
        assert!(
            passive
                .describe(&denial(true), &[])
                .starts_with("passive mode")
        );
    }
}
