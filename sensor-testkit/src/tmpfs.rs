//! A private tmpfs: the only file system a test or bench lets real-time protection mark,
//! unmounted on every way out.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::daemon::TempDir;

/// A mounted tmpfs. Dropping it detaches it lazily, so an open file left behind cannot
/// keep it mounted; [`Tmpfs::unmount`] waits for a scanner on its way out instead.
pub struct Tmpfs {
    path: PathBuf,
    mounted: bool,
    _dir: Option<TempDir>,
}

impl Tmpfs {
    /// A tmpfs for a test, in a private directory. Mounted outside /tmp: a file run from
    /// a world-writable directory is drop-and-execute, which the blocking daemons of
    /// concurrent tests would rightly kill.
    pub fn mount(tag: &str) -> Result<Self> {
        let dir = TempDir::under(Path::new("/run/sensor-tests"), tag);
        let mut fs = Self::mount_on(dir.path(), "sensor-test", "size=64m,mode=0755", 0)?;
        fs._dir = Some(dir);
        Ok(fs)
    }

    /// A tmpfs of `size` (as mount(8) takes it: `1g`) on `path`, created if missing,
    /// without device files or set-user-id programs.
    pub fn mount_at(path: &Path, source: &str, size: &str) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Self::mount_on(
            path,
            source,
            &format!("size={size},mode=0755"),
            libc::MS_NOSUID | libc::MS_NODEV,
        )
    }

    fn mount_on(path: &Path, source: &str, options: &str, flags: libc::c_ulong) -> Result<Self> {
        let c = |s: &[u8]| CString::new(s).context("mount argument contains NUL");
        let target = c(path.as_os_str().as_bytes())?;
        let (source, fstype, options) =
            (c(source.as_bytes())?, c(b"tmpfs")?, c(options.as_bytes())?);
        // SAFETY: all strings are NUL-terminated and outlive the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            bail!("mount -t tmpfs on {} failed: {err}", path.display());
        }
        Ok(Self {
            path: path.to_owned(),
            mounted: true,
            _dir: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Unmounts, retrying while something still holds the mount (a scanner on its way
    /// out); after five seconds it is detached lazily rather than left behind, and that
    /// is an error.
    pub fn unmount(mut self) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        self.mounted = false;
        let target = CString::new(self.path.as_os_str().as_bytes()).context("path contains NUL")?;
        for _ in 0..50 {
            // SAFETY: target is NUL-terminated.
            if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EBUSY) {
                bail!("umount {} failed: {err}", self.path.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        detach(&target).with_context(|| format!("umount -l {}", self.path.display()))?;
        bail!(
            "{} stayed busy for 5s; it was detached lazily",
            self.path.display()
        )
    }
}

fn detach(target: &CString) -> io::Result<()> {
    // SAFETY: target is NUL-terminated.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted
            && let Ok(target) = CString::new(self.path.as_os_str().as_bytes())
        {
            let _ = detach(&target);
        }
    }
}
