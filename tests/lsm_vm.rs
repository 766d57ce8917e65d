//! Blocking mode on a kernel that runs BPF LSM: fileless and dropped images are denied at
//! exec (EPERM, the caller keeps running), not killed after the kernel committed to them.
//!
//! This machine's kernel refuses BPF trampolines, so the test boots Debian's 6.1 and 6.12
//! kernels with `lsm=...,bpf` under qemu and runs itself inside as `/init`, driving the
//! same daemon binary as the other tests. Passive mode on the same behaviour is checked
//! first: it loads nothing into the LSM and lets the exec run. On each kernel every
//! program must pass the verifier: a hook may be missing only because the kernel lacks
//! its tracepoint.

use std::{ffi::CString, os::unix::fs::PermissionsExt, process::Command, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use sensor_tests::{Collector, Daemon, Event, TempDir, health, vm};

/// What the guest execs to prove an image runs: this binary, told to exit at once.
const NOOP: &str = "noop";

fn main() {
    if std::env::args().nth(1).as_deref() == Some(NOOP) {
        return;
    }
    if std::process::id() == 1 {
        guest();
    }
    // As libtest does: `--list` names the test, and a name filter that does not match
    // skips it, so `cargo xtask test -- reverse_shell` boots no VM.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("lsm_vm: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "lsm_vm".contains(f.as_str())) {
        println!("running 0 tests (lsm_vm filtered out)");
        return;
    }
    let kernels = vm::kernels().unwrap_or_else(|e| {
        eprintln!("test lsm_vm ... FAILED: {e:#}");
        std::process::exit(1)
    });
    let mut failed = false;
    for kernel in kernels {
        print!("test lsm_vm ({}, qemu, bpf LSM) ... ", kernel.display());
        match host(&kernel) {
            Ok(summary) => println!("ok: {summary}"),
            Err(e) => {
                println!("FAILED");
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn host(kernel: &std::path::Path) -> Result<String> {
    let dir = TempDir::new("vm");
    let initrd = dir.path().join("initrd.cpio");
    vm::Initramfs::for_test(&sensor_tests::sensor_bin())?.write(&initrd)?;
    let console = vm::boot(
        kernel,
        &initrd,
        "lsm=lockdown,capability,landlock,bpf SENSOR_BIN=/sensor",
        Duration::from_secs(900),
    )?;
    let verdict = console
        .lines()
        .rev()
        .find_map(|l| l.split_once(vm::VERDICT).map(|(_, v)| v.trim()))
        .unwrap_or_default();
    match verdict.strip_prefix("PASS") {
        Some(summary) => Ok(summary.trim().to_string()),
        None => bail!("guest: {verdict}\nconsole:\n{console}"),
    }
}

/// Runs as `/init` of the VM: prints the verdict on the console, then powers off.
fn guest() -> ! {
    println!("{}", vm::STARTED);
    let result = std::panic::catch_unwind(|| {
        vm::guest_mounts()?;
        tokio::runtime::Runtime::new()?.block_on(checks())
    });
    match result {
        Ok(Ok(summary)) => println!("{} PASS {summary}", vm::VERDICT),
        Ok(Err(e)) => println!("{} FAIL {e:#}", vm::VERDICT),
        Err(_) => println!("{} FAIL the guest panicked (message above)", vm::VERDICT),
    }
    vm::power_off()
}

async fn checks() -> Result<String> {
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm")?;
    ensure!(
        lsm.split(',').any(|l| l.trim() == "bpf"),
        "the guest kernel runs without the bpf LSM: {lsm}"
    );
    let image = std::fs::read("/init")?;
    let fd = memfd(&image)?;

    let passive = Daemon::start(&[])?;
    passive_mode(&passive, fd)
        .await
        .map_err(|e| explained(e, &passive))?;
    drop(passive);

    let blocking = Daemon::start(&["--mode", "blocking"])?;
    blocking_mode(&blocking, fd, &image)
        .await
        .map_err(|e| explained(e, &blocking))
}

/// The failure with what the daemon said and which hooks it could not attach.
fn explained(e: anyhow::Error, d: &Daemon) -> anyhow::Error {
    e.context(format!("daemon log:\n{}", d.log()))
}

/// Hooks the kernel lacks (their tracepoint does not exist); anything else that failed to
/// load or attach is an error.
fn missing_hooks(h: &sensor_proto::Health) -> Result<Vec<String>> {
    let failed: Vec<_> = h.programs.iter().filter(|p| !p.attached).collect();
    let refused: Vec<_> = failed
        .iter()
        .filter(|p| !p.error.contains("/sys/kernel/tracing/events/"))
        .collect();
    ensure!(refused.is_empty(), "programs refused: {refused:?}");
    Ok(failed.iter().map(|p| p.hook.clone()).collect())
}

/// Passive mode: reported, never stopped, nothing attached to the LSM.
async fn passive_mode(passive: &Daemon, fd: i32) -> Result<()> {
    let h = health(&passive.socket).await?;
    missing_hooks(&h)?;
    ensure!(
        !h.programs.iter().any(|p| p.hook.starts_with("lsm/")),
        "passive mode attached an LSM program"
    );
    let c = Collector::start(&passive.socket, &["detection"]).await?;
    let status = Command::new(format!("/proc/self/fd/{fd}"))
        .arg(NOOP)
        .status()
        .context("passive mode: exec of a memfd")?;
    ensure!(
        status.success(),
        "passive mode: the memfd image failed: {status}"
    );
    let d = detection(&c, "SNS-0002").await?;
    ensure!(d.action == "none", "passive mode acted: {}", d.action);
    Ok(())
}

/// Blocking mode: the exec is refused before the new image exists.
async fn blocking_mode(blocking: &Daemon, fd: i32, image: &[u8]) -> Result<String> {
    let h = health(&blocking.socket).await?;
    let missing = missing_hooks(&h)?;
    let platform = h.platform.context("health has no platform")?;
    ensure!(
        platform.bpf_lsm,
        "blocking mode does not use BPF LSM: {}",
        platform.bpf_lsm_reason
    );
    ensure!(
        platform.prevention.contains("BPF LSM"),
        "prevention does not name BPF LSM: {}",
        platform.prevention
    );
    ensure!(
        h.programs
            .iter()
            .any(|p| p.hook == "lsm/bprm_check_security" && p.attached),
        "lsm/bprm_check_security is not attached: {:?}",
        h.programs
            .iter()
            .filter(|p| !p.attached)
            .collect::<Vec<_>>()
    );
    let c = Collector::start(
        &blocking.socket,
        &[
            "detection",
            "process_exec_denied",
            "file_create",
            "file_write",
        ],
    )
    .await?;

    let err = Command::new(format!("/proc/self/fd/{fd}"))
        .arg(NOOP)
        .status()
        .err()
        .context("blocking mode: the memfd image ran")?;
    ensure!(
        err.raw_os_error() == Some(libc::EPERM),
        "memfd exec failed with {err}, not EPERM"
    );
    let denied = expect(&c, "process_exec_denied of the memfd", |e| {
        e.kind == "process_exec_denied"
            && e.exec
                .as_ref()
                .is_some_and(|x| x.name.starts_with("memfd:sensor-vm"))
    })
    .await?;
    let d = detection(&c, "SNS-0002").await?;
    ensure!(d.action == "denied", "SNS-0002 action {}", d.action);
    ensure!(
        d.details
            .get("denied_by")
            .is_some_and(|b| b.contains("BPF LSM")),
        "SNS-0002 details {:?}",
        d.details
    );
    ensure!(
        d.evidence.contains(&denied.seq),
        "SNS-0002 evidence {:?} lacks the denied exec {}",
        d.evidence,
        denied.seq
    );

    // A file dropped in /tmp is denied once its drop has reached the daemon.
    let dropped = "/tmp/sensor-vm-dropped";
    std::fs::write(dropped, image)?;
    std::fs::set_permissions(dropped, std::fs::Permissions::from_mode(0o755))?;
    expect(&c, "the drop", |e| {
        e.file.as_ref().is_some_and(|f| f.path == dropped)
    })
    .await?;
    let err = Command::new(dropped)
        .arg(NOOP)
        .status()
        .err()
        .context("blocking mode: the dropped file ran")?;
    ensure!(
        err.raw_os_error() == Some(libc::EPERM),
        "dropped exec failed with {err}, not EPERM"
    );
    let d = detection(&c, "SNS-0003").await?;
    ensure!(d.action == "denied", "SNS-0003 action {}", d.action);

    // The same image from a path nobody dropped it in still runs.
    let status = Command::new("/init").arg(NOOP).status()?;
    ensure!(
        status.success(),
        "benign exec under blocking mode: {status}"
    );

    Ok(format!(
        "{} ({}); memfd and dropped execs denied with EPERM; passive mode ran the memfd; \
         {} programs attached, tracepoints missing: {missing:?}",
        platform.kernel,
        platform.bpf_lsm_reason,
        h.programs.len() - missing.len()
    ))
}

fn memfd(image: &[u8]) -> Result<i32> {
    let name = CString::new("sensor-vm")?;
    // SAFETY: plain syscalls on a descriptor this function owns.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    ensure!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    let n = unsafe { libc::write(fd, image.as_ptr().cast(), image.len()) };
    ensure!(n as usize == image.len(), "writing the memfd");
    Ok(fd)
}

async fn detection(c: &Collector, id: &str) -> Result<sensor_proto::Detection> {
    let e = expect(c, id, |e| sensor_tests::is(e, id)).await?;
    Ok(e.detection.unwrap_or_default())
}

/// `Collector::expect` as an error rather than a panic, with a wait fit for emulation.
async fn expect(c: &Collector, what: &str, pred: impl Fn(&Event) -> bool) -> Result<Event> {
    c.try_expect(Duration::from_secs(60), what, pred).await
}
