//! ClamAV, the scanner the sensor is compared with: Debian's clamd and clamonacc,
//! installed on demand, configured to watch only the bench's tmpfs, and kept from
//! running Debian's own services beside the measured ones.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::eicar_probe::wait_blocks_eicar;
use super::guards::{Scratch, Service, check_interrupted};
use super::{CLAMAV_STOP_TIMEOUT, POLL, READY_TIMEOUT};
use crate::cmd::{self, describe};
use crate::setup::Apt;

/// Where ClamAV's programs are and the private configuration both read.
pub(super) struct ClamAvSetup {
    clamd: PathBuf,
    clamonacc: PathBuf,
    conf: PathBuf,
    dir: PathBuf,
}

impl ClamAvSetup {
    /// Installs ClamAV if needed and writes a clamd.conf that watches only
    /// `mount` and reads only `db`.
    pub(super) fn prepare(scratch: &Scratch, db: &Path, mount: &Path) -> Result<Self> {
        let (clamd, clamonacc) = ensure_clamav()?;
        let version = cmd::output(Command::new(&clamd).arg("--version"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|e| format!("version unknown: {e:#}"));
        println!("bench: clamd {} ({version})", clamd.display());
        let (uid, gid) = user_ids("clamav")?;
        // clamd drops to the clamav user before it creates its socket and
        // temporary files.
        let dir = scratch.mkdir("clamav")?;
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        for d in [&dir, &tmp] {
            std::os::unix::fs::chown(d, Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {} to clamav", d.display()))?;
        }
        let conf = scratch.path().join("clamd.conf");
        let text = format!(
            "# Written by `cargo xtask bench rtp`; watches only the bench's tmpfs.\n\
             LocalSocket {socket}\n\
             User clamav\n\
             Foreground yes\n\
             DatabaseDirectory {db}\n\
             TemporaryDirectory {tmp}\n\
             Bytecode no\n\
             SelfCheck 0\n\
             OnAccessIncludePath {mount}\n\
             OnAccessPrevention yes\n\
             OnAccessExcludeUname clamav\n",
            socket = dir.join("clamd.sock").display(),
            db = db.display(),
            tmp = tmp.display(),
            mount = mount.display(),
        );
        fs::write(&conf, text).with_context(|| format!("cannot write {}", conf.display()))?;
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644))?;
        Ok(Self {
            clamd,
            clamonacc,
            conf,
            dir,
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("clamd.sock")
    }
}

/// clamd and clamonacc, started for one run. clamonacc is declared first so
/// that on an error it is dropped (killed) before the clamd it talks to.
pub(super) struct ClamAv {
    clamonacc: Service,
    clamd: Service,
}

impl ClamAv {
    pub(super) fn start(setup: &ClamAvSetup, tag: &str, mount: &Path) -> Result<Self> {
        let socket = setup.socket();
        let _ = fs::remove_file(&socket);
        let mut clamd = Service::spawn(
            "clamd",
            Command::new(&setup.clamd).arg("-c").arg(&setup.conf),
            &setup.dir.join(format!("clamd-{tag}.log")),
            CLAMAV_STOP_TIMEOUT,
        )?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !clamd_answers(&socket) {
            check_interrupted()?;
            clamd.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "clamd did not answer PING on {} within {}s; {}",
                    socket.display(),
                    READY_TIMEOUT.as_secs(),
                    clamd.log_note()
                );
            }
            sleep(POLL);
        }
        let clamonacc = Service::spawn(
            "clamonacc",
            Command::new(&setup.clamonacc)
                .arg("-c")
                .arg(&setup.conf)
                .args(["-F", "--fdpass"]),
            &setup.dir.join(format!("clamonacc-{tag}.log")),
            CLAMAV_STOP_TIMEOUT,
        )?;
        let mut clamav = Self { clamonacc, clamd };
        let ClamAv { clamonacc, clamd } = &mut clamav;
        wait_blocks_eicar("clamonacc", mount, || {
            clamonacc.check_running()?;
            clamd.check_running()
        })?;
        Ok(clamav)
    }

    pub(super) fn stop(mut self) -> Result<()> {
        // clamonacc first: without clamd it would have no one to ask.
        self.clamonacc.stop()?;
        self.clamd.stop()
    }
}

fn clamd_answers(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = Vec::new();
    s.write_all(b"zPING\0").is_ok() && s.read_to_end(&mut reply).is_ok() && reply == b"PONG\0"
}

/// Finds clamd and clamonacc, installing Debian's packages if either is
/// missing. Only this bench needs them, so `setup` does not install them.
fn ensure_clamav() -> Result<(PathBuf, PathBuf)> {
    let find = || find_program("clamd").zip(find_program("clamonacc"));
    if let Some(found) = find() {
        return Ok(found);
    }
    println!("bench: ClamAV is missing; installing clamav-daemon and clamav with apt-get ...");
    let mut apt = Apt::default();
    apt.install("clamav-daemon")?;
    apt.install("clamav")?;
    quiet_debian_services();
    find().context("apt-get installed ClamAV but clamd or clamonacc is still missing")
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Debian enables its own clamd and freshclam when the packages install, and
/// starts them where the init system lets it. Left running, freshclam fetches
/// signatures from the internet and clamd competes with the measured one for
/// the CPUs; left enabled, they start at the next boot. This undoes both for
/// what the installation just set up.
fn quiet_debian_services() {
    const UNITS: [&str; 4] = [
        "clamav-clamonacc.service",
        "clamav-freshclam.service",
        "clamav-daemon.socket",
        "clamav-daemon.service",
    ];
    let systemctl = find_program("systemctl").is_some();
    let systemd_runs = systemctl && Path::new("/run/systemd/system").is_dir();
    // `disable` only edits symlinks and works without a running systemd;
    // `--now`, which also stops the unit, needs one.
    if systemctl {
        for unit in UNITS {
            let check =
                |verb: &str| cmd::succeeds(Command::new("systemctl").args([verb, "--quiet", unit]));
            let active = systemd_runs && check("is-active");
            if active || check("is-enabled") {
                let mut disable = Command::new("systemctl");
                disable.arg("disable");
                if active {
                    disable.arg("--now");
                }
                disable.arg(unit);
                println!("bench: {}", describe(&disable));
                if let Err(e) = cmd::output(&mut disable) {
                    eprintln!("bench: warning: {e:#}");
                }
            }
        }
    }
    if systemd_runs {
        return;
    }
    // Without systemd, invoke-rc.d runs the init scripts unless a policy-rc.d
    // forbids it (as in containers); a live pid file tells which ran.
    for (script, pid_file) in [
        ("/etc/init.d/clamav-freshclam", "/run/clamav/freshclam.pid"),
        ("/etc/init.d/clamav-daemon", "/run/clamav/clamd.pid"),
    ] {
        let live = fs::read_to_string(pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if live && Path::new(script).is_file() {
            println!("bench: stopping Debian's {script}");
            if let Err(e) = cmd::run(Command::new(script).arg("stop")) {
                eprintln!("bench: warning: {e:#}");
            }
        }
    }
}

fn user_ids(name: &str) -> Result<(u32, u32)> {
    let c_name = CString::new(name).context("user name contains NUL")?;
    // SAFETY: c_name is NUL-terminated; the result points into static storage
    // that is read before any other getpw* call.
    let pw = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if pw.is_null() {
        bail!("there is no user {name:?} (the clamav-base package creates it)");
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}
