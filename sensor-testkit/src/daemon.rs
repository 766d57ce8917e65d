//! The real daemon, started from its binary and stopped with SIGTERM when its handle
//! drops, so no test or bench leaves a daemon (or its programs) behind.
//!
//! Tests run as root against the binary `cargo xtask test` builds (`SENSOR_BIN`). Every
//! daemon a test starts gets its own socket in a private directory; the shared one dies
//! with the test process through `PR_SET_PDEATHSIG`. Benches describe their daemon in a
//! [`DaemonSpec`] (their binary, where its socket and log go, their arguments).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sensor_proto::{self as proto, sensor_client::SensorClient};
use tonic::transport::Channel;

use crate::tmpfs::Tmpfs;

/// The daemon binary under test.
pub fn sensor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SENSOR_BIN") {
        return PathBuf::from(p);
    }
    // Fallback for `cargo test` after `cargo xtask build`.
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.join("../target/release/sensor")
}

/// A private directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        Self::under(&std::env::temp_dir(), tag)
    }

    pub fn under(base: &Path, tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = base.join(format!("sensor-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start a daemon: `BIN daemon --socket SOCKET ARGS...`, its output to `log`.
pub struct DaemonSpec {
    pub bin: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub args: Vec<OsString>,
    /// How long start-up may take before the daemon answers health.
    pub ready_timeout: Duration,
    /// How long the daemon may take to leave after SIGTERM: it detaches its eBPF
    /// programs on the way out, which takes seconds.
    pub stop_timeout: Duration,
    /// Stop the daemon with SIGTERM when the thread that started it exits.
    pub die_with_parent: bool,
}

impl DaemonSpec {
    pub fn new(bin: &Path, socket: &Path, log: &Path) -> Self {
        Self {
            bin: bin.to_owned(),
            socket: socket.to_owned(),
            log: log.to_owned(),
            args: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(20),
            die_with_parent: false,
        }
    }

    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    ready_timeout: Duration,
    stop_timeout: Duration,
    /// A test daemon's private directory (socket, log, state), removed after it stops.
    dir: Option<TempDir>,
}

impl Daemon {
    /// Starts a test daemon and waits until it answers health.
    pub fn start(extra: &[&str]) -> Result<Self> {
        Self::start_for_test(extra, false)
    }

    /// A test daemon: in a private directory that holds its socket, log and (unless
    /// `extra` names one) its state.
    fn start_for_test(extra: &[&str], die_with_parent: bool) -> Result<Self> {
        let dir = TempDir::new("daemon");
        let mut spec = DaemonSpec::new(
            &sensor_bin(),
            &dir.path().join("sensor.sock"),
            &dir.path().join("daemon.log"),
        )
        .args(extra.iter().copied());
        if !extra.contains(&"--state-dir") {
            spec = spec.args([
                OsString::from("--state-dir"),
                dir.path().join("state").into(),
            ]);
        }
        // Real-time protection marks every local filesystem by default: a test daemon
        // marks only the tmpfs its test mounted (`--rtp-mount`), or nothing.
        if !extra.contains(&"--rtp-mount") {
            spec = spec.args(["--real-time-protection=false"]);
        }
        spec.die_with_parent = die_with_parent;
        let mut d = Self::spawn(spec)?;
        d.dir = Some(dir);
        d.wait_ready()?;
        Ok(d)
    }

    /// Starts the daemon `spec` describes and waits until it answers health.
    pub fn launch(spec: DaemonSpec) -> Result<Self> {
        let mut d = Self::spawn(spec)?;
        d.wait_ready()?;
        Ok(d)
    }

    /// Starts the daemon `spec` describes, without waiting for it.
    pub fn spawn(spec: DaemonSpec) -> Result<Self> {
        let mut cmd = Command::new(&spec.bin);
        cmd.arg("daemon")
            .arg("--socket")
            .arg(&spec.socket)
            .args(&spec.args);
        let log = std::fs::File::create(&spec.log)
            .with_context(|| format!("cannot create {}", spec.log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if spec.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", spec.bin.display()))?;
        Ok(Self {
            child,
            socket: spec.socket,
            bin: spec.bin,
            log: spec.log,
            ready_timeout: spec.ready_timeout,
            stop_timeout: spec.stop_timeout,
            dir: None,
        })
    }

    /// Waits until the daemon answers health; fails at once if it exits.
    pub fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.ready_timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("daemon exited early ({status}): {}", self.log());
            }
            if self.socket.exists() && health_blocking(&self.socket).is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "daemon not ready within {} s: {}",
            self.ready_timeout.as_secs(),
            self.log()
        )
    }

    /// Fails, naming the end of the log, if the daemon has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("the daemon exited ({status}); {}", self.log_note()),
        }
    }

    /// A daemon whose real-time protection marks only `mount`, blocking (in blocking
    /// `mode`) only inside `scope_pid`'s process tree.
    pub fn protecting(mode: &str, mount: &Tmpfs, scope_pid: u32, extra: &[&str]) -> Result<Self> {
        let pid = scope_pid.to_string();
        let mut args = vec![
            "--mode",
            mode,
            "--rtp-mount",
            mount.arg(),
            "--blocking-scope-pid",
            &pid,
        ];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// Real-time protection's health; callable from sync and async tests alike.
    pub fn rtp_health(&self) -> proto::RealTimeProtection {
        health_blocking(&self.socket)
            .and_then(|h| h.real_time_protection)
            .expect("real-time protection health")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the log is and its last lines, for an error message.
    pub fn log_note(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "its log {}:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the CLI against this daemon; fails with its stderr if it fails.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()?;
        if !out.status.success() {
            bail!(
                "sensor {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `cli(args + --output json)`: one JSON document, or one per line.
    pub fn cli_json(&self, args: &[&str]) -> Result<Vec<serde_json::Value>> {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.cli(&a)?;
        if let Ok(v) = serde_json::from_str(&out) {
            return Ok(vec![v]);
        }
        out.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }

    /// `sensor health --output json`, the shape tools read.
    pub fn health_json(&self) -> Result<serde_json::Value> {
        let mut docs = self.cli_json(&["health"])?;
        if docs.len() != 1 {
            bail!("health printed {} JSON documents, not one", docs.len());
        }
        Ok(docs.remove(0))
    }

    /// SIGTERM, then wait for the exit (SIGKILL when the stop timeout runs out).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        // SAFETY: plain syscall on our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + self.stop_timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the daemon ignored SIGTERM for {} s and was killed; {}",
                    self.stop_timeout.as_secs(),
                    self.log_note()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop();
        }
    }
}

/// One daemon for all tests of a test binary. It is spawned from a thread that lives as
/// long as the process, so PR_SET_PDEATHSIG stops it when the test binary exits.
pub fn shared_daemon() -> &'static Path {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET.get_or_init(|| {
        sweep_dead_test_dirs(&std::env::temp_dir());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            match Daemon::start_for_test(&[], true) {
                Ok(d) => {
                    tx.send(Ok(d.socket.clone())).unwrap();
                    // Keep the handle (and this thread) alive until the process exits.
                    loop {
                        std::thread::park();
                        let _ = &d;
                    }
                }
                Err(e) => tx.send(Err(e)).unwrap(),
            }
        });
        rx.recv().unwrap().expect("starting the shared daemon")
    })
}

/// Removes the private directories of test processes that are gone. A shared daemon's
/// directory outlives its test binary (statics are never dropped), so the next run clears
/// it. Only names [`TempDir`] gives (`sensor-test-TAG-PID-N`) of dead PIDs are touched.
fn sweep_dead_test_dirs(base: &Path) {
    let Ok(dir) = std::fs::read_dir(base) else {
        return;
    };
    for ent in dir.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if !name.starts_with("sensor-test-") {
            continue;
        }
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(ent.path());
        }
    }
}

/// Health on its own thread and runtime: callers may be inside an async test already.
pub fn health_blocking(socket: &Path) -> Option<proto::Health> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(health(&socket)).ok()
    })
    .join()
    .ok()
    .flatten()
}

pub async fn client(socket: &Path) -> Result<SensorClient<Channel>> {
    sensor_proto::client::connect(socket).await
}

pub async fn health(socket: &Path) -> Result<proto::Health> {
    Ok(client(socket)
        .await?
        .get_health(proto::GetHealthRequest {})
        .await?
        .into_inner())
}
