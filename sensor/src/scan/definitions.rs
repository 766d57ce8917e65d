//! Definitions: the signature set the scanner matches, and the versioned store it lives in.
//!
//! A definitions directory holds ClamAV hash databases (`*.hdb`, `*.hdu`, `*.hsb`, `*.hsu`),
//! YARA rules (`*.yar`, `*.yara`) and optionally a `VERSION` file; without one, the version
//! is derived from the content. The EICAR test file is always detected, with or without
//! definitions.
//!
//! The directory may have been prepared by someone other than root, so it is read as
//! untrusted: only regular files directly inside it (a symlink, FIFO, device or socket with
//! a definitions name refuses the set, by name), each within [`MAX_FILE_BYTES`] (YARA source
//! [`MAX_YARA_BYTES`]) and all within [`MAX_SET_BYTES`], checked before anything is read;
//! hash databases are parsed a line at a time; YARA `include` is off. Errors name the file,
//! the line and what was expected, never the content. A set without a single signature is
//! refused rather than replacing the current one.
//!
//! The store (`STATE/definitions`) keeps each accepted set in its own directory and points
//! `current` at the one in use. An update is compiled and checked in full before anything
//! on disk changes, then copied, then made current with one `rename` of the symlink: a bad
//! set is refused whole, and a crash at any point leaves either the old set or the new one.

use std::{
    fs,
    io::{BufReader, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use super::clamav::HashDb;
use crate::safe_fs;

pub const BUILTIN_VERSION: &str = "builtin";

pub struct Definitions {
    pub version: String,
    pub hashes: HashDb,
    pub yara: Option<yara_x::Rules>,
    pub yara_rules: usize,
    /// SHA-256 over every file's name and content: tells a copy from its source.
    content: [u8; 32],
}

/// Largest definitions file read: ClamAV's own main hash databases are a few tens of MiB.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Largest YARA source file: rules are text written by people, and compiling is costly.
pub const MAX_YARA_BYTES: u64 = 16 << 20;
/// Largest definitions set, all files together.
pub const MAX_SET_BYTES: u64 = 1 << 30;
const MAX_VERSION_BYTES: u64 = 64;

impl Definitions {
    /// Only what is compiled in: the EICAR test file.
    pub fn builtin() -> Self {
        Self {
            version: BUILTIN_VERSION.into(),
            hashes: HashDb::default(),
            yara: None,
            yara_rules: 0,
            content: [0; 32],
        }
    }

    /// Reads and compiles every definitions file of `dir`. Any file that is not a regular
    /// file, is over its size limit, or does not parse or compile refuses the whole set,
    /// naming the file and the line, never quoting the content.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let mut hashes = HashDb::default();
        let mut compiler = yara_x::Compiler::new();
        // An include would read a file the rule's author names, anywhere on the machine.
        compiler.enable_includes(false);
        let mut yara_files = 0;
        let mut version = None;
        let mut digest = sha2::Sha256::default();
        let files = definition_files(dir)?;
        check_sizes(&files)?;
        let mut set_bytes = 0u64;
        for path in files {
            let name = file_name(&path);
            let kind = extension(&path);
            let limit = size_limit(&path);
            let file = open_within(&path, limit, &mut set_bytes)?;
            {
                use sha2::Digest;
                digest.update(name.as_bytes());
                digest.update([0]);
            }
            let mut reader = Digesting {
                inner: file.take(limit + 1),
                digest: &mut digest,
            };
            match kind.as_str() {
                "hdb" | "hdu" | "hsb" | "hsu" => {
                    let sha_only = kind.starts_with("hs");
                    hashes.load_lines(&name, BufReader::new(&mut reader), sha_only)?;
                }
                "yar" | "yara" => {
                    let text = read_text(&mut reader, &path)?;
                    compiler
                        .new_namespace(&name)
                        .add_source(yara_x::SourceCode::from(text.as_str()).with_origin(&name))
                        .map_err(|e| yara_error(&name, &e))?;
                    yara_files += 1;
                }
                _ => version = Some(parse_version(&read_text(&mut reader, &path)?)?),
            }
            if reader.inner.limit() == 0 {
                bail!(
                    "{}: grew past the limit of {limit} bytes while being read",
                    path.display()
                );
            }
            use sha2::Digest;
            digest.update([0]);
        }
        let yara = (yara_files > 0).then(|| compiler.build());
        let yara_rules = yara.as_ref().map_or(0, |r| r.iter().len());
        let content: [u8; 32] = {
            use sha2::Digest;
            digest.finalize().into()
        };
        let version =
            version.unwrap_or_else(|| content[..6].iter().map(|b| format!("{b:02x}")).collect());
        Ok(Self {
            version,
            hashes,
            yara,
            yara_rules,
            content,
        })
    }

    /// Whether the set holds anything beyond the built-in EICAR detection.
    pub fn has_signatures(&self) -> bool {
        !self.hashes.is_empty() || self.yara_rules > 0
    }
}

fn size_limit(path: &Path) -> u64 {
    if matches!(extension(path).as_str(), "yar" | "yara") {
        MAX_YARA_BYTES
    } else if file_name(path) == "VERSION" {
        MAX_VERSION_BYTES
    } else {
        MAX_FILE_BYTES
    }
}

/// Refuses a set over its limits before any file is parsed, so an oversized last file
/// costs nothing. [`open_within`] checks again on each opened file.
fn check_sizes(files: &[PathBuf]) -> Result<()> {
    let mut total = 0u64;
    for path in files {
        let Ok(m) = fs::symlink_metadata(path) else {
            continue;
        };
        let limit = size_limit(path);
        if m.is_file() && m.len() > limit {
            bail!(
                "{}: {} bytes, over the limit of {limit} bytes for this kind of file",
                path.display(),
                m.len()
            );
        }
        total += if m.is_file() { m.len() } else { 0 };
    }
    if total > MAX_SET_BYTES {
        bail!(
            "{total} bytes in all, over the limit of {MAX_SET_BYTES} bytes for a definitions set"
        );
    }
    Ok(())
}

/// Opens one definitions file if it is a regular file of at most `limit` bytes and the set
/// stays within [`MAX_SET_BYTES`]. Sizes are checked before a byte is read, so a huge
/// (or sparse) file costs nothing.
fn open_within(path: &Path, limit: u64, set_bytes: &mut u64) -> Result<fs::File> {
    let file = safe_fs::open_regular(path)?;
    let size = file
        .metadata()
        .with_context(|| path.display().to_string())?
        .len();
    if size > limit {
        bail!(
            "{}: {size} bytes, over the limit of {limit} bytes for this kind of file",
            path.display()
        );
    }
    *set_bytes += size;
    if *set_bytes > MAX_SET_BYTES {
        bail!(
            "{}: the set passes the limit of {MAX_SET_BYTES} bytes for all files together",
            path.display()
        );
    }
    Ok(file)
}

fn read_text(reader: &mut impl Read, path: &Path) -> Result<String> {
    let mut data = Vec::new();
    reader
        .read_to_end(&mut data)
        .with_context(|| path.display().to_string())?;
    String::from_utf8(data).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// A YARA compile error as file, line and error code: yara-x's own report quotes the
/// offending source (and would quote an included file), which must not reach the caller.
fn yara_error(name: &str, e: &yara_x::errors::CompileError) -> anyhow::Error {
    let line = e
        .labels()
        .next()
        .and_then(|l| serde_json::to_value(&l).ok())
        .and_then(|v| v.get("line")?.as_u64());
    let code = e.code();
    let what = "YARA compile error, see https://virustotal.github.io/yara-x/docs/errors/";
    match line {
        Some(line) => anyhow::anyhow!("{name}:{line}: {what}#{code}"),
        None => anyhow::anyhow!("{name}: {what}#{code}"),
    }
}

/// A reader that feeds what passes through it into the set's content digest.
struct Digesting<'a, R> {
    inner: R,
    digest: &'a mut sha2::Sha256,
}

impl<R: Read> Read for Digesting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

impl Definitions {
    /// Whether a file of `size` bytes could match anything in this set.
    pub fn could_match(&self, size: u64) -> bool {
        size <= super::eicar::MAX_LEN as u64 || self.yara.is_some() || self.hashes.wants(size)
    }
}

/// The files of a definitions directory that the loader reads, sorted by name so the
/// derived version does not depend on directory order. Only entries directly inside `dir`;
/// whatever they are (symlink, FIFO, device, directory), the loader opens them as regular
/// files only, so anything else refuses the set by name.
fn definition_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for ent in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = ent
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let wanted = matches!(
            extension(&path).as_str(),
            "hdb" | "hdu" | "hsb" | "hsu" | "yar" | "yara"
        ) || file_name(&path) == "VERSION";
        if wanted {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Copies a definitions file the way the loader reads it: a regular file, not through a
/// symlink, within the largest size any definitions file may have.
fn copy_regular(src: &Path, dst: &Path) -> Result<()> {
    let from = safe_fs::open_regular(src)?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .with_context(|| format!("creating {}", dst.display()))?;
    std::io::copy(&mut from.take(MAX_FILE_BYTES + 1), &mut to)
        .with_context(|| format!("copying {}", src.display()))?;
    to.flush()?;
    to.sync_all()
        .with_context(|| format!("writing {}", dst.display()))
}

fn extension(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parse_version(text: &str) -> Result<String> {
    let v = text.trim();
    if v.is_empty()
        || v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("VERSION: expected a version (1-64 of A-Z a-z 0-9 . _ -)");
    }
    if v == BUILTIN_VERSION {
        bail!("VERSION: {BUILTIN_VERSION:?} is reserved");
    }
    Ok(v.to_string())
}

/// The on-disk store of accepted definition sets.
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.join("definitions"),
        }
    }

    /// The set in use, if one was ever installed.
    pub fn load_current(&self) -> Result<Option<Definitions>> {
        let current = self.root.join("current");
        if fs::symlink_metadata(&current).is_err() {
            return Ok(None);
        }
        Definitions::load_dir(&current).map(Some)
    }

    /// Validates `from` in full, installs a copy and makes it current. Returns the new set.
    pub fn install(&self, from: &Path) -> Result<Definitions> {
        let defs = Definitions::load_dir(from)
            .with_context(|| format!("definitions in {} refused", from.display()))?;
        if !defs.has_signatures() {
            bail!(
                "definitions in {} refused: no hash signatures and no YARA rules; the current set stays",
                from.display()
            );
        }
        fs::create_dir_all(&self.root)?;
        let final_dir = self.root.join(format!("v-{}", defs.version));
        let staging = self
            .root
            .join(format!(".staging-{}-{}", std::process::id(), defs.version));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        for src in definition_files(from)? {
            copy_regular(&src, &staging.join(file_name(&src)))?;
        }
        // What was copied must be what was validated: a writer changing the source in
        // between would otherwise get an unchecked set installed.
        let copied = Definitions::load_dir(&staging)?;
        if copied.content != defs.content {
            let _ = fs::remove_dir_all(&staging);
            bail!("definitions in {} changed while installing", from.display());
        }
        let _ = fs::remove_dir_all(&final_dir);
        fs::rename(&staging, &final_dir)?;
        let link = self.root.join("current.new");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(final_dir.file_name().unwrap(), &link)?;
        fs::rename(&link, self.root.join("current"))?;
        fs::File::open(&self.root)?.sync_all()?;
        self.prune(&final_dir);
        Ok(copied)
    }

    /// Keeps the current set and nothing older: old sets are never read again.
    fn prune(&self, keep: &Path) {
        let Ok(dir) = fs::read_dir(&self.root) else {
            return;
        };
        for ent in dir.flatten() {
            let p = ent.path();
            let name = file_name(&p);
            if p != keep && name.starts_with("v-") {
                let _ = fs::remove_dir_all(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sensor-defs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn install_swaps_and_a_bad_set_leaves_the_old_one() {
        let state = dir("state");
        let good = dir("good");
        fs::write(good.join("VERSION"), "2026.11.1\n").unwrap();
        fs::write(
            good.join("main.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Md5\n",
        )
        .unwrap();
        fs::write(
            good.join("rules.yar"),
            "rule marker { strings: $a = \"sensor-yara-marker\" condition: $a }\n",
        )
        .unwrap();
        let store = Store::new(&state);
        assert!(store.load_current().unwrap().is_none());
        let d = store.install(&good).unwrap();
        assert_eq!(d.version, "2026.11.1");
        assert_eq!((d.hashes.len(), d.yara_rules), (1, 1));

        let bad = dir("bad");
        fs::write(bad.join("VERSION"), "2026.11.2").unwrap();
        fs::write(bad.join("broken.yar"), "rule x { condition: nope }").unwrap();
        let err = format!("{:#}", store.install(&bad).err().unwrap());
        assert!(err.contains("broken.yar"), "{err}");
        let cur = store.load_current().unwrap().unwrap();
        assert_eq!(cur.version, "2026.11.1");

        fs::remove_dir_all(&state).unwrap();
        fs::remove_dir_all(&good).unwrap();
        fs::remove_dir_all(&bad).unwrap();
    }

    #[test]
    fn version_is_derived_from_content_without_a_version_file() {
        let a = dir("derived");
        fs::write(a.join("x.hsb"), format!("{}:*:Any-Size\n", "ab".repeat(32))).unwrap();
        let v1 = Definitions::load_dir(&a).unwrap().version;
        assert_eq!(v1, Definitions::load_dir(&a).unwrap().version);
        fs::write(a.join("x.hsb"), format!("{}:*:Other\n", "ab".repeat(32))).unwrap();
        assert_ne!(v1, Definitions::load_dir(&a).unwrap().version);
        fs::write(a.join("VERSION"), "../etc").unwrap();
        assert!(Definitions::load_dir(&a).is_err());
        fs::remove_dir_all(&a).unwrap();
    }

    #[test]
    fn only_regular_files_are_read_and_errors_quote_no_content() {
        let a = dir("special");
        let secret = dir("secret").join("secret.txt");
        fs::write(&secret, "sensor-secret-first-line\nmore\n").unwrap();
        std::os::unix::fs::symlink(&secret, a.join("leak.hdb")).unwrap();
        let e = format!("{:#}", Definitions::load_dir(&a).err().unwrap());
        assert!(e.contains("leak.hdb: a symbolic link"), "{e}");
        fs::remove_file(a.join("leak.hdb")).unwrap();

        fs::copy(&secret, a.join("leak.hdb")).unwrap();
        let e = format!("{:#}", Definitions::load_dir(&a).err().unwrap());
        assert!(e.contains("leak.hdb:1: expected HASH:SIZE:NAME"), "{e}");
        assert!(!e.contains("sensor-secret"), "{e}");
        fs::remove_file(a.join("leak.hdb")).unwrap();

        let include = format!(
            "include \"{}\"\nrule r {{ condition: true }}\n",
            secret.display()
        );
        fs::write(a.join("inc.yar"), include).unwrap();
        let e = format!("{:#}", Definitions::load_dir(&a).err().unwrap());
        assert!(e.starts_with("inc.yar:1: YARA compile error"), "{e}");
        assert!(!e.contains("sensor-secret"), "{e}");
        fs::write(
            a.join("inc.yar"),
            "rule r { condition: sensor_secret_ident }\n",
        )
        .unwrap();
        let e = format!("{:#}", Definitions::load_dir(&a).err().unwrap());
        assert!(
            e.contains("inc.yar:1:") && !e.contains("sensor_secret"),
            "{e}"
        );
        fs::remove_dir_all(&a).unwrap();
        fs::remove_dir_all(secret.parent().unwrap()).unwrap();
    }

    #[test]
    fn oversized_files_and_empty_sets_are_refused() {
        let a = dir("huge");
        let huge = fs::File::create(a.join("huge.hdb")).unwrap();
        huge.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = format!("{:#}", Definitions::load_dir(&a).err().unwrap());
        assert!(
            e.contains("huge.hdb") && e.contains(&format!("limit of {MAX_FILE_BYTES}")),
            "{e}"
        );
        fs::remove_file(a.join("huge.hdb")).unwrap();
        for i in 0..=MAX_SET_BYTES / MAX_FILE_BYTES {
            let part = fs::File::create(a.join(format!("part{i}.hdb"))).unwrap();
            part.set_len(MAX_FILE_BYTES).unwrap();
        }
        let e = format!("{:#}", Definitions::load_dir(&a).err().unwrap());
        assert!(e.contains("for a definitions set"), "{e}");
        for i in 0..=MAX_SET_BYTES / MAX_FILE_BYTES {
            fs::remove_file(a.join(format!("part{i}.hdb"))).unwrap();
        }
        let big_rules = fs::File::create(a.join("big.yar")).unwrap();
        big_rules.set_len(MAX_YARA_BYTES + 1).unwrap();
        assert!(Definitions::load_dir(&a).is_err());
        fs::remove_file(a.join("big.yar")).unwrap();

        let state = dir("state-empty");
        let store = Store::new(&state);
        let e = format!("{:#}", store.install(&a).err().unwrap());
        assert!(e.contains("no hash signatures and no YARA rules"), "{e}");
        fs::write(a.join("VERSION"), "1").unwrap();
        fs::write(a.join("empty.yar"), "// nothing\n").unwrap();
        assert!(store.install(&a).is_err());
        assert!(store.load_current().unwrap().is_none());
        fs::remove_dir_all(&a).unwrap();
        fs::remove_dir_all(&state).unwrap();
    }
}
