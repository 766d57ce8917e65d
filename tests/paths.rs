//! Paths built by the kernel: every way of naming an executable, every path-only file
//! call with a relative name or a directory descriptor, from processes that exit at once
//! (so `/proc` cannot help), across tmpfs and bind mounts, and a path past the bound.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::symlink},
    path::{Path, PathBuf},
    process::Command,
};

use sensor_tests::{Collector, Event, TempDir, Tmpfs, health_blocking, shared_daemon};

/// One test at a time: a child forked by one (which keeps the parent's descriptors until
/// it exits) could hold a program another has just written open for writing, and its
/// exec would fail with ETXTBSY.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A copy of `/bin/true` that exits at once.
fn payload(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

fn c(s: impl AsRef<[u8]>) -> CString {
    CString::new(s.as_ref()).unwrap()
}

fn cpath(p: &Path) -> CString {
    c(p.as_os_str().as_bytes())
}

/// Runs `body` in a forked child that exits right after it. The child makes raw system
/// calls only, on strings prepared before the fork.
fn in_child(body: impl FnOnce()) {
    // SAFETY: the child only makes system calls and exits; no allocation, no locks.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        body();
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

fn exec_with_marker<'a>(events: &'a [Event], marker: &str) -> Option<&'a Event> {
    events.iter().find(|e| {
        e.process
            .as_ref()
            .is_some_and(|p| p.args.iter().any(|a| a == marker))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_way_of_naming_an_executable_gives_its_real_path() {
    let _serial = SERIAL.lock().await;
    let c0 = Collector::start(shared_daemon(), &["process_exec"])
        .await
        .unwrap();
    let dir = TempDir::new("paths-exec");
    let d = dir.path();
    let real = payload(d, "a.out");
    let real_s = real.to_string_lossy().into_owned();
    std::fs::create_dir(d.join("sub")).unwrap();
    symlink(&real, d.join("link")).unwrap();
    let marker = |form: &str| format!("paths-{form}-{}", std::process::id());

    let run = |program: &str, cwd: &Path, form: &str| {
        let st = Command::new(program)
            .arg(marker(form))
            .current_dir(cwd)
            .status()
            .unwrap();
        assert!(st.success(), "{form}");
    };
    run("./a.out", d, "dot");
    run("../a.out", &d.join("sub"), "dotdot");
    run(d.join("link").to_str().unwrap(), d, "symlink");

    // execveat with a directory descriptor, fexecve, a memfd and a deleted file.
    let argv_of = |form: &str| [c("x"), c(marker(form))];
    let (a_dirfd, a_fd, a_memfd, a_deleted) = (
        argv_of("dirfd"),
        argv_of("fexecve"),
        argv_of("memfd"),
        argv_of("deleted"),
    );
    let image = std::fs::read("/bin/true").unwrap();
    let deleted = payload(d, "gone");
    let (dir_c, name_c, real_c, deleted_c, empty, memfd_name) = (
        cpath(d),
        c("a.out"),
        cpath(&real),
        cpath(&deleted),
        c(""),
        c("sensor-paths"),
    );
    let exec_at = |fd: i32, name: &CString, argv: &[CString; 2], flags: i32| {
        let ptrs = [argv[0].as_ptr(), argv[1].as_ptr(), std::ptr::null()];
        let env: [*const libc::c_char; 1] = [std::ptr::null()];
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                fd,
                name.as_ptr(),
                ptrs.as_ptr(),
                env.as_ptr(),
                flags,
            )
        };
    };
    in_child(|| {
        let dfd = unsafe { libc::open(dir_c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
        exec_at(dfd, &name_c, &a_dirfd, 0);
    });
    in_child(|| {
        let fd = unsafe { libc::open(real_c.as_ptr(), libc::O_RDONLY) };
        exec_at(fd, &empty, &a_fd, libc::AT_EMPTY_PATH);
    });
    in_child(|| {
        let fd = unsafe { libc::memfd_create(memfd_name.as_ptr(), 0) };
        unsafe { libc::write(fd, image.as_ptr().cast(), image.len()) };
        exec_at(fd, &empty, &a_memfd, libc::AT_EMPTY_PATH);
    });
    in_child(|| {
        let fd = unsafe { libc::open(deleted_c.as_ptr(), libc::O_RDONLY) };
        unsafe { libc::unlink(deleted_c.as_ptr()) };
        exec_at(fd, &empty, &a_deleted, libc::AT_EMPTY_PATH);
    });

    for form in ["dot", "dotdot", "symlink", "dirfd", "fexecve"] {
        let m = marker(form);
        let e = c0
            .expect(&format!("exec ({form})"), |e| {
                exec_with_marker(std::slice::from_ref(e), &m).is_some()
            })
            .await;
        let x = e.exec.unwrap();
        assert_eq!(e.process.unwrap().exe, real_s, "{form}");
        assert!(x.path_resolved && !x.deleted, "{form}");
    }
    // The name as given, made absolute against the directory the exec ran in.
    let dot = exec_with_marker(&c0.all(), &marker("dot"))
        .cloned()
        .unwrap();
    assert_eq!(dot.exec.unwrap().filename, real_s);
    let dotdot = exec_with_marker(&c0.all(), &marker("dotdot"))
        .cloned()
        .unwrap();
    let x = dotdot.exec.unwrap();
    assert_eq!(x.filename, real_s);
    assert_eq!(x.cwd, d.join("sub").to_string_lossy());
    let via_link = exec_with_marker(&c0.all(), &marker("symlink"))
        .cloned()
        .unwrap();
    assert_eq!(
        via_link.exec.unwrap().filename,
        d.join("link").to_string_lossy()
    );

    let m = marker("memfd");
    let e = c0
        .expect("exec of a memfd", |e| {
            exec_with_marker(std::slice::from_ref(e), &m).is_some()
        })
        .await;
    assert_eq!(e.process.unwrap().exe, "memfd:sensor-paths");
    assert!(e.exec.unwrap().deleted);

    let m = marker("deleted");
    let e = c0
        .expect("exec of a deleted file", |e| {
            exec_with_marker(std::slice::from_ref(e), &m).is_some()
        })
        .await;
    assert_eq!(e.process.unwrap().exe, deleted.to_string_lossy());
    assert!(e.exec.unwrap().deleted, "a deleted file says so");
}

/// `(kind, path, new_path)` of the file events under `dir`.
fn file_events(c: &Collector, dir: &Path) -> Vec<(String, String, String, bool)> {
    let d = dir.to_string_lossy().into_owned();
    c.all()
        .into_iter()
        .filter_map(|e| {
            let f = e.file?;
            (f.path.starts_with(&d) || f.new_path.starts_with(&d)).then_some((
                e.kind,
                f.path,
                f.new_path,
                f.path_resolved,
            ))
        })
        .collect()
}

async fn wait_for_file(c: &Collector, kind: &str, path: &Path, new_path: Option<&Path>) {
    let (p, n) = (
        path.to_string_lossy().into_owned(),
        new_path.map(|n| n.to_string_lossy().into_owned()),
    );
    c.expect(&format!("{kind} {p} {n:?}"), |e| {
        e.kind == kind
            && e.file.as_ref().is_some_and(|f| {
                f.path == p && f.path_resolved && n.as_ref().is_none_or(|n| &f.new_path == n)
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_only_calls_with_relative_names_from_processes_that_exit_at_once() {
    let _serial = SERIAL.lock().await;
    let c0 = Collector::start(
        shared_daemon(),
        &[
            "file_create",
            "file_rename",
            "file_chmod",
            "file_chown",
            "file_link",
            "file_symlink",
            "file_truncate",
            "file_times",
            "file_unlink",
        ],
    )
    .await
    .unwrap();
    let dir = TempDir::new("paths-calls");
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("a"), b"x").unwrap();
    // Each command is its own short-lived process, given names relative to its cwd.
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(
            "mv a b && chmod 700 b && chown 0:0 b && ln b c && ln -s b d && \
             truncate -s 0 b && touch -d 2001-01-01 b && rm c",
        )
        .current_dir(&d)
        .status()
        .unwrap();
    assert!(st.success());
    let b = d.join("b");
    wait_for_file(&c0, "file_rename", &d.join("a"), Some(&b)).await;
    wait_for_file(&c0, "file_chmod", &b, None).await;
    wait_for_file(&c0, "file_chown", &b, None).await;
    wait_for_file(&c0, "file_link", &b, Some(&d.join("c"))).await;
    wait_for_file(&c0, "file_symlink", &b, Some(&d.join("d"))).await;
    wait_for_file(&c0, "file_truncate", &b, None).await;
    wait_for_file(&c0, "file_times", &b, None).await;
    wait_for_file(&c0, "file_unlink", &d.join("c"), None).await;

    // The *at calls with a directory descriptor, from a child that exits right after.
    std::fs::write(d.join("x1"), b"x").unwrap();
    let (dir_c, x1, x2, x3, x4, x5) = (cpath(&d), c("x1"), c("x2"), c("x3"), c("x4"), c("x5"));
    in_child(|| unsafe {
        let dfd = libc::open(dir_c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
        libc::renameat(dfd, x1.as_ptr(), dfd, x2.as_ptr());
        libc::fchmodat(dfd, x2.as_ptr(), 0o700, 0);
        libc::fchownat(dfd, x2.as_ptr(), 0, 0, 0);
        libc::linkat(dfd, x2.as_ptr(), dfd, x3.as_ptr(), 0);
        libc::symlinkat(x2.as_ptr(), dfd, x4.as_ptr());
        let times = [libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        }; 2];
        libc::utimensat(dfd, x2.as_ptr(), times.as_ptr(), 0);
        libc::unlinkat(dfd, x3.as_ptr(), 0);
        libc::openat(dfd, x5.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600);
    });
    let x2p = d.join("x2");
    wait_for_file(&c0, "file_rename", &d.join("x1"), Some(&x2p)).await;
    wait_for_file(&c0, "file_chmod", &x2p, None).await;
    wait_for_file(&c0, "file_chown", &x2p, None).await;
    wait_for_file(&c0, "file_link", &x2p, Some(&d.join("x3"))).await;
    wait_for_file(&c0, "file_symlink", &d.join("x2"), Some(&d.join("x4"))).await;
    wait_for_file(&c0, "file_times", &x2p, None).await;
    wait_for_file(&c0, "file_unlink", &d.join("x3"), None).await;
    wait_for_file(&c0, "file_create", &d.join("x5"), None).await;
    let unresolved: Vec<_> = file_events(&c0, &d).into_iter().filter(|e| !e.3).collect();
    assert!(unresolved.is_empty(), "{unresolved:?}");
}

/// A bind mount, detached on drop.
struct Bind(PathBuf);

impl Bind {
    fn new(source: &Path, target: &Path) -> Self {
        let (s, t) = (cpath(source), cpath(target));
        let r = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "bind mount: {}", std::io::Error::last_os_error());
        Self(target.to_path_buf())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let t = cpath(&self.0);
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_cross_tmpfs_and_bind_mounts_as_the_process_sees_them() {
    let _serial = SERIAL.lock().await;
    let c0 = Collector::start(shared_daemon(), &["file_create"])
        .await
        .unwrap();
    let dir = TempDir::new("paths-mounts");
    let d = dir.path();
    let outer_dir = d.join("outer");
    std::fs::create_dir(&outer_dir).unwrap();
    let outer = Tmpfs::mount_at(&outer_dir, "sensor-paths-outer", "1m").unwrap();
    let inner_dir = outer.path().join("inner");
    std::fs::create_dir(&inner_dir).unwrap();
    let inner = Tmpfs::mount_at(&inner_dir, "sensor-paths-inner", "1m").unwrap();
    let (src, bind_dir) = (d.join("src"), d.join("bind"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&bind_dir).unwrap();
    let bind = Bind::new(&src, &bind_dir);

    for (cwd, name) in [(&inner_dir, "f"), (&bind_dir, "g")] {
        let st = Command::new("/usr/bin/touch")
            .arg(name)
            .current_dir(cwd)
            .status()
            .unwrap();
        assert!(st.success());
    }
    wait_for_file(&c0, "file_create", &inner_dir.join("f"), None).await;
    // Through the bind mount, not the directory it shows.
    wait_for_file(&c0, "file_create", &bind_dir.join("g"), None).await;
    drop(bind);
    inner.unmount().unwrap();
    outer.unmount().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_past_the_bound_is_marked_and_counted() {
    let _serial = SERIAL.lock().await;
    let socket = shared_daemon();
    let c0 = Collector::start(socket, &["file_create"]).await.unwrap();
    let dir = TempDir::new("paths-long");
    let mut deep = dir.path().to_path_buf();
    for i in 0..5 {
        deep.push(format!("{i}{}", "d".repeat(110)));
    }
    std::fs::create_dir_all(&deep).unwrap();
    assert!(deep.as_os_str().len() > 511);
    let counted = |h: Option<sensor_tests::proto::Health>| {
        h.unwrap()
            .events
            .iter()
            .find(|k| k.kind == "file_create")
            .map_or(0, |k| k.paths_truncated)
    };
    let before = counted(health_blocking(socket));
    let st = Command::new("/usr/bin/touch")
        .arg("long")
        .current_dir(&deep)
        .status()
        .unwrap();
    assert!(st.success());
    let e = c0
        .expect("the create of a file past the bound", |e| {
            e.file
                .as_ref()
                .is_some_and(|f| f.path.ends_with("/long") && !f.path_resolved)
        })
        .await;
    // What is there is the end of the path, never a guess at its start.
    let f = e.file.unwrap();
    assert!(deep.join("long").to_string_lossy().ends_with(&f.path[1..]));
    assert!(counted(health_blocking(socket)) > before);
}
