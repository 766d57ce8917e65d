//! Booting a test under qemu, for kernel features this machine's kernel refuses (BPF LSM).
//!
//! The guest is the test binary itself: it becomes `/init` of an initramfs that also holds
//! the daemon and the shared libraries both load, so the daemon under test is the very
//! binary the host tests use. The guest reports one line on the serial console, which
//! the host side reads back.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// The line the guest prints last: `SENSOR-VM: PASS ...` or `SENSOR-VM: FAIL ...`.
pub const VERDICT: &str = "SENSOR-VM:";

/// What `/init` prints first, so a boot that died before it ran is told apart from a
/// failing test.
pub const STARTED: &str = "SENSOR-VM-INIT started";

/// The kernels `cargo xtask test` fetched (Debian cloud kernels with BPF LSM), from
/// `SENSOR_VM_KERNELS` (colon-separated paths).
pub fn kernels() -> Result<Vec<PathBuf>> {
    let list = std::env::var_os("SENSOR_VM_KERNELS").context(
        "SENSOR_VM_KERNELS is not set: run the suite with `cargo xtask test`, which fetches \
         the kernels these tests boot",
    )?;
    let kernels: Vec<PathBuf> = std::env::split_paths(&list).collect();
    if kernels.is_empty() {
        bail!("SENSOR_VM_KERNELS names no kernel");
    }
    Ok(kernels)
}

/// An initramfs in the kernel's `newc` cpio format.
#[derive(Default)]
pub struct Initramfs {
    out: Vec<u8>,
    dirs: std::collections::BTreeSet<String>,
    ino: u32,
}

impl Initramfs {
    /// `/init` (this test binary), the daemon as `/sensor`, the libraries both need and
    /// a console device, so the guest's stdout reaches the serial line.
    pub fn for_test(sensor: &Path) -> Result<Self> {
        let me = std::env::current_exe()?;
        let mut fs = Self::default();
        // The root as real systems have it: rootfs is a tmpfs whose root is otherwise
        // world-writable (1777), and every file unpacked below it would count as dropped.
        fs.entry(".", 0o040755, &[], (0, 0));
        fs.file("init", &me)?;
        fs.file("sensor", sensor)?;
        let mut libs = shared_libraries(&me)?;
        libs.extend(shared_libraries(sensor)?);
        libs.sort();
        libs.dedup();
        for lib in libs {
            fs.file(
                lib.to_str()
                    .context("library path")?
                    .trim_start_matches('/'),
                &lib,
            )?;
        }
        fs.dir("dev");
        // The kernel opens /dev/console for init's stdin, stdout and stderr.
        fs.entry("dev/console", 0o020600, &[], (5, 1));
        Ok(fs)
    }

    fn dir(&mut self, path: &str) {
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_string());
        self.entry(path, 0o040755, &[], (0, 0));
    }

    /// Adds the file at `src` as `path`, following symlinks (libraries are often links).
    fn file(&mut self, path: &str, src: &Path) -> Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        let meta = std::fs::metadata(src).with_context(|| format!("{}", src.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", src.display());
        }
        let data = std::fs::read(src)?;
        let mode = 0o100000 | (meta.permissions().mode() & 0o7777);
        self.entry(path, mode, &data, (0, 0));
        Ok(())
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let name_size = path.len() + 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name_size as u32,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn write(mut self, to: &Path) -> Result<()> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        std::fs::File::create(to)?.write_all(&self.out)?;
        Ok(())
    }
}

/// What `ldd` says `bin` loads, the dynamic loader included.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output()?;
    if !out.status.success() {
        bail!(
            "ldd {}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Boots `kernel` with `initrd` under software emulation and returns the console output.
/// `append` is added to the kernel command line; `KEY=value` words there reach `/init`'s
/// environment.
///
/// One vCPU: with two, qemu's TCG sometimes lets a CPU run a breakpoint the kernel has
/// already patched away (jump-label patching at boot), and the guest kernel oopses in
/// `sched_clock_cpu` before `/init` runs. A guest kernel that dies before `/init` printed
/// [`STARTED`] ran none of our code, so it is booted once more; a second such death fails.
pub fn boot(kernel: &Path, initrd: &Path, append: &str, timeout: Duration) -> Result<String> {
    let cmdline = format!("console=ttyS0 panic=-1 {append}");
    let mut attempt = 1;
    loop {
        let out = Command::new("timeout")
            .args(["--kill-after=10", &timeout.as_secs().to_string()])
            .args(["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max"])
            .args(["-m", "2048", "-smp", "1", "-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", &cmdline])
            .stdin(Stdio::null())
            .output()
            .context("starting qemu-system-x86_64 (installed by `cargo xtask test`)")?;
        let console = String::from_utf8_lossy(&out.stdout).into_owned();
        if console.contains(VERDICT) {
            return Ok(console);
        }
        let before_init = !console.contains(STARTED);
        if before_init && attempt == 1 {
            eprintln!(
                "the guest kernel stopped before /init ran (qemu: {}); booting it again; console tail:\n{}",
                out.status,
                tail(&console, 40)
            );
            attempt += 1;
            continue;
        }
        bail!(
            "the guest gave no verdict{} (qemu: {}; stderr: {}); console:\n{console}",
            if before_init {
                ", its kernel stopped before /init ran"
            } else {
                ""
            },
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// For the guest: mounts what the daemon and the tests need on a bare initramfs.
pub fn guest_mounts() -> Result<()> {
    for (fstype, target) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("securityfs", "/sys/kernel/security"),
        ("bpf", "/sys/fs/bpf"),
        ("tmpfs", "/tmp"),
        ("tmpfs", "/run"),
    ] {
        std::fs::create_dir_all(target)?;
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (t, f) = (c(target), c(fstype));
        // SAFETY: NUL-terminated strings that outlive the call; no data.
        if unsafe { libc::mount(f.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) } != 0 {
            bail!(
                "mount -t {fstype} {target}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    std::fs::create_dir_all("/var/lib")?;
    Ok(())
}

/// For the guest: ends the VM (init must never exit).
pub fn power_off() -> ! {
    // SAFETY: plain syscalls.
    unsafe {
        // What init wrote may still sit in the serial driver's buffer: power-off would
        // drop it.
        libc::tcdrain(1);
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
