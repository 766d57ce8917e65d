//! Quarantine and threat history, both kept under the state directory so they survive a
//! restart.
//!
//! The quarantine (`STATE/quarantine`, 0700) holds each file as `ID.bin`, its bytes XORed
//! with a fixed key stream and the file 0400 root-owned, and `ID.json` with what restore
//! needs: path, owner, group, mode, times, size and SHA-256. The encoding is not secrecy:
//! it keeps the payload from running or matching other scanners where it lies. The
//! original is removed only after the copy is on disk, and only if the path still names the
//! inode that was scanned.
//!
//! Restore never follows a symlink: the destination is walked from `/` one directory at a
//! time with `O_NOFOLLOW`, the file is created and renamed relative to the final
//! directory's fd, and a file goes back to its original place only if its owner could have
//! created it there (the owner of a quarantined file may since have swapped a directory of
//! its path for a symlink into a place it cannot write).
//!
//! An entry whose `.bin` or `.json` is missing or does not parse is listed as damaged
//! (its `threat` says what is wrong, naming the file) and can be removed.
//!
//! The threat history (`STATE/threats.jsonl`) is one JSON object per line, appended. Repeats
//! of one threat (same path, name and action) within [`REPEAT_WINDOW`] become one record
//! with a `count`, so a process rewriting a file in a loop cannot flood it; the file is
//! rotated to `threats.jsonl.1` past [`MAX_LOG_BYTES`]. A torn last line (a crash mid-write)
//! is cut off at start-up, so the next record starts on a line of its own.

use std::{
    collections::{HashMap, VecDeque},
    ffi::CString,
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            ffi::OsStrExt,
            fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
        },
    },
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex, Weak, atomic::AtomicU64, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::proto;

const KEY: &[u8] = b"sensor-quarantine";

fn encode(data: &[u8]) -> Vec<u8> {
    data.iter()
        .zip(KEY.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect()
}

pub struct Quarantine {
    dir: PathBuf,
    /// Serializes writers; readers of the directory see whole entries because the
    /// metadata file is renamed into place last.
    lock: Mutex<()>,
}

impl Quarantine {
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("quarantine");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// Stores `data` (the content that was scanned, read through `file`) and removes
    /// `path` if it is still that file.
    pub fn add(
        &self,
        path: &Path,
        file: &File,
        data: &[u8],
        sha256: &str,
        threat: &str,
    ) -> Result<proto::QuarantineEntry> {
        let _g = self.lock.lock().unwrap();
        let meta = file.metadata()?;
        let id = new_id();
        let entry = proto::QuarantineEntry {
            id: id.clone(),
            original_path: path.to_string_lossy().into_owned(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
            atime_ns: meta.atime() * 1_000_000_000 + meta.atime_nsec(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            size: data.len() as u64,
            sha256: sha256.into(),
            threat: threat.into(),
            quarantined_unix_ns: now_ns(),
        };
        let bin = self.dir.join(format!("{id}.bin"));
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&bin)?;
        out.write_all(&encode(data))?;
        out.sync_all()?;
        replace_durably(
            &self.dir.join(format!("{id}.json")),
            &serde_json::to_vec_pretty(&entry)?,
        )?;
        // Only the scanned inode goes: the path may have been replaced meanwhile.
        match fs::symlink_metadata(path) {
            Ok(m) if m.dev() == meta.dev() && m.ino() == meta.ino() => {
                fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?
            }
            _ => log::warn!(
                "{} changed before quarantine; the copy is kept, the path left",
                path.display()
            ),
        }
        Ok(entry)
    }

    /// Every entry, damaged ones included (a `.bin` or `.json` missing or unreadable), oldest
    /// first.
    pub fn list(&self) -> Vec<proto::QuarantineEntry> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                let id = name
                    .strip_suffix(".json")
                    .or_else(|| name.strip_suffix(".bin"))?;
                valid_id(id).then(|| id.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        let mut v: Vec<proto::QuarantineEntry> = ids
            .iter()
            .map(|id| match self.entry(id) {
                Ok(e) if self.dir.join(format!("{id}.bin")).exists() => e,
                Ok(_) => self.damaged(id, format!("{id}.bin is missing")),
                Err(e) => self.damaged(id, format!("{e:#}")),
            })
            .collect();
        v.sort_by_key(|e| e.quarantined_unix_ns);
        v
    }

    /// The stand-in for an entry that cannot be restored: the id (to remove it by), what is
    /// wrong in `threat`, and the size and time of what is left.
    fn damaged(&self, id: &str, what: String) -> proto::QuarantineEntry {
        let left = ["bin", "json"]
            .iter()
            .find_map(|x| fs::symlink_metadata(self.dir.join(format!("{id}.{x}"))).ok());
        proto::QuarantineEntry {
            id: id.to_string(),
            threat: format!("damaged: {what}"),
            size: left.as_ref().map_or(0, |m| m.len()),
            quarantined_unix_ns: left.map_or(0, |m| {
                (m.mtime() * 1_000_000_000 + m.mtime_nsec()).max(0) as u64
            }),
            ..Default::default()
        }
    }

    fn entry(&self, id: &str) -> Result<proto::QuarantineEntry> {
        check_id(id)?;
        let path = self.dir.join(format!("{id}.json"));
        if fs::symlink_metadata(&path).is_err() {
            bail!("{id}.json is missing");
        }
        let text = crate::safe_fs::read_bounded(&path, MAX_RECORD_BYTES)?;
        serde_json::from_slice(&text).map_err(|e| {
            anyhow::anyhow!(
                "{id}.json does not parse as a quarantine record (line {}, column {})",
                e.line(),
                e.column()
            )
        })
    }

    /// Writes the file back with its bytes, owner, group, mode and times, then forgets it.
    /// `dest` is a path the caller chose; without one, the original path, where the file
    /// goes back only if its owner could have created it there.
    pub fn restore(&self, id: &str, dest: Option<&Path>, overwrite: bool) -> Result<PathBuf> {
        let _g = self.lock.lock().unwrap();
        let e = self.entry(id)?;
        let original = dest.is_none();
        let dest = dest.map_or_else(|| PathBuf::from(&e.original_path), Path::to_path_buf);
        let bin = self.dir.join(format!("{id}.bin"));
        let data =
            encode(&fs::read(&bin).with_context(|| format!("quarantine entry {id}: {id}.bin"))?);
        if crate::scan::sha256_hex(&data) != e.sha256 {
            bail!("quarantine entry {id} is damaged ({id}.bin: SHA-256 differs)");
        }
        let (parent, name) = split_destination(&dest)?;
        let dir = open_dir_nofollow(parent)
            .with_context(|| format!("restoring to {}", dest.display()))?;
        if original {
            owner_may_create(&dir, &name, &e, overwrite)
                .with_context(|| format!("restoring to {}", dest.display()))?;
        }
        if !overwrite && stat_at(&dir, &name)?.is_some() {
            bail!("{} exists; pass --overwrite to replace it", dest.display());
        }
        write_restored(&dir, &name, id, &data, &e, overwrite)
            .with_context(|| format!("restoring to {}", dest.display()))?;
        self.forget(id);
        Ok(dest)
    }

    /// Deletes an entry for good, damaged ones included.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _g = self.lock.lock().unwrap();
        check_id(id)?;
        let files = [format!("{id}.json"), format!("{id}.bin")];
        if files
            .iter()
            .all(|f| fs::symlink_metadata(self.dir.join(f)).is_err())
        {
            bail!("no quarantine entry {id}");
        }
        for f in files {
            match fs::remove_file(self.dir.join(&f)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {f}"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn forget(&self, id: &str) {
        let _ = fs::remove_file(self.dir.join(format!("{id}.json")));
        let _ = fs::remove_file(self.dir.join(format!("{id}.bin")));
    }
}

/// Largest quarantine record (`ID.json`) read; a real one is under 1 KiB.
const MAX_RECORD_BYTES: u64 = 64 << 10;

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit())
}

fn check_id(id: &str) -> Result<()> {
    if !valid_id(id) {
        bail!("bad quarantine id: expected up to 64 hexadecimal digits");
    }
    Ok(())
}

/// Writes `data` to `path` so that a crash leaves the old content or the new, never half:
/// a synced temporary file renamed over it, then the directory synced.
pub fn replace_durably(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".new");
    let tmp = PathBuf::from(tmp_name);
    let written = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    written.with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// The directory and file name of an absolute restore destination; `..` is refused rather
/// than resolved, since the walk must see every directory it passes through.
fn split_destination(dest: &Path) -> Result<(&Path, CString)> {
    if !dest.is_absolute() || dest.components().any(|c| c == Component::ParentDir) {
        bail!("{}: expected an absolute path without ..", dest.display());
    }
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        bail!("{}: expected a path to a file", dest.display());
    };
    Ok((parent, CString::new(name.as_bytes())?))
}

/// Opens directory `path` component by component from `/`, refusing any symlink on the way.
fn open_dir_nofollow(path: &Path) -> Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let root = CString::new("/")?;
    // SAFETY: a valid C string; the fd is owned right away.
    let mut dir = owned(unsafe { libc::open(root.as_ptr(), flags) }).context("/")?;
    let mut walked = PathBuf::from("/");
    for part in path.components() {
        let Component::Normal(part) = part else {
            continue;
        };
        walked.push(part);
        let c = CString::new(part.as_bytes())?;
        // SAFETY: dir is an open directory fd; c a valid C string.
        dir = owned(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) }).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
                anyhow::anyhow!(
                    "{}: a symbolic link or not a directory; refused",
                    walked.display()
                )
            } else {
                anyhow::Error::new(e).context(walked.display().to_string())
            }
        })?;
    }
    Ok(dir)
}

fn owned(fd: libc::c_int) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat> {
    // SAFETY: an open fd and a stat buffer of the right type.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(st)
}

/// What `name` is in `dir`, not following a symlink; None if nothing is there.
fn stat_at(dir: &OwnedFd, name: &CString) -> Result<Option<libc::stat>> {
    // SAFETY: an open directory fd, a valid C string and a stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(Some(st));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(None)
    } else {
        Err(e.into())
    }
}

/// Refuses to put a file where its owner could not have created it: write and search
/// permission on the directory for the entry's uid or gid, and in a sticky directory no
/// replacing someone else's file. A root-owned original may go anywhere.
fn owner_may_create(
    dir: &OwnedFd,
    name: &CString,
    e: &proto::QuarantineEntry,
    overwrite: bool,
) -> Result<()> {
    if e.uid == 0 {
        return Ok(());
    }
    let st = fstat(dir)?;
    let class = if st.st_uid == e.uid {
        6
    } else if st.st_gid == e.gid {
        3
    } else {
        0
    };
    if (st.st_mode >> class) & 0o3 != 0o3 {
        bail!(
            "the directory is not writable by the file's owner (uid {}, gid {}); refused",
            e.uid,
            e.gid
        );
    }
    if overwrite
        && st.st_mode & libc::S_ISVTX != 0
        && st.st_uid != e.uid
        && let Some(target) = stat_at(dir, name)?
        && target.st_uid != e.uid
    {
        bail!(
            "the file there belongs to uid {} and the directory is sticky; refused",
            target.st_uid
        );
    }
    Ok(())
}

/// Writes the restored file beside `name` in `dir` and renames it into place, both relative
/// to the directory fd, so nothing can redirect either step. Without `overwrite` the rename
/// refuses to replace anything (RENAME_NOREPLACE), closing the race with the check before.
fn write_restored(
    dir: &OwnedFd,
    name: &CString,
    id: &str,
    data: &[u8],
    e: &proto::QuarantineEntry,
    overwrite: bool,
) -> Result<()> {
    let tmp = CString::new(format!(".{}.restore-{id}", name.to_string_lossy()))?;
    // SAFETY: an open directory fd and a valid C string.
    let fd = owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    })
    .context("creating the temporary file")?;
    let mut f = File::from(fd);
    let applied = apply_content_and_metadata(&mut f, data, e).and_then(|()| {
        let flags = if overwrite { 0 } else { libc::RENAME_NOREPLACE };
        // SAFETY: open directory fds and valid C strings.
        let r = unsafe {
            libc::renameat2(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
                flags,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("renaming into place");
        }
        // SAFETY: an open fd.
        unsafe { libc::fsync(dir.as_raw_fd()) };
        Ok(())
    });
    if applied.is_err() {
        // SAFETY: an open directory fd and a valid C string.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    applied
}

fn apply_content_and_metadata(f: &mut File, data: &[u8], e: &proto::QuarantineEntry) -> Result<()> {
    f.write_all(data)?;
    let fd = f.as_raw_fd();
    // SAFETY: fd is open for the duration of the calls.
    unsafe {
        if libc::fchown(fd, e.uid, e.gid) != 0 {
            return Err(std::io::Error::last_os_error()).context("fchown");
        }
        if libc::fchmod(fd, e.mode) != 0 {
            return Err(std::io::Error::last_os_error()).context("fchmod");
        }
        let ts = |ns: i64| libc::timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000),
        };
        let times = [ts(e.atime_ns), ts(e.mtime_ns)];
        if libc::futimens(fd, times.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("futimens");
        }
    }
    f.sync_all()?;
    Ok(())
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        b = (now_ns() ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Every threat found, appended to `STATE/threats.jsonl`, repeats aggregated.
pub struct ThreatLog {
    inner: Arc<LogInner>,
}

struct LogInner {
    path: PathBuf,
    state: Mutex<LogState>,
    /// Bytes of torn last lines cut off at start-up.
    torn_bytes: AtomicU64,
}

#[derive(Default)]
struct LogState {
    threats: VecDeque<proto::Threat>,
    /// Threats seen again within the window since their record was written.
    repeats: HashMap<RepeatKey, Repeat>,
    file: Option<File>,
    file_bytes: u64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RepeatKey {
    path: String,
    name: String,
    action: String,
}

struct Repeat {
    since: Instant,
    more: u64,
    last: proto::Threat,
}

/// The history in memory is bounded; the files keep more.
const HISTORY: usize = 10_000;
/// Repeats of one threat within this window after its record become one more record, with
/// their count, when the window ends.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);
/// Distinct threats whose repeats are counted at once; past this, records are written as
/// they come (still bounded by rotation).
const MAX_REPEAT_KEYS: usize = 10_000;
/// `threats.jsonl` is rotated to `threats.jsonl.1` (replacing the older one) past this.
pub const MAX_LOG_BYTES: u64 = 8 << 20;
/// A history line longer than this is not a record the sensor wrote; skipped at start-up.
const MAX_LINE_BYTES: usize = 64 << 10;

impl ThreatLog {
    pub fn open(state_dir: &Path) -> Self {
        let path = state_dir.join("threats.jsonl");
        let torn = repair_torn_tail(&path);
        let mut threats = VecDeque::new();
        let rotated = rotated_path(&path);
        for p in [&rotated, &path] {
            read_history(p, &mut threats);
        }
        let file_bytes = fs::symlink_metadata(&path).map_or(0, |m| m.len());
        let inner = Arc::new(LogInner {
            path,
            state: Mutex::new(LogState {
                threats,
                file_bytes,
                ..Default::default()
            }),
            torn_bytes: AtomicU64::new(torn),
        });
        spawn_repeat_flusher(Arc::downgrade(&inner));
        Self { inner }
    }

    /// Records one threat: written at once unless the same threat (path, name, action) was
    /// written less than [`REPEAT_WINDOW`] ago, in which case it is counted and written as one
    /// record with the count when the window ends.
    pub fn record(&self, t: &proto::Threat) {
        let inner = &self.inner;
        let mut st = inner.state.lock().unwrap();
        let key = RepeatKey {
            path: t.path.clone(),
            name: t.name.clone(),
            action: t.action.clone(),
        };
        if let Some(r) = st.repeats.get_mut(&key)
            && r.since.elapsed() < REPEAT_WINDOW
        {
            r.more += 1;
            r.last = t.clone();
            return;
        }
        if let Some(r) = st.repeats.remove(&key) {
            inner.write(&mut st, &r.last, r.more);
        }
        inner.write(&mut st, t, 1);
        if st.repeats.len() >= MAX_REPEAT_KEYS {
            inner.flush_repeats(&mut st, false);
        }
        if st.repeats.len() < MAX_REPEAT_KEYS {
            st.repeats.insert(
                key,
                Repeat {
                    since: Instant::now(),
                    more: 0,
                    last: t.clone(),
                },
            );
        }
    }

    pub fn list(&self) -> Vec<proto::Threat> {
        self.inner
            .state
            .lock()
            .unwrap()
            .threats
            .iter()
            .cloned()
            .collect()
    }

    /// Bytes of a torn last line cut off `threats.jsonl` at start-up (0: none).
    pub fn torn_bytes_repaired(&self) -> u64 {
        self.inner.torn_bytes.load(Ordering::Relaxed)
    }
}

impl LogInner {
    /// Writes the repeats counted so far: those whose window has ended, or all of them.
    fn flush_repeats(&self, st: &mut LogState, all: bool) {
        let ended: Vec<RepeatKey> = st
            .repeats
            .iter()
            .filter(|(_, r)| all || r.since.elapsed() >= REPEAT_WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(r) = st.repeats.remove(&k)
                && r.more > 0
            {
                self.write(st, &r.last, r.more);
            }
        }
    }

    /// Appends one record (with its repeat count) to the file and the history.
    fn write(&self, st: &mut LogState, t: &proto::Threat, count: u64) {
        let mut line = serde_json::to_value(t).unwrap_or_default();
        if let Some(o) = line.as_object_mut() {
            o.insert("count".into(), count.into());
        }
        let line = format!("{line}\n");
        if let Err(e) = self.append(st, line.as_bytes()) {
            log::error!("threat history {}: {e:#}", self.path.display());
        }
        if st.threats.len() == HISTORY {
            st.threats.pop_front();
        }
        st.threats.push_back(t.clone());
    }

    fn append(&self, st: &mut LogState, line: &[u8]) -> Result<()> {
        if st.file_bytes + line.len() as u64 > MAX_LOG_BYTES {
            st.file = None;
            fs::rename(&self.path, rotated_path(&self.path))
                .with_context(|| format!("rotating {}", self.path.display()))?;
            st.file_bytes = 0;
        }
        if st.file.is_none() {
            st.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&self.path)?,
            );
        }
        let f = st.file.as_mut().expect("opened above");
        f.write_all(line)?;
        st.file_bytes += line.len() as u64;
        Ok(())
    }
}

impl Drop for LogInner {
    fn drop(&mut self) {
        let mut st = std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.flush_repeats(&mut st, true);
    }
}

/// Writes counted repeats once their window ends, even if the threat never comes back.
fn spawn_repeat_flusher(log: Weak<LogInner>) {
    let spawned = std::thread::Builder::new()
        .name("threat-repeats".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let Some(inner) = log.upgrade() else {
                    return;
                };
                let mut st = inner.state.lock().unwrap();
                inner.flush_repeats(&mut st, false);
            }
        });
    if let Err(e) = spawned {
        log::error!("threat history: no repeat flusher, repeats wait for the next record: {e}");
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// Appends the records of one history file to `threats`, keeping the last [`HISTORY`].
fn read_history(path: &Path, threats: &mut VecDeque<proto::Threat>) {
    let Ok(file) = crate::safe_fs::open_regular(path) else {
        return;
    };
    let mut reader = BufReader::new(file);
    let mut raw = Vec::new();
    let mut bad = 0u64;
    loop {
        raw.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut raw)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if raw.len() > MAX_LINE_BYTES && raw.last() != Some(&b'\n') {
            // Skip the rest of an over-long line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
            bad += 1;
            continue;
        }
        match serde_json::from_slice::<proto::Threat>(&raw) {
            Ok(t) => {
                if threats.len() == HISTORY {
                    threats.pop_front();
                }
                threats.push_back(t);
            }
            Err(_) => bad += 1,
        }
    }
    if bad > 0 {
        log::warn!(
            "{}: {bad} lines are not threat records; skipped",
            path.display()
        );
    }
}

/// Cuts a last line without its newline (a write torn by a crash) off the history, so the
/// next record is not appended onto it and lost with it. Returns the bytes cut.
fn repair_torn_tail(path: &Path) -> u64 {
    let repaired = (|| -> std::io::Result<u64> {
        let mut f = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            r => r?,
        };
        let len = f.metadata()?.len();
        let keep = complete_lines_len(&mut f, len)?;
        if keep < len {
            f.set_len(keep)?;
            f.sync_all()?;
        }
        Ok(len - keep)
    })();
    match repaired {
        Ok(0) => 0,
        Ok(n) => {
            log::warn!(
                "{}: torn last line ({n} bytes, from an interrupted write) cut off",
                path.display()
            );
            n
        }
        Err(e) => {
            log::error!("{}: tail not checked: {e}", path.display());
            0
        }
    }
}

/// Length of `f` up to and including its last newline.
fn complete_lines_len(f: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("sensor-q-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim.sh");
        let data = b"#!/bin/sh\necho payload\n".to_vec();
        fs::write(&victim, &data).unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o4751)).unwrap();
        let file = File::open(&victim).unwrap();
        let before = file.metadata().unwrap();
        let q = Quarantine::open(&dir.join("state")).unwrap();
        let e = q
            .add(&victim, &file, &data, &crate::scan::sha256_hex(&data), "T")
            .unwrap();
        assert!(!victim.exists());
        let stored = fs::read(dir.join(format!("state/quarantine/{}.bin", e.id))).unwrap();
        assert_ne!(stored, data);
        assert_eq!(q.list().len(), 1);

        fs::write(&victim, b"new").unwrap();
        assert!(q.restore(&e.id, None, false).is_err());
        let back = q.restore(&e.id, None, true).unwrap();
        assert_eq!(fs::read(&back).unwrap(), data);
        let after = fs::metadata(&back).unwrap();
        assert_eq!(after.mode() & 0o7777, 0o4751);
        assert_eq!(after.mtime_nsec(), before.mtime_nsec());
        assert_eq!(after.mtime(), before.mtime());
        assert!(q.list().is_empty());
        assert!(q.remove(&e.id).is_err());
        assert!(q.restore("../x", None, false).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn quarantined(dir: &Path, victim: &Path, uid: u32) -> (Quarantine, proto::QuarantineEntry) {
        let data = b"payload\n".to_vec();
        fs::write(victim, &data).unwrap();
        std::os::unix::fs::chown(victim, Some(uid), Some(uid)).unwrap();
        let file = File::open(victim).unwrap();
        let q = Quarantine::open(&dir.join("state")).unwrap();
        let e = q
            .add(victim, &file, &data, &crate::scan::sha256_hex(&data), "T")
            .unwrap();
        (q, e)
    }

    #[test]
    fn restore_refuses_symlinked_directories_and_places_the_owner_cannot_write() {
        let dir = std::env::temp_dir().join(format!("sensor-q-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let home = dir.join("home");
        fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        let (q, e) = quarantined(&dir, &home.join("f"), 65534);
        let root_only = dir.join("root-only");
        fs::create_dir_all(&root_only).unwrap();
        fs::set_permissions(&root_only, fs::Permissions::from_mode(0o700)).unwrap();

        fs::rename(&home, dir.join("home.old")).unwrap();
        std::os::unix::fs::symlink(&root_only, &home).unwrap();
        let err = format!("{:#}", q.restore(&e.id, None, false).unwrap_err());
        assert!(err.contains("symbolic link"), "{err}");
        // A real directory the owner cannot write is refused too.
        fs::remove_file(&home).unwrap();
        fs::create_dir(&home).unwrap();
        let err = format!("{:#}", q.restore(&e.id, None, false).unwrap_err());
        assert!(err.contains("not writable by the file's owner"), "{err}");
        assert_eq!(fs::read_dir(&root_only).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&home).unwrap().count(), 0);
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        assert_eq!(q.restore(&e.id, None, false).unwrap(), home.join("f"));
        assert_eq!(fs::metadata(home.join("f")).unwrap().uid(), 65534);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_entries_are_listed_and_removable() {
        let dir = std::env::temp_dir().join(format!("sensor-q-damaged-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (q, a) = quarantined(&dir, &dir.join("a"), 0);
        let (_, b) = quarantined(&dir, &dir.join("b"), 0);
        let qdir = dir.join("state/quarantine");
        fs::remove_file(qdir.join(format!("{}.json", a.id))).unwrap();
        fs::write(
            qdir.join(format!("{}.json", b.id)),
            "{\"id\": sensor-secret",
        )
        .unwrap();
        let list = q.list();
        assert_eq!(list.len(), 2, "{list:?}");
        let what = |id: &str| list.iter().find(|e| e.id == id).unwrap().threat.clone();
        assert_eq!(what(&a.id), format!("damaged: {}.json is missing", a.id));
        assert!(what(&b.id).starts_with(&format!("damaged: {}.json does not parse", b.id)));
        assert!(!what(&b.id).contains("sensor-secret"));
        assert!(q.restore(&a.id, None, false).is_err());
        q.remove(&a.id).unwrap();
        q.remove(&b.id).unwrap();
        assert!(q.list().is_empty());
        assert_eq!(fs::read_dir(&qdir).unwrap().count(), 0);
        assert!(q.remove(&a.id).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn threat(path: &str) -> proto::Threat {
        proto::Threat {
            name: "EICAR-Test-File".into(),
            path: path.into(),
            action: "none".into(),
            ..Default::default()
        }
    }

    #[test]
    fn repeats_are_counted_not_written_and_a_torn_tail_is_cut() {
        let dir = std::env::temp_dir().join(format!("sensor-log-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("threats.jsonl");
        let first = serde_json::to_string(&threat("/a")).unwrap();
        fs::write(&file, format!("{first}\n{{\"name\":\"torn")).unwrap();
        {
            let log = ThreatLog::open(&dir);
            assert_eq!(log.torn_bytes_repaired(), "{\"name\":\"torn".len() as u64);
            for _ in 0..1000 {
                log.record(&threat("/b"));
            }
            log.record(&threat("/c"));
            assert_eq!(log.list().len(), 3);
        }
        // Dropped: the 999 counted repeats of /b are written as one record.
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines.iter().any(|l| l["path"] == "/b" && l["count"] == 999),
            "{text}"
        );
        assert_eq!(ThreatLog::open(&dir).list().len(), 4);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_history_file_is_rotated_past_its_bound() {
        let dir = std::env::temp_dir().join(format!("sensor-log-rot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = ThreatLog::open(&dir);
        let long = "x".repeat(4000);
        for i in 0..(MAX_LOG_BYTES / 4000 + 10) {
            log.record(&threat(&format!("/{long}/{i}")));
        }
        let size = |p: &str| fs::metadata(dir.join(p)).unwrap().len();
        assert!(size("threats.jsonl") < MAX_LOG_BYTES / 10);
        assert!(size("threats.jsonl.1") <= MAX_LOG_BYTES);
        drop(log);
        assert_eq!(
            ThreatLog::open(&dir).list().len(),
            HISTORY.min(MAX_LOG_BYTES as usize / 4000 + 10)
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
