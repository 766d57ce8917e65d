//! `cargo xtask setup`: installs what a fresh machine lacks to build and run
//! the sensor (LLVM matching rustc's, bpf-linker built against it, rust-src),
//! auditd for the capture bench's peer, and mounts the kernel filesystems the
//! daemon needs. Every step checks
//! first, so running it again is cheap and changes nothing.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, command, describe, is_root};

pub fn setup() -> Result<()> {
    let llvm = rustc_llvm_major()?;
    let mut apt = Apt::default();
    ensure_llvm(llvm, &mut apt)?;
    ensure_bpf_linker(llvm)?;
    ensure_rust_src()?;
    // Only one bench's peer needs it: a failed install must not stop a build or the tests.
    if let Err(e) = ensure_auditd(&mut apt) {
        eprintln!(
            "setup: warning: auditd not installed ({e:#}); only `bench capture --peer auditd` needs it"
        );
    }
    ensure_kernel_filesystems()?;
    Ok(())
}

/// bpf-linker must use the LLVM major version rustc emits bitcode for;
/// a mismatch fails at link time with an opaque `Invalid record`.
fn rustc_llvm_major() -> Result<u32> {
    let out = cmd::output(command("rustc").arg("-vV"))?;
    let version = out
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .context("`rustc -vV` printed no `LLVM version:` line")?
        .trim();
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot parse rustc's LLVM version {version:?}"))?;
    println!("setup: rustc uses LLVM {version} (major {major})");
    Ok(major)
}

fn llvm_prefix(major: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/llvm-{major}"))
}

/// The shared libLLVM, which is what bpf-linker links against.
fn find_libllvm(major: u32) -> Option<PathBuf> {
    let lib = llvm_prefix(major).join("lib");
    let versioned = format!("libLLVM-{major}.so");
    fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n == "libLLVM.so" || n == versioned || n.starts_with("libLLVM.so.")
            })
        })
}

fn ensure_llvm(major: u32, apt: &mut Apt) -> Result<()> {
    let package = format!("llvm-{major}-dev");
    if let Some(lib) = find_libllvm(major) {
        println!("setup: {package} present ({})", lib.display());
        return Ok(());
    }
    if !is_root() {
        bail!(
            "{package} is missing ({}/lib has no libLLVM) and installing it needs root: \
             run `cargo xtask setup` as root, or `apt-get install {package}`",
            llvm_prefix(major).display()
        );
    }
    println!("setup: installing {package} with apt-get ...");
    apt.install(&package)?;
    match find_libllvm(major) {
        Some(lib) => {
            println!("setup: {package} installed ({})", lib.display());
            Ok(())
        }
        None => bail!(
            "apt-get installed {package} but {}/lib still has no libLLVM",
            llvm_prefix(major).display()
        ),
    }
}

/// auditd, the peer of `bench capture --peer auditd`. Installed without starting it:
/// Debian starts the service on install, and audit, once enabled, slows every process
/// forked afterwards until reboot, which would spoil every later measurement. The
/// bench starts and stops it itself.
fn ensure_auditd(apt: &mut Apt) -> Result<()> {
    if let Some(path) = which("auditctl").filter(|_| which("auditd").is_some()) {
        println!("setup: auditd present ({})", path.display());
        return Ok(());
    }
    if !is_root() {
        println!(
            "setup: auditd missing (for `bench capture --peer auditd`); installing it needs root"
        );
        return Ok(());
    }
    println!("setup: installing auditd with apt-get, its service not started ...");
    let policy = NoServiceStarts::install()?;
    let r = apt.install("auditd");
    drop(policy);
    r?;
    if which("systemctl").is_some() {
        // Only edits symlinks: auditd does not start at boot either.
        let mut disable = Command::new("systemctl");
        disable.args(["disable", "auditd.service"]);
        if let Err(e) = cmd::output(&mut disable) {
            eprintln!("setup: warning: {e:#}");
        }
    }
    Ok(())
}

/// Debian's `policy-rc.d` answering 101 ("action forbidden"): package scripts then
/// install services without starting them (invoke-rc.d and deb-systemd-invoke both ask
/// it). Put in place only where none exists, and removed on drop.
pub(crate) struct NoServiceStarts {
    path: Option<PathBuf>,
}

impl NoServiceStarts {
    const PATH: &str = "/usr/sbin/policy-rc.d";

    pub(crate) fn install() -> Result<Self> {
        let path = Path::new(Self::PATH);
        if path.exists() {
            println!("setup: keeping the existing {}", path.display());
            return Ok(Self { path: None });
        }
        fs::write(path, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        Ok(Self {
            path: Some(path.to_owned()),
        })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(p) = &self.path
            && let Err(e) = fs::remove_file(p)
        {
            eprintln!("setup: warning: cannot remove {}: {e}", p.display());
        }
    }
}

fn ensure_bpf_linker(major: u32) -> Result<()> {
    let found = which("bpf-linker").filter(|p| cmd::succeeds(Command::new(p).arg("--version")));
    let reinstall = match &found {
        None => {
            println!(
                "setup: bpf-linker missing; installing it with cargo install (about 2 min) ..."
            );
            false
        }
        Some(path) => match linked_llvm_major(path) {
            Some(linked) if linked != major => {
                println!(
                    "setup: bpf-linker at {} uses LLVM {linked}, rustc uses LLVM {major}; \
                     reinstalling it with cargo install (about 2 min) ...",
                    path.display()
                );
                true
            }
            _ => {
                println!("setup: bpf-linker present ({})", path.display());
                return Ok(());
            }
        },
    };
    let mut install = command(cmd::cargo());
    install
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", llvm_prefix(major));
    if reinstall {
        install.arg("--force");
    }
    cmd::run(&mut install).context("installing bpf-linker failed")?;
    match which("bpf-linker") {
        Some(path) if cmd::succeeds(Command::new(&path).arg("--version")) => {
            println!("setup: bpf-linker installed ({})", path.display());
            Ok(())
        }
        _ => bail!(
            "`cargo install bpf-linker` succeeded but `bpf-linker --version` still fails \
             (looked in PATH and {})",
            cmd::cargo_bin_dir().map_or("~/.cargo/bin".into(), |p| p.display().to_string())
        ),
    }
}

/// The LLVM major version a dynamically linked bpf-linker loads, if `ldd`
/// can tell; a statically linked one gives no answer and is trusted.
fn linked_llvm_major(bin: &Path) -> Option<u32> {
    let out = Command::new("ldd")
        .arg(bin)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("libLLVM"))
        .and_then(llvm_major_from_soname)
}

/// `libLLVM.so.22.1` and `libLLVM-22.so` both give 22.
fn llvm_major_from_soname(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("libLLVM")?;
    let digits: String = rest
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&cmd::path_with_cargo_bin())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `-Z build-std=core` compiles core for the BPF target from rust-src.
fn ensure_rust_src() -> Result<()> {
    let sysroot = PathBuf::from(cmd::output(command("rustc").args(["--print", "sysroot"]))?.trim());
    let library = sysroot.join("lib/rustlib/src/rust/library");
    if library.join("core").is_dir() {
        println!("setup: rust-src present ({})", library.display());
        return Ok(());
    }
    // The sysroot directory is named after the toolchain; naming it explicitly
    // avoids adding rust-src to whatever rustup would pick from the cwd.
    let toolchain = sysroot
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!(
                "cannot tell the toolchain from sysroot {}",
                sysroot.display()
            )
        })?
        .to_owned();
    println!("setup: installing rust-src for {toolchain} with rustup ...");
    cmd::run(command("rustup").args(["component", "add", "rust-src", "--toolchain", &toolchain]))
        .context("installing rust-src failed (is this toolchain managed by rustup?)")?;
    if !library.join("core").is_dir() {
        bail!(
            "rustup added rust-src but {} is still missing",
            library.display()
        );
    }
    println!("setup: rust-src installed ({})", library.display());
    Ok(())
}

const TRACEFS: &str = "/sys/kernel/tracing";
const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn ensure_kernel_filesystems() -> Result<()> {
    if !is_root() {
        println!("setup: not root: skipping tracefs/bpffs mounts; the daemon needs root");
        return Ok(());
    }
    // Fresh machines of this kind boot without tracefs, and tracepoint
    // attachment looks events up there.
    if Path::new(TRACEFS).join("events").is_dir() {
        println!("setup: tracefs mounted at {TRACEFS}");
    } else {
        println!("setup: mounting tracefs at {TRACEFS}");
        mount("none", TRACEFS, "tracefs")?;
    }
    if is_bpffs(BPFFS) {
        println!("setup: bpffs mounted at {BPFFS}");
    } else {
        println!("setup: mounting bpffs at {BPFFS}");
        mount("bpf", BPFFS, "bpf")?;
    }
    Ok(())
}

fn is_bpffs(path: &str) -> bool {
    let Ok(c_path) = CString::new(path) else {
        return false;
    };
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and st is a valid, writable statfs.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs.
    let fs_type = st.f_type as i64;
    rc == 0 && fs_type == BPF_FS_MAGIC
}

fn mount(source: &str, target: &str, fstype: &str) -> Result<()> {
    let c = |s: &str| CString::new(s).expect("mount arguments are constants without NUL");
    let (src, tgt, fs) = (c(source), c(target), c(fstype));
    // SAFETY: all strings are NUL-terminated and outlive the call; no data.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!("mount -t {fstype} {source} {target} failed: {err}");
    }
    Ok(())
}

/// Runs apt-get non-interactively, refreshing the package lists once per
/// xtask run and only when something has to be installed.
#[derive(Default)]
pub(crate) struct Apt {
    updated: bool,
}

impl Apt {
    pub(crate) fn install(&mut self, package: &str) -> Result<()> {
        self.run(&["install", "--no-install-recommends", package])
    }

    /// `apt-get ARGS -y`.
    pub(crate) fn run(&mut self, args: &[&str]) -> Result<()> {
        self.update()?;
        let mut all = args.to_vec();
        all.push("-y");
        apt_get(&all, None)
    }

    /// Fetches a package's `.deb` into `dir` without installing it.
    pub(crate) fn download(&mut self, package: &str, dir: &Path) -> Result<()> {
        self.update()?;
        apt_get(&["download", package], Some(dir))
    }

    fn update(&mut self) -> Result<()> {
        if !self.updated {
            println!("setup: running apt-get update ...");
            apt_get(&["update"], None)?;
            self.updated = true;
        }
        Ok(())
    }
}

/// Another apt or unattended-upgrades holding the dpkg lock is common right
/// after boot, so lock failures are retried rather than reported.
fn apt_get(args: &[&str], dir: Option<&Path>) -> Result<()> {
    const ATTEMPTS: u32 = 5;
    const PAUSE: Duration = Duration::from_secs(10);
    for attempt in 1..=ATTEMPTS {
        let mut apt = Command::new("apt-get");
        if let Some(dir) = dir {
            apt.current_dir(dir);
        }
        apt.args(["-o", "DPkg::Lock::Timeout=60"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let out = apt.output().with_context(|| {
            format!(
                "could not start `{}` (is this Debian or Ubuntu?)",
                describe(&apt)
            )
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("{stderr}");
        if out.status.success() {
            return Ok(());
        }
        let locked = [
            "Could not get lock",
            "Unable to acquire",
            "is held by process",
        ]
        .iter()
        .any(|m| stderr.contains(m));
        if !locked || attempt == ATTEMPTS {
            bail!("`{}` failed ({})", describe(&apt), out.status);
        }
        println!(
            "setup: apt/dpkg lock is held by another process; retrying in {}s ({attempt}/{ATTEMPTS})",
            PAUSE.as_secs()
        );
        sleep(PAUSE);
    }
    unreachable!("the last attempt returns or bails")
}

#[cfg(test)]
mod tests {
    use super::llvm_major_from_soname;

    #[test]
    fn soname_major() {
        assert_eq!(llvm_major_from_soname("libLLVM.so.22.1"), Some(22));
        assert_eq!(llvm_major_from_soname("libLLVM-22.so"), Some(22));
        assert_eq!(llvm_major_from_soname("libLLVM-19.so.1"), Some(19));
        assert_eq!(llvm_major_from_soname("libLLVM.so"), None);
        assert_eq!(llvm_major_from_soname("libc.so.6"), None);
    }
}
