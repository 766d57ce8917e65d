//! Reading files the sensor does not trust: definitions, rules, configuration and
//! certificates may have been planted, swapped for a symlink to a root-only file, or
//! replaced by a FIFO or a device that never ends. Every such read goes through here, so
//! each one refuses what is not a plain file, stops at a bound, and names the file (never
//! its content) when it refuses.

use std::{
    fs::{self, File},
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use anyhow::{Context, Result, bail};
use sensor_proto::client::writable_by_others;

/// Opens `path` for reading if it is a regular file itself (not through a symlink), without
/// ever blocking on a FIFO or touching a device: checked before the open (so a device's open
/// has no side effect) and again on the opened fd (so a swap in between is caught).
pub fn open_regular(path: &Path) -> Result<File> {
    let before = std::fs::symlink_metadata(path).with_context(|| path.display().to_string())?;
    if !before.file_type().is_file() {
        bail!("{}: {}", path.display(), not_regular(&before));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| path.display().to_string())?;
    let after = file
        .metadata()
        .with_context(|| path.display().to_string())?;
    if !after.is_file() || after.dev() != before.dev() || after.ino() != before.ino() {
        bail!("{}: replaced while being opened", path.display());
    }
    Ok(file)
}

/// The whole content of the regular file `path`, refused if it is larger than `max` bytes
/// (checked on the size and again while reading, since a file can grow).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > max {
        bail!(
            "{}: {size} bytes, more than the limit of {max}",
            path.display()
        );
    }
    let mut data = Vec::with_capacity(size as usize);
    file.take(max + 1)
        .read_to_end(&mut data)
        .with_context(|| path.display().to_string())?;
    if data.len() as u64 > max {
        bail!("{}: more than the limit of {max} bytes", path.display());
    }
    Ok(data)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text_bounded(path: &Path, max: u64) -> Result<String> {
    String::from_utf8(read_bounded(path, max)?).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

fn not_regular(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link, not a regular file"
    } else if t.is_dir() {
        "a directory, not a regular file"
    } else if t.is_fifo() {
        "a FIFO, not a regular file"
    } else if t.is_char_device() || t.is_block_device() {
        "a device, not a regular file"
    } else if t.is_socket() {
        "a socket, not a regular file"
    } else {
        "not a regular file"
    }
}

/// Refuses `path` (described as `what`) unless it belongs to the daemon's user and no
/// group or other user can write it.
pub fn owned_and_not_shared(path: &Path, m: &fs::Metadata, what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        bail!(
            "{what} {} belongs to uid {}, not to the daemon's user (uid {me})",
            path.display(),
            m.uid()
        );
    }
    if writable_by_others(m) {
        bail!(
            "{what} {} is writable by others (mode {:04o}); refusing to use it",
            path.display(),
            m.mode() & 0o7777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_plain_file_and_what_is_too_big() {
        let tmp = sensor_testkit::TempDir::new("safe-fs");
        let dir = tmp.path();
        let plain = dir.join("plain");
        std::fs::write(&plain, b"0123456789").unwrap();
        assert_eq!(read_bounded(&plain, 10).unwrap(), b"0123456789");
        let e = read_bounded(&plain, 9).unwrap_err().to_string();
        assert!(e.contains("limit of 9") && !e.contains("0123"), "{e}");

        let link = dir.join("link");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        let e = format!("{:#}", read_bounded(&link, 100).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");

        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = format!("{:#}", read_bounded(&fifo, 100).unwrap_err());
        assert!(e.contains("FIFO"), "{e}");

        let e = format!(
            "{:#}",
            read_bounded(Path::new("/dev/zero"), 100).unwrap_err()
        );
        assert!(e.contains("device"), "{e}");
    }
}
