//! auditd as a peer in `bench capture --peer auditd`: the Linux audit system asked to
//! record what the sensor captures in each storm, timed on the same storms.
//!
//! Audit cannot be measured before the sensor: once the kernel's audit is enabled,
//! every process forked afterwards carries audit bookkeeping on each syscall until the
//! next boot, rules or not, and would slow every later baseline. So the peer rounds run
//! after all baseline and sensor rounds and are compared with the baselines measured
//! before audit was touched. When audit was already on before the bench, every figure
//! carries that cost, and the bench says so.
//!
//! The rules follow the sensor's capture of each storm: execve; the storm's file calls
//! (opens for writing, renames, chmods, unlinks) under the storm's own directory
//! (`-F dir=`); connect and accept. They carry one key, so only they are deleted
//! afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Workload;
use crate::cmd::{self, describe};

/// Key of every rule the bench adds (`-k`), and what `auditctl -D -k` deletes.
pub const RULE_KEY: &str = "sensor-bench";

/// Flags of open(2)'s access mode that mean writing: O_WRONLY | O_RDWR.
const WRITE_ACCESS: &str = "0x3";

/// `auditctl` arguments of each rule for `workload`; `dir` is the file storm's
/// directory (the file rules need one).
///
/// A syscall argument filter (`-F aN&mask`) applies to every syscall of its rule, and
/// the flags are the second argument of open but the third of openat, so the two get
/// rules of their own.
pub fn rules(workload: Workload, dir: Option<&Path>) -> Result<Vec<Vec<String>>> {
    let exit_rule = |syscalls: &[&str], filters: &[String]| -> Vec<String> {
        let mut r = vec![
            "-a".into(),
            "always,exit".into(),
            "-F".into(),
            "arch=b64".into(),
        ];
        for s in syscalls {
            r.extend(["-S".into(), (*s).into()]);
        }
        for f in filters {
            r.extend(["-F".into(), f.clone()]);
        }
        r.extend(["-k".into(), RULE_KEY.into()]);
        r
    };
    Ok(match workload {
        Workload::Exec => vec![exit_rule(&["execve", "execveat"], &[])],
        Workload::Connect => vec![exit_rule(&["connect", "accept", "accept4"], &[])],
        Workload::File => {
            let dir = dir.context("the file storm's audit rules need its directory")?;
            let dir = dir
                .to_str()
                .filter(|d| !d.contains(char::is_whitespace))
                .with_context(|| format!("{} is not a plain path for -F dir=", dir.display()))?;
            let under = format!("dir={dir}");
            vec![
                exit_rule(&["open"], &[format!("a1&{WRITE_ACCESS}"), under.clone()]),
                exit_rule(&["openat"], &[format!("a2&{WRITE_ACCESS}"), under.clone()]),
                exit_rule(&["creat"], std::slice::from_ref(&under)),
                exit_rule(
                    &["rename", "renameat", "renameat2"],
                    std::slice::from_ref(&under),
                ),
                exit_rule(
                    &["chmod", "fchmod", "fchmodat"],
                    std::slice::from_ref(&under),
                ),
                exit_rule(&["unlink", "unlinkat"], &[under]),
            ]
        }
    })
}

/// What `auditctl -s` says: whether audit is on, records lost, records waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStatus {
    /// 0 off, 1 on, 2 on and locked.
    pub enabled: u32,
    pub lost: u64,
    pub backlog: u64,
}

impl AuditStatus {
    /// Parses `auditctl -s` output: one `name value` pair per line.
    pub fn parse(text: &str) -> Result<Self> {
        let value = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|l| {
                    let (k, v) = l.trim().split_once(char::is_whitespace)?;
                    (k == name).then(|| v.trim().parse().ok())?
                })
                .with_context(|| format!("`auditctl -s` printed no numeric {name}: {text:?}"))
        };
        Ok(Self {
            enabled: u32::try_from(value("enabled")?)?,
            lost: value("lost")?,
            backlog: value("backlog")?,
        })
    }

    pub fn read() -> Result<Self> {
        Self::parse(&cmd::output(Command::new("auditctl").arg("-s"))?)
    }
}

/// Whether the kernel's audit is on now, for the warning at the start of every capture
/// bench; `None` where auditctl is missing or fails.
pub fn enabled_now() -> Option<bool> {
    crate::setup::which("auditctl")?;
    AuditStatus::read().ok().map(|s| s.enabled != 0)
}

/// Whether an auditd process runs (the machine's own, say): the bench then uses it and
/// leaves it running.
fn auditd_runs() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "auditd"))
}

/// An auditd that records the storms: started by the bench (and stopped by it) unless
/// one already runs, with the bench's rules loaded one workload at a time. Dropping it
/// deletes the rules, stops the auditd it started, and turns audit off again unless it
/// was on before.
pub struct AuditPeer {
    started: Option<Child>,
    was_enabled: bool,
}

impl AuditPeer {
    /// Fails before anything changes when auditd or auditctl is missing.
    pub fn start() -> Result<Self> {
        for tool in ["auditd", "auditctl"] {
            if crate::setup::which(tool).is_none() {
                bail!("--peer auditd needs {tool}: run `cargo xtask setup` (installs auditd)");
            }
        }
        let before = AuditStatus::read()?;
        let running = auditd_runs();
        let mut peer = Self {
            started: None,
            was_enabled: before.enabled != 0,
        };
        if running && before.enabled == 0 {
            // The machine's auditd with audit switched off: on for the rounds, off after.
            cmd::output(Command::new("auditctl").args(["-e", "1"]))?;
        }
        if !running {
            // -n: stays in the foreground as our child (as under systemd). By default it
            // turns audit on at start and off again when it ends.
            let mut auditd = Command::new("auditd");
            auditd.arg("-n").stdin(Stdio::null()).stdout(Stdio::null());
            println!("bench: starting {}", describe(&auditd));
            peer.started = Some(
                auditd
                    .spawn()
                    .with_context(|| format!("could not start `{}`", describe(&auditd)))?,
            );
        }
        peer.wait_enabled()?;
        peer.clear_rules()?;
        Ok(peer)
    }

    fn wait_enabled(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = &mut self.started
                && let Some(status) = child.try_wait()?
            {
                bail!("auditd exited at start ({status})");
            }
            if AuditStatus::read()?.enabled != 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("audit is still disabled 10 s after auditd started");
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Replaces the bench's rules with those of `workload`.
    pub fn load_rules(&self, workload: Workload, dir: Option<&Path>) -> Result<()> {
        self.clear_rules()?;
        for rule in rules(workload, dir)? {
            cmd::output(Command::new("auditctl").args(&rule))?;
        }
        Ok(())
    }

    /// Deletes the bench's rules only (`-D -k`), leaving any others alone.
    pub fn clear_rules(&self) -> Result<()> {
        cmd::output(Command::new("auditctl").args(["-D", "-k", RULE_KEY]))?;
        Ok(())
    }
}

impl Drop for AuditPeer {
    fn drop(&mut self) {
        if let Err(e) = self.clear_rules() {
            eprintln!("bench: warning: deleting the audit rules: {e:#}");
        }
        if let Some(mut child) = self.started.take() {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if let Err(e) = child.wait() {
                eprintln!("bench: warning: waiting for auditd: {e}");
            }
        }
        if !self.was_enabled
            && let Err(e) = cmd::output(Command::new("auditctl").args(["-e", "0"]))
        {
            eprintln!("bench: warning: turning audit off again: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(w: Workload, dir: Option<&Path>) -> Vec<String> {
        rules(w, dir)
            .unwrap()
            .into_iter()
            .map(|r| r.join(" "))
            .collect()
    }

    #[test]
    fn exec_and_connect_rules() {
        assert_eq!(
            joined(Workload::Exec, None),
            ["-a always,exit -F arch=b64 -S execve -S execveat -k sensor-bench"]
        );
        assert_eq!(
            joined(Workload::Connect, None),
            ["-a always,exit -F arch=b64 -S connect -S accept -S accept4 -k sensor-bench"]
        );
    }

    #[test]
    fn file_rules_stay_in_the_storm_directory_and_filter_open_flags_per_call() {
        let got = joined(Workload::File, Some(Path::new("/tmp/bench/file-storm")));
        let under = "-F dir=/tmp/bench/file-storm -k sensor-bench";
        assert_eq!(
            got,
            [
                format!("-a always,exit -F arch=b64 -S open -F a1&0x3 {under}"),
                format!("-a always,exit -F arch=b64 -S openat -F a2&0x3 {under}"),
                format!("-a always,exit -F arch=b64 -S creat {under}"),
                format!("-a always,exit -F arch=b64 -S rename -S renameat -S renameat2 {under}"),
                format!("-a always,exit -F arch=b64 -S chmod -S fchmod -S fchmodat {under}"),
                format!("-a always,exit -F arch=b64 -S unlink -S unlinkat {under}"),
            ]
        );
        assert!(
            rules(Workload::File, None).is_err(),
            "no directory, no rules"
        );
        assert!(rules(Workload::File, Some(Path::new("/tmp/a b"))).is_err());
    }

    #[test]
    fn status_parses_auditctl_output() {
        let text = "enabled 1\nfailure 1\npid 812\nrate_limit 0\nbacklog_limit 8192\n\
                    lost 17\nbacklog 3\nbacklog_wait_time 60000\nbacklog_wait_time_actual 0\n";
        assert_eq!(
            AuditStatus::parse(text).unwrap(),
            AuditStatus {
                enabled: 1,
                lost: 17,
                backlog: 3
            }
        );
        assert!(
            AuditStatus::parse("enabled 0\n").is_err(),
            "lost is missing"
        );
    }
}
