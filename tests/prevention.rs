//! Drop and execute stopped with no race against userspace: a file written below a
//! world-writable directory and executed at once, with no pause between the write and the
//! exec, never runs in blocking mode, and is always detected in passive mode.
//!
//! Each test mounts its own tmpfs (mode 0755, outside /tmp) with `safe/` (0755) and
//! `drop/` (1777) in it, and starts a daemon scoped to this test process
//! (`--blocking-scope-pid`), so nothing else on the machine is ever stopped. A payload
//! that ran leaves a marker file: an ELF payload is a copy of /bin/touch given the
//! marker's path, a script runs `touch`.

use std::{
    io::ErrorKind,
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::Command,
};

use sensor_tests::{Collector, Daemon, Event, Tmpfs, is};

const TRIALS: usize = 100;

/// One daemon at a time: a blocking daemon scoped to this process would stop what the
/// passive test expects to run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How a payload reaches the drop directory and is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `drop/x` by its absolute path.
    Absolute,
    /// `./x` from inside `drop/`.
    Relative,
    /// `drop/sub/x`: a directory below the world-writable one.
    Subdirectory,
    /// Written in `safe/`, renamed into `drop/`.
    Renamed,
    /// Written in `safe/`, hard-linked into `drop/`.
    Linked,
    /// A `#!/bin/sh` script in `drop/`.
    Script,
}

const ALL: [Form; 6] = [
    Form::Absolute,
    Form::Relative,
    Form::Subdirectory,
    Form::Renamed,
    Form::Linked,
    Form::Script,
];
const ELF: [Form; 5] = [
    Form::Absolute,
    Form::Relative,
    Form::Subdirectory,
    Form::Renamed,
    Form::Linked,
];

/// What became of one exec.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Refused with EPERM: the caller kept its old image.
    Denied,
    /// Killed by SIGKILL before it could do anything.
    Killed,
    /// Ran to its end.
    Ran,
}

struct Layout {
    fs: Tmpfs,
    safe: PathBuf,
    drop: PathBuf,
}

impl Layout {
    fn new(tag: &str) -> Self {
        let fs = Tmpfs::mount(tag).unwrap();
        let safe = fs.path().join("safe");
        let drop = fs.path().join("drop");
        for (dir, mode) in [(&safe, 0o755), (&drop, 0o1777)] {
            std::fs::create_dir(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Self { fs, safe, drop }
    }

    fn marker(&self, n: usize) -> PathBuf {
        self.fs.path().join(format!("ran-{n}"))
    }
}

/// Puts payload `n` in place as `form` says and runs it at once; returns the path it ran
/// from (absolute) and what became of it.
fn trial(l: &Layout, form: Form, n: usize) -> (PathBuf, Outcome) {
    let marker = l.marker(n);
    let name = format!("p{n}");
    let elf = |at: &Path| {
        std::fs::copy("/bin/touch", at).unwrap();
    };
    let (path, mut cmd) = match form {
        Form::Absolute => {
            let p = l.drop.join(&name);
            elf(&p);
            (p.clone(), Command::new(p))
        }
        Form::Relative => {
            let p = l.drop.join(&name);
            elf(&p);
            let mut c = Command::new(format!("./{name}"));
            c.current_dir(&l.drop);
            (p, c)
        }
        Form::Subdirectory => {
            let dir = l.drop.join(format!("sub{n}"));
            std::fs::create_dir(&dir).unwrap();
            let p = dir.join(&name);
            elf(&p);
            (p.clone(), Command::new(p))
        }
        Form::Renamed | Form::Linked => {
            // Written in a private directory, then moved or linked into the drop one.
            let staged = l.safe.join(&name);
            elf(&staged);
            let p = l.drop.join(&name);
            if form == Form::Renamed {
                std::fs::rename(&staged, &p).unwrap();
            } else {
                std::fs::hard_link(&staged, &p).unwrap();
            }
            (p.clone(), Command::new(p))
        }
        Form::Script => {
            let p = l.drop.join(format!("{name}.sh"));
            std::fs::write(&p, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            (p.clone(), Command::new(p))
        }
    };
    if form != Form::Script {
        cmd.arg(&marker);
    }
    let outcome = match cmd.status() {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Outcome::Denied,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Outcome::Denied,
        Err(e) => panic!("{form:?} trial {n}: {e}"),
        Ok(s) if s.signal() == Some(libc::SIGKILL) => Outcome::Killed,
        Ok(s) => {
            assert!(s.success(), "{form:?} trial {n}: {s:?}");
            Outcome::Ran
        }
    };
    (path, outcome)
}

/// Runs `TRIALS` trials spread over `forms`; returns (form, path, outcome, ran) of each,
/// `ran` saying whether the marker appeared.
fn trials(l: &Layout, forms: &[Form]) -> Vec<(Form, PathBuf, Outcome, bool)> {
    (0..TRIALS)
        .map(|n| {
            let form = forms[n % forms.len()];
            let (path, outcome) = trial(l, form, n);
            (form, path, outcome, l.marker(n).exists())
        })
        .collect()
}

fn sns_0003_for(path: &Path) -> impl Fn(&Event) -> bool + '_ {
    move |e: &Event| {
        is(e, "SNS-0003")
            && e.detection
                .as_ref()
                .is_some_and(|d| d.details.get("path").map(String::as_str) == path.to_str())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_time_protection_denies_every_drop_scripts_included() {
    let _serial = SERIAL.lock().await;
    let l = Layout::new("prevent-rtp");
    let me = std::process::id();
    let d = Daemon::protecting("blocking", &l.fs, me, &[]).unwrap();
    let h = sensor_tests::health(&d.socket).await.unwrap();
    let prevention = h.platform.unwrap().prevention;
    assert!(
        prevention.contains("FAN_OPEN_EXEC_PERM") && prevention.contains(l.fs.arg()),
        "health names real-time protection as what stops drops here: {prevention}"
    );
    let c = Collector::start(&d.socket, &["detection"]).await.unwrap();

    let results = trials(&l, &ALL);
    for (form, path, outcome, ran) in &results {
        assert!(!ran, "{form:?} {} ran", path.display());
        assert_eq!(*outcome, Outcome::Denied, "{form:?} {}", path.display());
    }
    for (form, path, _, _) in &results {
        let e = c
            .expect(
                &format!("SNS-0003 for {form:?} {}", path.display()),
                sns_0003_for(path),
            )
            .await;
        let det = e.detection.unwrap();
        assert_eq!(det.action, "denied", "{det:?}");
        assert!(det.details["denied_by"].contains("real-time protection"));
    }
    assert!(d.rtp_health().denied >= TRIALS as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kernel_stops_every_dropped_elf_without_real_time_protection() {
    let _serial = SERIAL.lock().await;
    let l = Layout::new("prevent-kernel");
    let me = std::process::id().to_string();
    let d = Daemon::start(&["--mode", "blocking", "--blocking-scope-pid", &me]).unwrap();
    let h = sensor_tests::health(&d.socket).await.unwrap();
    let platform = h.platform.unwrap();
    // Where BPF LSM runs (tested under qemu in lsm_vm.rs) the exec is denied instead.
    let expected = if platform.bpf_lsm {
        Outcome::Denied
    } else {
        assert!(
            platform.prevention.contains("scripts are not stopped"),
            "health says scripts are not stopped here: {}",
            platform.prevention
        );
        Outcome::Killed
    };
    let c = Collector::start(&d.socket, &["detection"]).await.unwrap();

    let results = trials(&l, &ELF);
    for (form, path, outcome, ran) in &results {
        assert!(!ran, "{form:?} {} ran", path.display());
        assert_eq!(*outcome, expected, "{form:?} {}", path.display());
    }
    if expected == Outcome::Killed {
        // The kill comes from the exec tracepoint, and the detection says so.
        let e = c
            .expect("SNS-0003 killed at exec", |e| is(e, "SNS-0003"))
            .await;
        let det = e.detection.unwrap();
        assert_eq!(det.action, "killed");
        assert_eq!(det.details["killed_by"], "kernel, at exec");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_mode_detects_every_drop_with_its_absolute_path() {
    let _serial = SERIAL.lock().await;
    let l = Layout::new("prevent-passive");
    let d = Daemon::start(&[]).unwrap();
    let c = Collector::start(&d.socket, &["detection"]).await.unwrap();

    let results = trials(&l, &ALL);
    for (form, path, outcome, ran) in &results {
        assert_eq!(*outcome, Outcome::Ran, "{form:?} {}", path.display());
        assert!(ran, "passive mode never stops: {form:?} {}", path.display());
    }
    for (form, path, _, _) in &results {
        let e = c
            .expect(
                &format!("SNS-0003 for {form:?} {}", path.display()),
                sns_0003_for(path),
            )
            .await;
        assert_eq!(e.detection.unwrap().action, "none");
    }
}
