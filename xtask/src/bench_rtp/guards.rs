//! Guards: whatever the bench starts or creates is undone on every path out, Ctrl-C
//! included. (The tmpfs guard is the test kit's `Tmpfs`.)

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::describe;

/// A process the bench started, its output in a log file. Dropping it stops
/// the process, so an error midway never leaves a scanner running.
pub(super) struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
    stop_timeout: Duration,
}

impl Service {
    pub(super) fn spawn(
        name: &'static str,
        cmd: &mut Command,
        log: &Path,
        stop_timeout: Duration,
    ) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        println!("bench: starting {name}: {}", describe(cmd));
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", describe(cmd)))?;
        Ok(Self {
            name,
            child,
            log: log.to_owned(),
            stop_timeout,
        })
    }

    pub(super) fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited ({status}); {}", self.name, self.log_note()),
        }
    }

    /// SIGTERM, then a bounded wait; SIGKILL if that runs out.
    pub(super) fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("{} had already exited; {}", self.name, self.log_note());
        }
        match self.terminate()? {
            Some(status) if status.success() => Ok(()),
            Some(status) => {
                eprintln!(
                    "bench: warning: {} exited with {status} after SIGTERM",
                    self.name
                );
                Ok(())
            }
            None => bail!(
                "{} did not exit within {}s of SIGTERM and was killed; {}",
                self.name,
                self.stop_timeout.as_secs(),
                self.log_note()
            ),
        }
    }

    /// The exit status if the process left on SIGTERM, None if it had to be killed.
    fn terminate(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: plain syscall on our own child, which has not been reaped.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            let err = io::Error::last_os_error();
            bail!("sending SIGTERM to {} (pid {pid}) failed: {err}", self.name);
        }
        let deadline = Instant::now() + self.stop_timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(None)
    }

    pub(super) fn log_note(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "its log {}:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("bench: stopping {} (pid {})", self.name, self.child.id());
            if self.terminate().is_err() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The bench's scratch directory, removed on drop. Under /var/tmp, which is on
/// disk where /tmp may be a tmpfs: the `scan custom` tree must be on disk.
/// World-readable, because clamd reads its database as the clamav user.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new() -> Result<Self> {
        let path = PathBuf::from(format!("/var/tmp/xtask-bench-rtp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        Ok(Self(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    pub(super) fn mkdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.0.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns Ctrl-C and SIGTERM into an error at the next check, so the guards
/// above still unmount and stop everything; children in the same process
/// group get the signal themselves.
pub(super) fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, handler) };
    }
}

pub(super) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
