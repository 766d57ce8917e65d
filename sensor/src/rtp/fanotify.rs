//! A thin, checked layer over fanotify(7): the group, its marks, its events and answers.
//!
//! Everything unsafe about fanotify is here: the raw event records are parsed with every
//! length checked (a short or garbled record ends the batch, it never reads past it), and
//! each event's fd becomes an `OwnedFd` at once so none can leak.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::ffi::OsStrExt,
    path::Path,
};

pub const OPEN_PERM: u64 = libc::FAN_OPEN_PERM;
pub const OPEN_EXEC_PERM: u64 = libc::FAN_OPEN_EXEC_PERM;
pub const CLOSE_WRITE: u64 = libc::FAN_CLOSE_WRITE;
pub const PERM_EVENTS: u64 = OPEN_PERM | OPEN_EXEC_PERM;
const Q_OVERFLOW: u64 = libc::FAN_Q_OVERFLOW;

pub struct Group {
    fd: OwnedFd,
    /// Ignore marks are evictable where the kernel allows it (5.19+), so the verdict
    /// cache never pins inodes in memory.
    evictable: std::sync::atomic::AtomicBool,
}

pub struct Event {
    pub mask: u64,
    pub pid: i32,
    /// None for events that carry no file (queue overflow).
    pub fd: Option<OwnedFd>,
    /// A record the kernel's own layout does not account for: answered "allow" and counted.
    pub garbled: bool,
}

impl Event {
    pub fn is_perm(&self) -> bool {
        self.mask & PERM_EVENTS != 0
    }
    pub fn is_overflow(&self) -> bool {
        self.mask & Q_OVERFLOW != 0
    }
}

impl Group {
    /// A content-class group: permission events arrive before the access, after any
    /// pre-content listener (HSM) has filled the file in.
    pub fn new() -> io::Result<Self> {
        let flags = libc::FAN_CLASS_CONTENT
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_UNLIMITED_QUEUE
            | libc::FAN_UNLIMITED_MARKS;
        let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: fanotify_init returned a new fd we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            evictable: true.into(),
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Marks the mount at `path` for `mask`.
    pub fn mark_mount(&self, path: &Path, mask: u64) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: c is a valid C string for the call.
        let r = unsafe {
            libc::fanotify_mark(
                self.raw(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops permission events for the file `fd` is open on until it is next modified:
    /// the kernel clears an ignore mask on modification (we never ask it to survive).
    pub fn ignore_until_modified(&self, fd: RawFd) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        let base = libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORED_MASK;
        let try_mark = |flags| {
            // SAFETY: a NULL path with a dirfd marks the object the fd refers to.
            unsafe { libc::fanotify_mark(self.raw(), flags, PERM_EVENTS, fd, std::ptr::null()) }
        };
        if self.evictable.load(Ordering::Relaxed) {
            if try_mark(base | libc::FAN_MARK_EVICTABLE) == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            self.evictable.store(false, Ordering::Relaxed);
        }
        if try_mark(base) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes back an ignore mark set by [`Self::ignore_until_modified`].
    pub fn unignore(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: as in ignore_until_modified.
        let r = unsafe {
            libc::fanotify_mark(
                self.raw(),
                libc::FAN_MARK_REMOVE | libc::FAN_MARK_IGNORED_MASK,
                PERM_EVENTS,
                fd,
                std::ptr::null(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Drops every inode mark, i.e. every ignore mark: after a definitions update, files
    /// found clean must be scanned again.
    pub fn flush_inode_marks(&self) -> io::Result<()> {
        // SAFETY: FLUSH takes no path.
        let r = unsafe {
            libc::fanotify_mark(
                self.raw(),
                libc::FAN_MARK_FLUSH,
                0,
                libc::AT_FDCWD,
                std::ptr::null(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn respond(&self, event_fd: RawFd, allow: bool) -> io::Result<()> {
        let resp = libc::fanotify_response {
            fd: event_fd,
            response: if allow {
                libc::FAN_ALLOW
            } else {
                libc::FAN_DENY
            },
        };
        let size = std::mem::size_of::<libc::fanotify_response>();
        // SAFETY: resp is a valid, initialized struct of `size` bytes.
        let n = unsafe {
            libc::write(
                self.raw(),
                (&resp as *const libc::fanotify_response).cast(),
                size,
            )
        };
        if n != size as isize {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` for events and reads what is queued (0: does not wait).
    pub fn read(&self, buf: &mut [u8], timeout_ms: i32) -> io::Result<Vec<Event>> {
        let mut pfd = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if timeout_ms != 0 && unsafe { libc::poll(&mut pfd, 1, timeout_ms) } <= 0 {
            return Ok(Vec::new());
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        Ok(parse(&buf[..n as usize]))
    }
}

/// The events in one read. The kernel only writes whole records; a record that does not
/// fit its own stated length ends the batch.
fn parse(mut buf: &[u8]) -> Vec<Event> {
    const META: usize = std::mem::size_of::<libc::fanotify_event_metadata>();
    let mut out = Vec::new();
    while buf.len() >= META {
        // SAFETY: at least META bytes remain; read_unaligned tolerates any alignment.
        let m: libc::fanotify_event_metadata =
            unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        let len = m.event_len as usize;
        let fd = (m.fd >= 0).then(|| {
            // SAFETY: the kernel opened this fd for us; nobody else owns it.
            unsafe { OwnedFd::from_raw_fd(m.fd) }
        });
        if m.vers != libc::FANOTIFY_METADATA_VERSION || len < META || len > buf.len() {
            // Nothing after it can be trusted. Its fd is still handed over: if it was a
            // permission event, only an answer (or closing the group) releases the opener.
            out.push(Event {
                mask: 0,
                pid: m.pid,
                fd,
                garbled: true,
            });
            break;
        }
        out.push(Event {
            mask: m.mask,
            pid: m.pid,
            fd,
            garbled: false,
        });
        buf = &buf[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbled_records_end_the_batch_without_overread() {
        assert!(parse(&[0u8; 7]).is_empty());
        let mut rec = [0u8; 24];
        rec[0..4].copy_from_slice(&1000u32.to_ne_bytes()); // length past the buffer
        rec[4] = libc::FANOTIFY_METADATA_VERSION;
        rec[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        let ev = parse(&rec);
        assert!(ev.len() == 1 && ev[0].garbled && ev[0].fd.is_none());
        rec[0..4].copy_from_slice(&24u32.to_ne_bytes());
        rec[8..16].copy_from_slice(&libc::FAN_Q_OVERFLOW.to_ne_bytes());
        let ev = parse(&rec);
        assert_eq!(ev.len(), 1);
        assert!(ev[0].is_overflow() && ev[0].fd.is_none() && !ev[0].garbled);
    }
}
