//! `cargo xtask bench fp`: what a passive daemon with its defaults raises on everyday
//! admin work, the false positives an operator would have to triage:
//! - a rebuild of this project (rustc, cc, the linker, build scripts);
//! - Debian package work: a reinstall of `hostname`, and an install then purge of
//!   `tcpdump` (its maintainer scripts add a system user), skipped for a tcpdump the
//!   machine already has, which is only reinstalled;
//! - an admin session in a root login shell: a look around (`ps aux`, `ss -tlnp`, `id`,
//!   `whoami`, `uname -a`, `hostname`, `cat /etc/passwd`, `crontab -l`, the journal,
//!   `systemctl status`), a copy of a config file edited with vim, `/etc/hosts` opened
//!   read-only in vim, and `apt-get update`. The tools it needs that the machine lacks
//!   are installed first, their services not started, and purged afterwards; a tool no
//!   package brings here (systemd's) is skipped with a note.
//!
//! Target: no detection of medium severity or above; the session's look around is a
//! discovery burst, informational from a login shell. Every detection raised is printed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sensor_testkit::{Daemon, DaemonSpec, TempDir};
use serde_json::Value;

use crate::banner;
use crate::build::{Profile, build, workspace_root};
use crate::cmd::{self, command};
use crate::setup::{Apt, NoServiceStarts, which};

/// Time for the last events of a workload to reach the detection stage.
const DRAIN: Duration = Duration::from_secs(2);

pub fn fp() -> Result<()> {
    if !cmd::is_root() {
        bail!("`bench fp` starts the daemon and installs packages: run it as root");
    }
    let artifacts = build(Profile::Release)?;
    banner(
        "bench fp: a passive daemon with its defaults, on a rebuild, package work and an admin session",
    );
    let tmp = TempDir::new("bench-fp");
    let socket = tmp.path().join("sensor.sock");
    let state = tmp.path().join("state");
    let bin = &artifacts.sensor_bin;
    let spec = DaemonSpec::new(bin, &socket, &tmp.path().join("daemon.log"))
        .args(["--mode", "passive", "--state-dir"])
        .args([&state]);
    let mut daemon = Daemon::launch(spec)?;

    println!("bench: rebuilding the sensor crate ...");
    cmd::run(command("touch").arg(workspace_root().join("sensor/src/lib.rs")))?;
    cmd::run(
        command(cmd::cargo())
            .current_dir(workspace_root())
            .args(["build", "--release", "-p", "sensor"])
            .env("SENSOR_BPF_OBJECT", &artifacts.bpf_object),
    )?;
    let mut apt = Apt::default();
    println!("bench: apt-get install --reinstall hostname ...");
    apt.run(&["install", "--reinstall", "hostname"])?;
    if installed("tcpdump") {
        println!("bench: tcpdump is installed here: reinstalling it ...");
        apt.run(&["install", "--reinstall", "tcpdump"])?;
    } else {
        println!("bench: apt-get install tcpdump, then purge it ...");
        apt.run(&["install", "--no-install-recommends", "tcpdump"])?;
        apt.run(&["purge", "--autoremove", "tcpdump"])?;
    }
    admin_session(&mut apt, &tmp.path().join("admin"))?;
    sleep(DRAIN);

    let out = daemon.cli(&["detections", "list", "--output", "json"])?;
    // Zero detections mean something only from a daemon that saw the work.
    let health = daemon.health_json()?;
    daemon.stop()?;
    let seen = |kind: &str| {
        health
            .pointer(&format!("/events/received/{kind}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    println!(
        "bench: the daemon saw {} execs and {} file writes",
        seen("process_exec"),
        seen("file_write") + seen("file_create")
    );
    if seen("process_exec") == 0 {
        bail!("the daemon saw no exec: its detections say nothing");
    }
    report(&out)
}

/// One command line of the admin session.
struct Step {
    /// As typed at the prompt.
    line: &'static str,
    /// The program the line needs and the Debian package that brings it. `None` for the
    /// package: not installed for the bench (systemd would not run as PID 1 anyway), the
    /// step is skipped.
    needs: Option<(&'static str, Option<&'static str>)>,
    /// Why the line may exit non-zero on a healthy machine.
    may_fail: Option<&'static str>,
}

const fn step(line: &'static str) -> Step {
    Step {
        line,
        needs: None,
        may_fail: None,
    }
}

impl Step {
    const fn needs(mut self, program: &'static str, package: Option<&'static str>) -> Self {
        self.needs = Some((program, package));
        self
    }

    const fn may_fail(mut self, why: &'static str) -> Self {
        self.may_fail = Some(why);
        self
    }

    fn present(&self) -> bool {
        self.needs
            .is_none_or(|(program, _)| which(program).is_some())
    }

    /// The line as the session's shell runs it. Its output is discarded: the sensor sees
    /// the execs and the reads, not the terminal. The braces keep the commands children of
    /// the login shell, where an administrator's commands are. An expected failure is
    /// noted and the session goes on; any other failure ends it.
    fn script(&self) -> String {
        let on_failure = match self.may_fail {
            Some(why) => format!("printf 'bench:   exited %s: %s\\n' \"$?\" {}", quote(why)),
            None => "{ printf 'bench:   failed (exit status %s)\\n' \"$?\"; exit 1; }".into(),
        };
        format!(
            "printf 'bench: # %s\\n' {}\n{{ {}; }} </dev/null >/dev/null || {on_failure}\n",
            quote(self.line),
            self.line
        )
    }
}

/// What the administrator does, in order; each entry in the first of its ways that this
/// machine has (`ss`, else `netstat`).
const SESSION: &[&[Step]] = &[
    &[step("ps aux").needs("ps", Some("procps"))],
    &[
        step("ss -tlnp").needs("ss", Some("iproute2")),
        step("netstat -tlnp").needs("netstat", Some("net-tools")),
    ],
    &[step("id")],
    &[step("whoami")],
    &[step("uname -a")],
    &[step("hostname")],
    &[step("cat /etc/passwd")],
    &[step("crontab -l")
        .needs("crontab", Some("cron"))
        .may_fail("root has no crontab")],
    &[step("journalctl -n 50 --no-pager")
        .needs("journalctl", None)
        .may_fail("no journal without systemd as PID 1")],
    &[step("systemctl status cron")
        .needs("systemctl", None)
        .may_fail("systemd is not PID 1")],
    // On a copy: the bench must not change the machine's configuration. The grep checks
    // that vim did save the edit.
    &[step(
        "cp /etc/login.defs . && vim -es -c 'normal Go# reviewed' -c wq login.defs \
         && grep -qx '# reviewed' login.defs",
    )
    .needs("vim", Some("vim"))],
    &[step("vim -R -es -c q /etc/hosts").needs("vim", Some("vim"))],
    &[step("apt-get update")],
];

/// Runs [`SESSION`] in `dir`, in one root login shell started as sshd and login start
/// one (`-bash`), its commands written to its standard input as if typed.
fn admin_session(apt: &mut Apt, dir: &Path) -> Result<()> {
    println!("bench: an admin session in a root login shell ...");
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut installed = Vec::new();
    let mut script = String::new();
    for ways in SESSION {
        if let Some(step) = choose(ways, apt, &mut installed)? {
            script.push_str(&step.script());
        }
    }
    // The environment sshd gives a root login, not the bench's (cargo's variables).
    let mut shell = Command::new("/bin/bash");
    shell
        .arg0("-bash")
        .env_clear()
        .envs([
            ("HOME", "/root"),
            ("USER", "root"),
            ("LOGNAME", "root"),
            ("SHELL", "/bin/bash"),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("TERM", "xterm-256color"),
        ])
        .current_dir(dir)
        .stdin(Stdio::piped());
    let mut child = shell
        .spawn()
        .context("could not start a login shell (`-bash`)")?;
    let mut stdin = child.stdin.take().context("the login shell has no stdin")?;
    stdin
        .write_all(script.as_bytes())
        .context("cannot write to the login shell")?;
    // End of input ends the session, as a logout does.
    drop(stdin);
    let status = child.wait().context("waiting for the login shell")?;
    if !installed.is_empty() {
        println!(
            "bench: purging what the session installed: {} ...",
            installed.join(" ")
        );
        let mut args = vec!["purge", "--autoremove"];
        args.extend(&installed);
        apt.run(&args)?;
    }
    if !status.success() {
        bail!("the admin session failed ({status}): its detections say little");
    }
    Ok(())
}

/// The first of `ways` this machine has, else the first whose package installs; `None`
/// (with a note) when no way is available. Installed packages are added to `installed`.
fn choose<'a>(
    ways: &'a [Step],
    apt: &mut Apt,
    installed: &mut Vec<&'static str>,
) -> Result<Option<&'a Step>> {
    if let Some(step) = ways.iter().find(|s| s.present()) {
        return Ok(Some(step));
    }
    for step in ways {
        let Some((program, Some(package))) = step.needs else {
            continue;
        };
        println!("bench: {program} is missing: installing {package}, its services not started ...");
        // A maintainer script starting a daemon would leave it running after the bench.
        let policy = NoServiceStarts::install()?;
        let r = apt.install(package);
        drop(policy);
        match r {
            Ok(()) => {
                installed.push(package);
                if step.present() {
                    return Ok(Some(step));
                }
                println!("bench: {package} installed but {program} is still missing");
            }
            Err(e) => println!("bench: {package} not installed: {e:#}"),
        }
    }
    let missing: Vec<&str> = ways
        .iter()
        .filter_map(|s| s.needs)
        .map(|(p, _)| p)
        .collect();
    println!(
        "bench: skipping `{}`: {} not installed here",
        ways[0].line,
        missing.join(" or ")
    );
    Ok(None)
}

/// `s` as one single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Detections grouped by (id, severity, title, executable), with counts.
fn report(jsonl: &str) -> Result<()> {
    banner("bench fp: results");
    let mut groups: BTreeMap<(String, String, String, String), u64> = BTreeMap::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).context("a detection that is not JSON")?;
        let field = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let key = (
            field("/detection/id"),
            field("/detection/severity"),
            field("/detection/title"),
            field("/process/exe"),
        );
        *groups.entry(key).or_default() += 1;
    }
    let serious: u64 = groups
        .iter()
        .filter(|((_, severity, _, _), _)| serious(severity))
        .map(|(_, n)| n)
        .sum();
    println!("detections raised: {}", groups.values().sum::<u64>());
    for ((id, severity, title, exe), n) in &groups {
        println!("  {n:>4}  {id}  {severity:<13}  {title}  ({exe})");
    }
    println!("target: no detection of medium severity or above");
    println!(
        "  {serious} of medium or above: {}",
        crate::bench::verdict(Some(serious == 0))
    );
    Ok(())
}

fn serious(severity: &str) -> bool {
    matches!(severity, "medium" | "high" | "critical")
}

#[cfg(test)]
mod tests {
    use super::{SESSION, quote, serious, step};

    #[test]
    fn medium_and_above_count() {
        assert!(serious("medium") && serious("high"));
        assert!(!serious("low") && !serious("informational"));
    }

    #[test]
    fn session_lines_are_quoted_and_expected_failures_tolerated() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        let strict = step("id").script();
        assert!(
            strict.contains("{ id; } </dev/null >/dev/null || {"),
            "{strict}"
        );
        assert!(strict.contains("exit 1"), "{strict}");
        let lenient = step("crontab -l").may_fail("none").script();
        assert!(!lenient.contains("exit 1"), "{lenient}");
        assert!(SESSION.iter().all(|ways| !ways.is_empty()));
    }
}
